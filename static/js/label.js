/* The labeling page's keyboard and timer. No framework; htmx swaps the panel, this file only listens.
 *
 * Shortcuts are declared in the markup, never here: any control in the panel with data-key="x" is
 * clicked when x is pressed (radios pick, checkboxes toggle, the Skip button posts), and the element
 * with data-focus-key="/" takes the focus. Enter submits; F or a click zooms the image; Esc closes
 * the zoom or leaves the text box; Backspace follows the "Previous" link (data-key="backspace"), which
 * brings the last label back to be changed. The template prints every key next to its control.
 *
 * Time per label: from the moment a pair is shown to its submit, written into the hidden
 * duration_ms input just before the form is sent. A refused label re-renders the same assignment,
 * so the clock keeps running for it rather than starting again.
 */
(function () {
  "use strict";

  var shownAt = { assignment: null, at: 0 };
  var DOUBLE_PRESS_MS = 300;

  function panel() {
    return document.getElementById("label-panel");
  }

  function form() {
    var p = panel();
    return p ? p.querySelector("form.label-form") : null;
  }

  function now() {
    return window.performance && performance.now ? performance.now() : Date.now();
  }

  /* Start the clock when a new assignment appears; keep it when the same one is re-rendered. */
  function startClock() {
    var p = panel();
    var id = p ? p.getAttribute("data-assignment") : null;
    if (id && id !== shownAt.assignment) {
      shownAt = { assignment: id, at: now() };
    }
  }

  function stampDuration(f) {
    var input = f.querySelector("[data-duration]");
    if (input && shownAt.at) {
      // Sent as measured: annotate/views/label.py decides when a duration is a tab left open.
      input.value = String(Math.max(1, Math.round(now() - shownAt.at)));
    }
  }

  /* Strength only applies when one side is picked: grey it out for "both" and "neither". */
  function syncStrength(f) {
    var picked = f.querySelector('input[name="more_hallucinated"]:checked');
    var strength = f.querySelector("[data-strength]");
    if (strength) {
      strength.disabled = !!picked && (picked.value === "both" || picked.value === "neither");
    }
  }

  function busy(f) {
    var submit = f.querySelector("[data-submit]");
    return f.classList.contains("htmx-request") || (submit && submit.disabled);
  }

  /* htmx wires a swapped-in panel when it settles (20 ms later); a key pressed before then would post
   * the form natively (which works, but reloads the page). Wiring it now is safe: htmx skips an element
   * it has already processed. */
  function wire(f) {
    if (window.htmx) {
      window.htmx.process(f);
    }
  }

  function submit(f) {
    // A second Enter while the first is in flight, or landing on the fresh pair that just replaced it
    // (nothing picked yet), is a double press: drop it. The server would not save twice anyway, but the
    // next pair would open with an error.
    var picked = f.querySelector('input[name="more_hallucinated"]:checked');
    if (busy(f) || (!picked && now() - shownAt.at < DOUBLE_PRESS_MS)) {
      return;
    }
    wire(f);
    var button = f.querySelector("[data-submit]");
    if (f.requestSubmit) {
      f.requestSubmit(button);
    } else {
      button.click();
    }
  }

  function zoomTarget() {
    var p = panel();
    return p ? p.querySelector("[data-zoomable]") : null;
  }

  function toggleZoom(force) {
    var figure = zoomTarget();
    if (figure) {
      figure.classList.toggle("is-zoomed", force);
    }
  }

  function isTyping(target) {
    return target && target.matches && target.matches("textarea, input[type=text], input[type=search], select, [contenteditable]");
  }

  document.addEventListener("keydown", function (event) {
    var f = form();
    if (!f || event.defaultPrevented || event.isComposing) {
      return;
    }
    var key = event.key;
    if (isTyping(event.target)) {
      if (key === "Escape") {
        event.target.blur();
      } else if (key === "Enter" && (event.ctrlKey || event.metaKey)) {
        event.preventDefault();
        submit(f);
      }
      return;
    }
    if (event.ctrlKey || event.metaKey || event.altKey) {
      return; // leave the browser's own shortcuts alone
    }
    if (key === "Escape") {
      toggleZoom(false);
      return;
    }
    if (key === "Enter") {
      event.preventDefault();
      submit(f);
      return;
    }
    var lower = key.length === 1 ? key.toLowerCase() : "";
    if (!lower) {
      return;
    }
    if (lower === "f") {
      event.preventDefault();
      toggleZoom();
      return;
    }
    var focusTarget = f.querySelector('[data-focus-key="' + CSS.escape(lower) + '"]');
    if (focusTarget) {
      event.preventDefault();
      focusTarget.focus();
      return;
    }
    var control = f.querySelector('[data-key="' + CSS.escape(lower) + '"]');
    if (control && !control.disabled && !control.closest("fieldset[disabled]")) {
      event.preventDefault();
      if (control.tagName === "BUTTON") {
        wire(f);
      }
      control.click();
    }
  });

  /* Backspace clicks the panel's "Previous" link. It lives outside the form, so it also works on the
   * "all done" panel, where there is no form for the handler above. In a text box it deletes, as ever. */
  function goBack(event) {
    if (event.key !== "Backspace" || event.defaultPrevented || isTyping(event.target)) {
      return;
    }
    if (event.ctrlKey || event.metaKey || event.altKey) {
      return;
    }
    var p = panel();
    var previous = p ? p.querySelector('[data-key="backspace"]') : null;
    if (previous) {
      event.preventDefault();
      if (window.htmx) {
        window.htmx.process(previous);
      }
      previous.click();
    }
  }

  document.addEventListener("keydown", goBack);

  document.addEventListener("change", function (event) {
    var f = form();
    if (f && event.target.name === "more_hallucinated") {
      syncStrength(f);
    }
  });

  /* Capture phase: the duration is in place before htmx (or the browser) reads the form. */
  document.addEventListener(
    "submit",
    function (event) {
      if (event.target.matches && event.target.matches("form.label-form")) {
        stampDuration(event.target);
      }
    },
    true
  );
  document.addEventListener(
    "click",
    function (event) {
      var link = event.target.closest && event.target.closest(".item-image__link");
      if (link) {
        event.preventDefault(); // with JS the image zooms in place; without, the link opens it
        toggleZoom();
      }
    },
    true
  );

  /* A new panel swapped in: restart the clock, bring the next pair into view on small screens. */
  document.addEventListener("htmx:load", function (event) {
    if (event.target.id === "label-panel") {
      startClock();
      syncStrength(form() || event.target);
      if (event.target.getBoundingClientRect().top < 0) {
        event.target.scrollIntoView({ block: "start" });
      }
    }
  });

  document.addEventListener("DOMContentLoaded", function () {
    startClock();
    var f = form();
    if (f) {
      syncStrength(f);
    }
  });
})();
