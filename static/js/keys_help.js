/* The "?" overlay: every keyboard shortcut of the current page, read from the markup when it opens.
 *
 * Pages declare their keys in markup, and the scripts that act on them read the same attributes, so this
 * list cannot drift from what the keys do (issue 18, item 3):
 *   data-key="x"         a control clicked by x (label.js); described by its label or its own text
 *   data-focus-key="/"   a box that / moves the focus into (label.js)
 *   data-key-<what>="K"  K (space-separated keys, "Control+Enter" for a chord) does <what>, the attribute
 *                        name in words: data-key-close-the-zoom="Escape" (spans.js declares its keys so)
 * Rows are grouped under the legend of the fieldset or .group they sit in, in page order; a swapped-in
 * htmx panel is read afresh at the next "?".
 *
 * "?" opens it when the focus is not in a text box; "?" or Esc closes it and gives the focus back. While it
 * is open no key reaches the page behind it (it listens first, on window, in the capture phase).
 */
(function () {
  "use strict";

  var OPEN_KEY = "?";
  var PREFIX = "data-key-";
  var GENERAL = "On this page";
  var KEY_NAMES = {
    " ": "Space",
    escape: "Esc",
    enter: "Enter",
    backspace: "Backspace",
    control: "Ctrl",
    arrowleft: "\u2190",
    arrowright: "\u2192",
    arrowup: "\u2191",
    arrowdown: "\u2193",
  };
  var dialog = null;
  var returnFocus = null;

  function isTyping(target) {
    return target && target.matches && target.matches("textarea, input[type=text], input[type=search], input[type=date], select, [contenteditable]");
  }

  /* The words of a node, without its <kbd> hints, inputs and hidden parts: its own text first
   * ("Rationale" of "Rationale <span>optional</span> <kbd>/</kbd>"), else all of it ("1 negligible"). */
  function words(node) {
    if (!node) {
      return "";
    }
    var own = "";
    node.childNodes.forEach(function (child) {
      if (child.nodeType === Node.TEXT_NODE) {
        own += child.textContent;
      }
    });
    own = own.replace(/\s+/g, " ").trim();
    if (own) {
      return own;
    }
    var copy = node.cloneNode(true);
    copy.querySelectorAll("kbd, input, select, textarea, template, [hidden], [aria-hidden=true]").forEach(function (el) {
      el.remove();
    });
    return copy.textContent.replace(/\s+/g, " ").trim();
  }

  function describe(el) {
    var label = el.labels && el.labels.length ? el.labels[0] : null;
    return words(label || el) || el.getAttribute("aria-label") || el.getAttribute("title") || "";
  }

  function groupOf(el) {
    var fieldset = el.closest("fieldset");
    if (fieldset && fieldset.querySelector("legend")) {
      return words(fieldset.querySelector("legend"));
    }
    var group = el.closest(".group");
    var legend = group ? group.querySelector(".group__legend") : null;
    return legend ? words(legend) : GENERAL;
  }

  function sentence(text) {
    return text.charAt(0).toUpperCase() + text.slice(1);
  }

  /* What one element declares: [{keys: [...], what: "..."}]. */
  function declared(el) {
    var found = [];
    if (el.hasAttribute("data-key")) {
      found.push({ keys: [el.getAttribute("data-key")], what: describe(el) });
    }
    if (el.hasAttribute("data-focus-key")) {
      found.push({ keys: [el.getAttribute("data-focus-key")], what: "Go to " + describe(el).toLowerCase() });
    }
    Array.prototype.forEach.call(el.attributes, function (attribute) {
      if (attribute.name.indexOf(PREFIX) === 0 && attribute.value.trim()) {
        found.push({
          keys: attribute.value.trim().split(/\s+/),
          what: sentence(attribute.name.slice(PREFIX.length).replace(/-/g, " ")),
        });
      }
    });
    return found;
  }

  /* Every shortcut of the page, grouped, in page order: [{title, rows}]. */
  function shortcuts() {
    var groups = [];
    var byTitle = {};
    document.querySelectorAll("body *").forEach(function (el) {
      if ((dialog && dialog.contains(el)) || el.closest("[hidden]")) {
        return;
      }
      declared(el).forEach(function (row) {
        var title = groupOf(el);
        if (!byTitle[title]) {
          byTitle[title] = { title: title, rows: [] };
          groups.push(byTitle[title]);
        }
        byTitle[title].rows.push(row);
      });
    });
    groups.push({
      title: "This list",
      rows: [
        { keys: [OPEN_KEY], what: "Show or hide the keys" },
        { keys: ["Escape"], what: "Close it" },
      ],
    });
    return groups;
  }

  function keyName(key) {
    return key
      .split("+")
      .map(function (part) {
        return KEY_NAMES[part.toLowerCase()] || (part.length === 1 ? part.toUpperCase() : part);
      })
      .join("+");
  }

  function el(tag, className, text) {
    var node = document.createElement(tag);
    if (className) {
      node.className = className;
    }
    if (text) {
      node.textContent = text;
    }
    return node;
  }

  function renderGroup(group) {
    var section = el("section", "keys-help__group");
    section.appendChild(el("h3", "keys-help__title", group.title));
    var list = el("dl", "keys-help__list");
    group.rows.forEach(function (row) {
      var item = el("div", "keys-help__row");
      var keys = el("dt", "keys-help__keys");
      row.keys.forEach(function (key) {
        keys.appendChild(el("kbd", "", keyName(key)));
      });
      item.appendChild(keys);
      item.appendChild(el("dd", "keys-help__what", row.what));
      list.appendChild(item);
    });
    section.appendChild(list);
    return section;
  }

  function build() {
    var node = el("dialog", "keys-help");
    node.setAttribute("role", "dialog");
    node.setAttribute("aria-modal", "true");
    node.setAttribute("aria-labelledby", "keys-help-heading");
    var head = el("div", "keys-help__head");
    var heading = el("h2", "", "Keyboard shortcuts");
    heading.id = "keys-help-heading";
    var close = el("button", "btn btn--ghost btn--small keys-help__close", "Close");
    close.type = "button";
    close.appendChild(el("kbd", "", "Esc"));
    close.addEventListener("click", hide);
    head.appendChild(heading);
    head.appendChild(close);
    node.appendChild(head);
    node.appendChild(el("div", "keys-help__body"));
    node.addEventListener("cancel", function (event) {
      event.preventDefault(); // Esc is handled below, so the focus goes back where it was
      hide();
    });
    document.body.appendChild(node);
    return node;
  }

  function show() {
    dialog = dialog || build();
    var body = dialog.querySelector(".keys-help__body");
    body.replaceChildren.apply(body, shortcuts().map(renderGroup));
    returnFocus = document.activeElement;
    dialog.showModal();
    dialog.querySelector(".keys-help__close").focus();
  }

  function hide() {
    if (dialog && dialog.open) {
      dialog.close();
      if (returnFocus && returnFocus.focus && document.contains(returnFocus)) {
        returnFocus.focus();
      }
      if (dialog.contains(document.activeElement)) {
        document.activeElement.blur(); // it was opened from the page itself (body), which takes no focus()
      }
    }
  }

  window.addEventListener(
    "keydown",
    function (event) {
      if (dialog && dialog.open) {
        event.stopPropagation(); // the page's own keys wait until the list is closed
        if (event.key === "Escape" || event.key === OPEN_KEY) {
          event.preventDefault();
          hide();
        }
        return;
      }
      if (event.key === OPEN_KEY && !event.ctrlKey && !event.metaKey && !event.altKey && !isTyping(event.target)) {
        event.preventDefault();
        event.stopPropagation();
        show();
      }
    },
    true
  );
})();
