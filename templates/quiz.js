/* vaequiz page script: keeps answers in localStorage, checks practice answers, saves the sheet.
   It sends nothing anywhere: the sheet is downloaded as a file the student hands in. */
(function () {
  "use strict";

  var data = JSON.parse(document.getElementById("quiz-data").textContent);
  var storageKey = ["vaequiz", data.quiz, data.student || "", data.variant].join(":");
  var studentField = document.getElementById("student-id");

  function $(selector, root) { return (root || document).querySelector(selector); }
  function $all(selector, root) { return Array.prototype.slice.call((root || document).querySelectorAll(selector)); }
  function itemElement(id) { return document.getElementById("q-" + id); }

  /* ------------------------------------------------------------------ reading answers */

  function readAnswer(item) {
    var element = itemElement(item.id);
    if (!element) { return undefined; }
    if (item.kind === "mcq") {
      var chosen = $all("input:checked", element).map(function (input) { return input.value; }).sort();
      if (!chosen.length) { return undefined; }
      return item.multiple ? chosen : chosen[0];
    }
    var box = $("textarea, input[type=text]", element);
    var text = box.value;
    if (!text.trim()) { return undefined; }
    if (item.kind === "code" && text.trim() === box.defaultValue.trim()) { return undefined; }
    return text;
  }

  function writeAnswer(item, value) {
    var element = itemElement(item.id);
    if (!element || value === undefined || value === null) { return; }
    if (item.kind === "mcq") {
      var wanted = Array.isArray(value) ? value : [value];
      $all("input", element).forEach(function (input) { input.checked = wanted.indexOf(input.value) >= 0; });
    } else {
      $("textarea, input[type=text]", element).value = String(value);
    }
  }

  function collectAnswers() {
    var answers = {};
    data.items.forEach(function (item) {
      var value = readAnswer(item);
      if (value !== undefined) { answers[item.id] = value; }
    });
    return answers;
  }

  /* ------------------------------------------------------------------ storage */

  var storageWorks = true;

  function store() {
    if (!storageWorks) { return; }
    var record = { answers: collectAnswers(), student: studentField ? studentField.value : null };
    try {
      window.localStorage.setItem(storageKey, JSON.stringify(record));
    } catch (error) {
      storageWorks = false;
      say("Your browser does not keep answers for this page; save them before closing it.", true);
    }
  }

  function restore() {
    var text = null;
    try { text = window.localStorage.getItem(storageKey); } catch (error) { storageWorks = false; }
    if (!text) { return; }
    try {
      var record = JSON.parse(text);
      data.items.forEach(function (item) { writeAnswer(item, (record.answers || {})[item.id]); });
      if (studentField && record.student) { studentField.value = record.student; }
    } catch (error) { /* a damaged record is ignored; the page starts empty */ }
  }

  /* ------------------------------------------------------------------ progress and saving */

  function say(message, bad) {
    var target = document.getElementById("save-message");
    if (!target) { return; }
    target.textContent = message;
    target.className = bad ? "bad" : "";
  }

  function updateProgress() {
    var progress = document.getElementById("progress");
    if (!progress) { return; }
    var answered = Object.keys(collectAnswers()).length;
    var total = data.items.length;
    var left = total - answered;
    progress.textContent = left === 0
      ? "All " + total + " questions answered"
      : left + " of " + total + " question" + (total === 1 ? "" : "s") + " unanswered";
  }

  function safeFilePart(text) { return text.replace(/[^A-Za-z0-9._-]+/g, "_").replace(/^[._]+/, "") || "student"; }

  function saveSheet() {
    var student = data.student || (studentField ? studentField.value.trim() : "");
    if (!student) {
      say("Enter your name or student id first.", true);
      if (studentField) { studentField.focus(); }
      return;
    }
    var sheet = {
      student: student,
      quiz: data.quiz,
      variant: data.variant,
      labels: data.labels,
      answers: collectAnswers()
    };
    if (data.params) { sheet.params = data.params; }
    var blob = new Blob([JSON.stringify(sheet, null, 2) + "\n"], { type: "application/json" });
    var link = document.createElement("a");
    link.href = URL.createObjectURL(blob);
    link.download = data.quiz + "-" + safeFilePart(student) + ".json";
    document.body.appendChild(link);
    link.click();
    document.body.removeChild(link);
    setTimeout(function () { URL.revokeObjectURL(link.href); }, 10000);
    var left = data.items.length - Object.keys(sheet.answers).length;
    say("Saved " + link.download + (left ? " (" + left + " unanswered)" : "") + ". Hand in that file.", false);
  }

  /* ------------------------------------------------------------------ the code box */

  function setUpCodeBox(box) {
    var leaving = false;
    box.addEventListener("keydown", function (event) {
      if (event.key === "Escape") { leaving = true; return; }
      if (event.key === "Tab" && !event.shiftKey && !event.altKey && !event.ctrlKey && !event.metaKey && !leaving) {
        event.preventDefault();
        box.setRangeText("    ", box.selectionStart, box.selectionEnd, "end");
        box.dispatchEvent(new Event("input", { bubbles: true }));
        return;
      }
      if (event.key !== "Shift") { leaving = false; }
    });
    box.addEventListener("blur", function () { leaving = false; });
  }

  /* ------------------------------------------------------------------ practice checks */

  /* The same rules as vaequiz/grading/objective.py (parse_shape, parse_number), so a practice
     check and the grader always agree; a browser test compares the two on many spellings. */
  var SHAPE_WRAPPERS = [/^torch\.size\s*\(\s*(.*)\s*\)$/, /^size\s*\(\s*(.*)\s*\)$/, /^\((.*)\)$/, /^\[(.*)\]$/];

  function parseShape(text) {
    var body = text.trim().toLowerCase();
    if (body === "") { return null; }
    var changed = true;
    while (changed) {
      changed = false;
      for (var i = 0; i < SHAPE_WRAPPERS.length; i++) {
        var match = SHAPE_WRAPPERS[i].exec(body);
        if (match) { body = match[1].trim(); changed = true; break; }
      }
    }
    if (body === "" || body === "scalar") { return []; }
    var parts = body.split(/\s*(?:,|x|×|\*)\s*/);
    if (parts.length && parts[parts.length - 1] === "" && body.indexOf(",") >= 0) { parts.pop(); }
    if (!parts.length || !parts.every(function (p) { return /^\d{1,12}$/.test(p); })) { return null; }
    return parts.map(Number);
  }

  var PY_FLOAT = /^[-+]?(?:(?:\d(?:_?\d)*)?\.?\d(?:_?\d)*|\d(?:_?\d)*\.)(?:e[-+]?\d(?:_?\d)*)?$/i;

  function parseNumber(text) {
    var body = text.trim().replace(/\u2212/g, "-");
    var fraction = /^([-+]?\d+(?:\.\d*)?)\s*\/\s*(\d+(?:\.\d*)?)$/.exec(body);
    if (fraction) {
      var denominator = Number(fraction[2]);
      return denominator ? Number(fraction[1]) / denominator : null;
    }
    if (!PY_FLOAT.test(body)) { return null; }
    var value = Number(body.replace(/_/g, ""));
    return isFinite(value) ? value : null;
  }

  function judge(item, key) {
    var value = readAnswer(item);
    if (value === undefined) { return { verdict: null, message: "Answer first, then check." }; }
    if (item.kind === "mcq") {
      var chosen = (Array.isArray(value) ? value : [value]).slice().sort();
      var right = chosen.join(",") === key.labels.slice().sort().join(",");
      return { verdict: right, message: right ? "Correct." : "Not correct. Read the feedback below and try again." };
    }
    if (item.kind === "shape") {
      var shape = parseShape(value);
      if (shape === null) { return { verdict: null, message: "Write a shape such as (64, 20)." }; }
      var same = shape.join(",") === key.shape.join(",") && shape.length === key.shape.length;
      return { verdict: same, message: same ? "Correct." : "Not correct: that is not the shape." };
    }
    var number = parseNumber(value);
    if (number === null) { return { verdict: null, message: "Write a number such as 0.25." }; }
    var difference = Math.abs(number - key.value);
    var allowed = Math.max(key.tolerance, key.relative_tolerance * Math.abs(key.value), 1e-12 * Math.abs(key.value));
    var close = difference <= allowed;
    return { verdict: close, message: close ? "Correct." : "Not correct." };
  }

  function checkItem(item) {
    var element = itemElement(item.id);
    var result = judge(item, (data.checks || {})[item.id]);
    var verdict = document.getElementById("verdict-" + item.id);
    verdict.textContent = result.message;
    verdict.className = "verdict" + (result.verdict === true ? " ok" : result.verdict === false ? " bad" : "");
    if (result.verdict === null) { return; }
    var chosen = readAnswer(item);
    chosen = Array.isArray(chosen) ? chosen : [chosen];
    $all(".option-feedback", element).forEach(function (box) {
      box.hidden = chosen.indexOf(box.getAttribute("data-feedback-for")) < 0;
    });
    var reveal = document.getElementById("reveal-" + item.id);
    if (reveal) { reveal.hidden = false; }
  }

  function updateRevealButtons() {
    data.items.forEach(function (item) {
      var button = $('[data-reveal="' + item.id + '"]');
      if (button) { button.disabled = readAnswer(item) === undefined; }
    });
  }

  /* ------------------------------------------------------------------ flashcards */

  function flip(card, show) {
    var button = $(".flip", card);
    var back = $(".card-back", card);
    back.hidden = !show;
    card.classList.toggle("flipped", show);
    button.setAttribute("aria-expanded", show ? "true" : "false");
    button.textContent = show ? "Hide answer" : "Show answer";
  }

  function setUpCards() {
    $all(".card").forEach(function (card) {
      $(".flip", card).addEventListener("click", function () { flip(card, $(".card-back", card).hidden); });
    });
    var showAll = document.getElementById("show-all-cards");
    var hideAll = document.getElementById("hide-all-cards");
    if (showAll) { showAll.addEventListener("click", function () { $all(".card").forEach(function (c) { flip(c, true); }); }); }
    if (hideAll) { hideAll.addEventListener("click", function () { $all(".card").forEach(function (c) { flip(c, false); }); }); }
  }

  /* ------------------------------------------------------------------ start */

  function onChange() { store(); updateProgress(); updateRevealButtons(); }

  if (data.mode === "flashcards") { setUpCards(); return; }
  if (data.mode === "key") { return; }

  restore();
  $all(".code-box").forEach(setUpCodeBox);
  document.addEventListener("input", onChange);
  document.addEventListener("change", onChange);
  var saveButton = document.getElementById("save-answers");
  if (saveButton) { saveButton.addEventListener("click", saveSheet); }
  $all("[data-check]").forEach(function (button) {
    var id = button.getAttribute("data-check");
    var item = data.items.filter(function (i) { return i.id === id; })[0];
    button.addEventListener("click", function () { checkItem(item); });
  });
  $all("[data-reveal]").forEach(function (button) {
    button.addEventListener("click", function () {
      document.getElementById("reveal-" + button.getAttribute("data-reveal")).hidden = false;
    });
  });
  updateProgress();
  updateRevealButtons();
}());
