/* Marking hallucinated spans on the labeling page, by mouse or keyboard. No framework; survives htmx swaps.
 *
 * The server renders each answer as words carrying their offsets in the response's own text
 * (data-start/data-end, annotate/templatetags/spans.py) inside an element naming its canonical side
 * (data-response="a" or "b"), so a span is always in a/b terms whichever side is shown left, and no offset
 * is ever counted from what the browser shows. A span snaps to whole words.
 *
 * The spans are the hidden inputs in [data-span-inputs] (one "side:start:end[:type]" each), posted with
 * the label; the list and the highlights are drawn from them, so a refused label re-rendered by the
 * server comes back with its spans.
 *
 * Keys are declared on [data-span-tool]: M is the Mark button's data-key, which label.js clicks. The
 * first M shows a word cursor (the focused word), arrows move it (up/down: the other answer), the next M
 * starts the span there, arrows extend it, M or the close key adds it, the cancel key drops it. While marking, this file takes the
 * arrows, the close and the cancel key in the capture phase and marks them handled (preventDefault), so
 * label.js, which leaves handled keys alone, neither submits on Enter nor closes the zoom on Esc.
 */
(function () {
  "use strict";

  var IDLE = "idle";
  var POINT = "point"; // a word cursor shows: the focused word
  var EXTEND = "extend"; // a span is open from `anchor` to the focused word
  var state = { phase: IDLE, answer: null, at: 0, anchor: 0 };

  function tool() {
    var panel = document.getElementById("label-panel");
    return panel ? panel.querySelector("[data-span-tool]") : null;
  }

  function answers() {
    var panel = document.getElementById("label-panel");
    return panel ? Array.prototype.slice.call(panel.querySelectorAll(".answer__text[data-response]")) : [];
  }

  function wordsOf(answer) {
    return Array.prototype.slice.call(answer.querySelectorAll(".w"));
  }

  function answerOf(side) {
    return answers().filter(function (answer) {
      return answer.getAttribute("data-response") === side;
    })[0];
  }

  /* The spans as the hidden inputs hold them. */
  function spans(t) {
    return Array.prototype.slice.call(t.querySelectorAll("[data-span-inputs] input")).map(function (input) {
      var parts = input.value.split(":");
      return { input: input, response: parts[0], start: +parts[1], end: +parts[2], type: parts[3] || "" };
    });
  }

  function encode(span) {
    return [span.response, span.start, span.end].join(":") + (span.type ? ":" + span.type : "");
  }

  function addSpan(side, start, end) {
    var t = tool();
    if (!t || !(end > start)) {
      return;
    }
    var known = spans(t).some(function (span) {
      return span.response === side && span.start === start && span.end === end;
    });
    if (!known) {
      var input = document.createElement("input");
      input.type = "hidden";
      input.name = "spans";
      input.value = encode({ response: side, start: start, end: end });
      t.querySelector("[data-span-inputs]").appendChild(input);
    }
    draw();
  }

  /* The text of a span: the rendered words and gaps between its first and last word. */
  function quote(answer, start, end) {
    var inside = wordsOf(answer).filter(function (word) {
      return +word.getAttribute("data-start") >= start && +word.getAttribute("data-end") <= end;
    });
    if (!inside.length) {
      return "";
    }
    var range = document.createRange();
    range.setStartBefore(inside[0]);
    range.setEndAfter(inside[inside.length - 1]);
    return range.toString();
  }

  /* Redraw the list, the highlights and the cursor from the inputs and the keyboard state. */
  function draw() {
    var t = tool();
    if (!t) {
      return;
    }
    var list = t.querySelector("[data-span-list]");
    var row = t.querySelector("template[data-span-row]");
    var all = spans(t);
    list.textContent = "";
    all.forEach(function (span, index) {
      var answer = answerOf(span.response);
      var item = row.content.firstElementChild.cloneNode(true);
      item.setAttribute("data-index", String(index));
      item.querySelector("[data-span-side]").textContent = answer ? answer.getAttribute("data-side") : span.response;
      item.querySelector("[data-span-text]").textContent = answer ? quote(answer, span.start, span.end) : "";
      item.querySelector("[data-span-type]").value = span.type;
      list.appendChild(item);
    });
    answers().forEach(function (answer) {
      var side = answer.getAttribute("data-response");
      var mine = all.filter(function (span) {
        return span.response === side;
      });
      wordsOf(answer).forEach(function (word, index) {
        var start = +word.getAttribute("data-start");
        var end = +word.getAttribute("data-end");
        word.classList.toggle(
          "is-marked",
          mine.some(function (span) {
            return span.start <= start && end <= span.end;
          })
        );
        var here = state.phase !== IDLE && state.answer === answer;
        var low = Math.min(state.anchor, state.at);
        var high = Math.max(state.anchor, state.at);
        word.classList.toggle("is-cursor", here && index === state.at);
        word.classList.toggle("is-marking", here && state.phase === EXTEND && index >= low && index <= high);
      });
    });
    t.classList.toggle("is-marking", state.phase !== IDLE);
  }

  function reset() {
    state = { phase: IDLE, answer: null, at: 0, anchor: 0 };
    draw();
  }

  /* M (or a click on Mark): show the cursor, start at the focused word, or close the open span. */
  function mark() {
    var all = answers();
    if (!all.length) {
      return;
    }
    if (state.phase === IDLE) {
      // Back where the last span was closed, else at the first word of the left answer.
      var again = state.answer && state.answer.isConnected;
      state = { phase: POINT, answer: again ? state.answer : all[0], at: again ? state.at : 0, anchor: 0 };
    } else if (state.phase === POINT) {
      state.phase = EXTEND;
      state.anchor = state.at;
    } else {
      close();
      return;
    }
    draw();
    focusCursor();
  }

  function close() {
    var words = wordsOf(state.answer);
    var first = words[Math.min(state.anchor, state.at)];
    var last = words[Math.max(state.anchor, state.at)];
    state.phase = IDLE; // the next close key submits the label; the next M comes back here
    addSpan(state.answer.getAttribute("data-response"), +first.getAttribute("data-start"), +last.getAttribute("data-end"));
  }

  function focusCursor() {
    var word = state.answer ? wordsOf(state.answer)[state.at] : null;
    if (word && word.scrollIntoView) {
      word.scrollIntoView({ block: "nearest" });
    }
  }

  function keysOf(t, name) {
    return (t.getAttribute("data-key-" + name) || "").split(" ");
  }

  function isTyping(target) {
    return target && target.matches && target.matches("textarea, input[type=text], select, [contenteditable]");
  }

  /* Arrows, close and cancel while marking; anything else goes on to label.js. */
  function onKey(event) {
    var t = tool();
    if (!t || state.phase === IDLE || event.defaultPrevented || isTyping(event.target)) {
      return;
    }
    if (event.ctrlKey || event.metaKey || event.altKey || !state.answer.isConnected) {
      return;
    }
    var key = event.key;
    var words = wordsOf(state.answer);
    if (keysOf(t, "back").indexOf(key) >= 0) {
      state.at = Math.max(0, state.at - 1);
    } else if (keysOf(t, "forward").indexOf(key) >= 0) {
      state.at = Math.min(words.length - 1, state.at + 1);
    } else if (keysOf(t, "switch").indexOf(key) >= 0) {
      if (state.phase === POINT) {
        var all = answers();
        state.answer = all[(all.indexOf(state.answer) + 1) % all.length];
        state.at = 0;
      }
    } else if (keysOf(t, "close").indexOf(key) >= 0) {
      if (state.phase === EXTEND) {
        close();
      } else {
        state.phase = IDLE; // the cursor goes; the next close key submits
      }
    } else if (keysOf(t, "cancel").indexOf(key) >= 0) {
      state.phase = state.phase === EXTEND ? POINT : IDLE;
    } else {
      return;
    }
    event.preventDefault();
    draw();
    focusCursor();
  }

  /* A mouse selection inside one answer becomes a span over the words it touches. */
  function onMouseUp(event) {
    var answer = event.target.closest && event.target.closest(".answer__text[data-response]");
    var selection = window.getSelection();
    if (!answer || !tool() || !selection || selection.isCollapsed || !selection.rangeCount) {
      return;
    }
    var range = selection.getRangeAt(0);
    if (range.toString().trim() === "") {
      return;
    }
    var touched = wordsOf(answer).filter(function (word) {
      return range.intersectsNode(word);
    });
    if (touched.length) {
      addSpan(
        answer.getAttribute("data-response"),
        +touched[0].getAttribute("data-start"),
        +touched[touched.length - 1].getAttribute("data-end")
      );
      selection.removeAllRanges();
    }
  }

  function rowIndex(element) {
    var item = element.closest("[data-index]");
    return item ? +item.getAttribute("data-index") : -1;
  }

  document.addEventListener("keydown", onKey, true);
  document.addEventListener("mouseup", onMouseUp);

  document.addEventListener("click", function (event) {
    var t = tool();
    if (!t || !t.contains(event.target)) {
      return;
    }
    if (event.target.closest("[data-span-mark]")) {
      mark();
    } else if (event.target.closest("[data-span-remove]")) {
      var span = spans(t)[rowIndex(event.target)];
      if (span) {
        span.input.remove();
        draw();
      }
    }
  });

  document.addEventListener("change", function (event) {
    var t = tool();
    if (t && event.target.matches && event.target.matches("[data-span-type]")) {
      var span = spans(t)[rowIndex(event.target)];
      if (span) {
        span.type = event.target.value;
        span.input.value = encode(span);
      }
    }
  });

  /* A new panel swapped in (the next pair, or this one refused): start over from its inputs. */
  document.addEventListener("htmx:load", function (event) {
    if (event.target.id === "label-panel") {
      reset();
    }
  });
  document.addEventListener("DOMContentLoaded", reset);
})();
