/* vaequiz page script: keeps answers in localStorage (per quiz, variant and student, in sync
   across tabs), reads numbers and shapes by the grader's rules, checks practice answers, runs
   the exam's clock, deals flashcards and saves the answer sheet. It sends nothing anywhere: the
   sheet is downloaded as a file the student hands in. */
(function () {
  "use strict";

  var data = JSON.parse(document.getElementById("quiz-data").textContent);
  var itemsById = {};
  data.items.forEach(function (item) { itemsById[item.id] = item; });

  function $(selector, root) { return (root || document).querySelector(selector); }
  function $all(selector, root) { return Array.prototype.slice.call((root || document).querySelectorAll(selector)); }
  function itemElement(id) { return document.getElementById("q-" + id); }
  function byId(id) { return document.getElementById(id); }
  function nowIso() { return new Date().toISOString().replace(/\.\d{3}Z$/, "Z"); }
  function clock(date) { return (date || new Date()).toTimeString().slice(0, 8); }

  /* ================================================================== the grader's reading rules
     The same rules as vaequiz/grading/objective.py (parse_shape, parse_number), with Python's own
     digit and space classes (vaequiz/render/reading_rules.py), so the page reads exactly what
     the grader reads; a browser test compares the two on generated inputs. */

  var rules = data.rules || { digit_zeros: [48], spaces: [9, 10, 11, 12, 13, 32] };
  var SPACE = {};
  rules.spaces.forEach(function (code) { SPACE[code] = true; });

  function digitValue(code) {
    var zeros = rules.digit_zeros;
    for (var i = 0; i < zeros.length; i++) {
      if (code >= zeros[i] && code <= zeros[i] + 9) { return code - zeros[i]; }
    }
    return -1;
  }

  /* A text as one class character per code point, the way the grader's patterns see it:
     DIGIT for a Python digit (its value kept in `values`), " " for a Python space ("\n" stays
     "\n", which Python's "." does not match), any other BMP character itself, anything else
     (and the two private characters used here) OTHER. */
  var DIGIT = "\uE001", OTHER = "\uE000";
  function tokens(text) {
    var classes = "", values = [];
    Array.from(text).forEach(function (ch) {
      var code = ch.codePointAt(0);
      var digit = digitValue(code);
      if (digit >= 0) { classes += DIGIT; values.push(String(digit)); }
      else if (SPACE[code]) { classes += code === 10 ? "\n" : " "; values.push(" "); }
      else { classes += ch.length === 1 && ch !== DIGIT && ch !== OTHER ? ch : OTHER; values.push(ch); }
    });
    return { classes: classes, values: values };
  }

  function slice(view, start, end) { return { classes: view.classes.slice(start, end), values: view.values.slice(start, end) }; }

  /* Python's str.strip(): Unicode whitespace as Python defines it. */
  function strip(view) {
    var start = 0, end = view.classes.length;
    while (start < end && /[ \n]/.test(view.classes[start])) { start++; }
    while (end > start && /[ \n]/.test(view.classes[end - 1])) { end--; }
    return slice(view, start, end);
  }

  function pyStrip(text) { return strip(tokens(text)).values.join(""); }

  /* Each pattern: (prefix)(inner)(suffix); "[ \n]" is Python's \s, "[^\n]" Python's ".". */
  var SHAPE_WRAPPERS = [
    /^(torch\.size[ \n]*\([ \n]*)([^\n]*)([ \n]*\))$/,
    /^(size[ \n]*\([ \n]*)([^\n]*)([ \n]*\))$/,
    /^(\()([^\n]*)(\))$/,
    /^(\[)([^\n]*)(\])$/
  ];
  var SHAPE_SEPARATOR = /[ \n]*(?:,|x|×|\*)[ \n]*/g;
  var SHAPE_PART = /^\uE001{1,12}$/;

  function parseShape(text) {
    /* body = text.strip().lower(); wrappers peeled; () and scalar are scalars; parts split on
       , x × * with spaces; a trailing comma allowed; each part 1-12 digits. */
    var body = strip(tokens(text.toLowerCase()));
    if (!body.classes) { return null; }
    var changed = true;
    while (changed) {
      changed = false;
      for (var i = 0; i < SHAPE_WRAPPERS.length; i++) {
        var match = SHAPE_WRAPPERS[i].exec(body.classes);
        if (match) {
          body = strip(slice(body, match[1].length, match[1].length + match[2].length));
          changed = true;
          break;
        }
      }
    }
    if (body.classes === "" || body.values.join("") === "scalar") { return []; }
    var parts = [], from = 0, found;
    SHAPE_SEPARATOR.lastIndex = 0;
    while ((found = SHAPE_SEPARATOR.exec(body.classes)) !== null) {
      parts.push(slice(body, from, found.index));
      from = found.index + found[0].length;
    }
    parts.push(slice(body, from, body.classes.length));
    if (parts[parts.length - 1].classes === "" && body.classes.indexOf(",") >= 0) { parts.pop(); }
    if (!parts.length || !parts.every(function (p) { return SHAPE_PART.test(p.classes); })) { return null; }
    return parts.map(function (p) { return Number(p.values.join("")); });
  }

  var FRACTION = /^([-+]?\uE001+(?:\.\uE001*)?)[ \n]*\/[ \n]*(\uE001+(?:\.\uE001*)?)$/;
  var DIGITPART = "\uE001(?:_?\uE001)*";
  var PY_FLOAT = new RegExp("^[-+]?(?:(?:" + DIGITPART + ")?\\." + DIGITPART + "|" + DIGITPART + "\\.?)(?:[eE][-+]?" + DIGITPART + ")?$");

  function parseNumber(text) {
    /* body = text.strip().replace("−", "-"); a fraction a/b (b != 0), else Python's float()
       of the body (Unicode digits, underscores between digits), finite only. */
    var body = strip(tokens(text.replace(/\u2212/g, "-")));
    var fraction = FRACTION.exec(body.classes);
    if (fraction) {
      var top = Number(slice(body, 0, fraction[1].length).values.join(""));
      var bottom = Number(slice(body, body.classes.length - fraction[2].length).values.join(""));
      return bottom ? top / bottom : null;
    }
    if (!PY_FLOAT.test(body.classes)) { return null; }
    var value = Number(body.values.join("").replace(/_/g, ""));
    return isFinite(value) ? value : null;
  }

  function isClose(a, b, relTol, absTol) {  /* Python's math.isclose */
    if (a === b) { return true; }
    if (!isFinite(a) || !isFinite(b)) { return false; }
    var diff = Math.abs(b - a);
    return diff <= Math.abs(relTol * b) || diff <= Math.abs(relTol * a) || diff <= absTol;
  }

  function formatShape(dims) { return "(" + dims.join(", ") + (dims.length === 1 ? "," : "") + ")"; }

  /* What to suggest for text the grader cannot read: the compatibility form of the characters
     (full-width digits and brackets), or a decimal comma as a point. Never says whether the
     answer is right. */
  function readingMessage(kind, text) {
    if (!pyStrip(text)) { return ""; }
    if (kind === "shape") {
      if (parseShape(text) !== null) { return ""; }
      var shape = parseShape(text.normalize("NFKC"));
      return shape !== null && shape.length
        ? "Can't read this as a shape; write " + formatShape(shape) + "."
        : "Can't read this as a shape; write it like (64, 20), torch.Size([64, 20]) or 64x20.";
    }
    if (parseNumber(text) !== null) { return ""; }
    var candidates = [text.normalize("NFKC")];
    candidates.push(candidates[0].replace(/(\d),(\d)/, "$1.$2"));
    candidates.push(candidates[0].replace(/(\d)[ \u00a0\u202f\u2009'](?=\d{3}\b)/g, "$1"));
    for (var i = 0; i < candidates.length; i++) {
      if (parseNumber(candidates[i]) !== null) {
        return "Can't read this as a number; write " + pyStrip(candidates[i]).replace(/\u2212/g, "-") + ".";
      }
    }
    return "Can't read this as a number; write it like 0.25, -1e-3 or 1/2.";
  }

  window.vaequizReading = Object.freeze({ parseShape: parseShape, parseNumber: parseNumber, message: readingMessage });

  /* ================================================================== flashcards */

  if (data.mode === "flashcards") { setUpDeck(); return; }
  if (data.mode === "key") { return; }

  /* ================================================================== reading and writing answers */

  function box(item) { return $("textarea, input[type=text]", itemElement(item.id)); }

  function readAnswer(item) {
    var element = itemElement(item.id);
    if (!element) { return undefined; }
    if (item.kind === "mcq") {
      var chosen = $all("input:checked", element).map(function (input) { return input.value; }).sort();
      if (!chosen.length) { return undefined; }
      return item.multiple ? chosen : chosen[0];
    }
    var input = box(item);
    var text = input.value;
    if (!text.trim()) { return undefined; }
    if (item.kind === "code" && text.trim() === input.defaultValue.trim()) { return undefined; }
    return text;
  }

  function writeAnswer(item, value) {
    var element = itemElement(item.id);
    if (!element) { return; }
    if (item.kind === "mcq") {
      var wanted = value === undefined || value === null ? [] : Array.isArray(value) ? value : [value];
      $all("input", element).forEach(function (input) { input.checked = wanted.indexOf(input.value) >= 0; });
    } else {
      var input = box(item);
      input.value = value === undefined || value === null ? (item.kind === "code" ? input.defaultValue : "") : String(value);
      showReading(item);
    }
  }

  /* ================================================================== per-box messages */

  var maxBytes = data.max_answer_bytes || 262144;
  var encoder = new TextEncoder();

  function boxMessage(item, text, kind) {
    var target = byId("msg-" + item.id);
    if (!target) { return; }
    if (target.textContent !== text) { target.textContent = text; }
    target.className = "box-message" + (text ? " " + (kind || "bad") : "");
  }

  /* Cut an answer longer than the grader reads, at a character boundary, and say so. */
  function capAnswer(item) {
    var input = box(item);
    if (!input) { return ""; }
    var bytes = encoder.encode(input.value).length;
    if (bytes <= maxBytes) { return ""; }
    var low = 0, high = input.value.length;
    while (low < high) {
      var middle = Math.ceil((low + high) / 2);
      if (encoder.encode(input.value.slice(0, middle)).length <= maxBytes) { low = middle; } else { high = middle - 1; }
    }
    var cut = input.value.slice(0, low);
    if (/[\ud800-\udbff]$/.test(cut)) { cut = cut.slice(0, -1); }
    input.value = cut;
    return "Cut to " + Math.floor(maxBytes / 1024) + " KB, the most the grader reads (the text was " +
      Math.ceil(bytes / 1024) + " KB). Keep only what answers the question.";
  }

  function showReading(item, capped) {
    if (capped) { boxMessage(item, capped); return; }
    if (item.kind === "shape" || item.kind === "numeric") {
      boxMessage(item, readingMessage(item.kind, box(item).value));
    } else {
      boxMessage(item, "");
    }
  }

  /* ================================================================== storage
     One record per quiz, variant and student: {student, started_at, answers: {id: {value, at}},
     flags}. Every edit is stamped; writing merges with what is stored, item by item, newest
     edit winning, so two tabs never wipe each other's answers, and a storage event from another
     tab brings its newer answers into this one. */

  var studentField = byId("student-id");
  var state = null;       /* {student, key, started_at, answers, flags} once a student has started */
  var lastStoreFailed = false;
  var unsaved = false;    /* edits since the last downloaded sheet */
  var SESSION_KEY = ["vaequiz-current", data.quiz, data.variant].join(":");

  function storageKeyFor(student) { return ["vaequiz", data.quiz, data.variant, student].join(":"); }

  function readRecord(key) {
    try {
      var text = window.localStorage.getItem(key);
      var record = text ? JSON.parse(text) : null;
      return record && typeof record === "object" && record.answers ? record : null;
    } catch (error) { return null; }
  }

  function merged(stored) {
    var answers = {};
    var flags = {};
    var source = stored || { answers: {}, flags: {} };
    Object.keys(source.answers || {}).forEach(function (id) { answers[id] = source.answers[id]; });
    Object.keys(state.answers).forEach(function (id) {
      if (!answers[id] || !(answers[id].at > state.answers[id].at)) { answers[id] = state.answers[id]; }
    });
    Object.keys(source.flags || {}).forEach(function (id) { flags[id] = source.flags[id]; });
    Object.keys(state.flags).forEach(function (id) {
      if (!flags[id] || !(flags[id].at > state.flags[id].at)) { flags[id] = state.flags[id]; }
    });
    return {
      student: state.student,
      started_at: (stored && stored.started_at) || state.started_at,
      locked_at: state.locked_at || (stored && stored.locked_at) || null,
      answers: answers,
      flags: flags
    };
  }

  function store() {
    if (!state) { return; }
    var record = merged(readRecord(state.key));
    try {
      window.localStorage.setItem(state.key, JSON.stringify(record));
      if (lastStoreFailed) { say("Your answers are kept in this browser again (" + clock() + ").", false); }
      lastStoreFailed = false;
    } catch (error) {
      lastStoreFailed = true;
      say("The last save in this browser failed at " + clock() + " (storage full or blocked): " +
        "press Save answers now to download your answers.", true);
    }
  }

  function applyRecord(record, onlyNewer) {
    Object.keys(record.answers || {}).forEach(function (id) {
      var item = itemsById[id];
      var incoming = record.answers[id];
      if (!item || !incoming) { return; }
      var mine = state.answers[id];
      if (onlyNewer && mine && !(incoming.at > mine.at)) { return; }
      state.answers[id] = incoming;
      writeAnswer(item, incoming.value);
    });
    Object.keys(record.flags || {}).forEach(function (id) {
      var incoming = record.flags[id];
      var mine = state.flags[id];
      if (!itemsById[id] || !incoming || (onlyNewer && mine && !(incoming.at > mine.at))) { return; }
      state.flags[id] = incoming;
    });
    if (record.started_at && (!state.started_at || record.started_at < state.started_at)) { state.started_at = record.started_at; }
    if (record.locked_at && !state.locked_at) { lockAnswers(record.locked_at, false); }
  }

  /* Whether this tab knows an edit the other tab's record lacks (tabs see each other's writes
     with a delay, so a write can miss an edit made meanwhile): then this tab writes again. */
  function knowsNewer(record) {
    function newer(mine, theirs) {
      return Object.keys(mine).some(function (id) { return !theirs[id] || mine[id].at > theirs[id].at; });
    }
    return newer(state.answers, record.answers || {}) || newer(state.flags, record.flags || {});
  }

  window.addEventListener("storage", function (event) {
    if (!state) { return; }
    if ((event.key === state.key || event.key === null) && !event.newValue) {
      forgetStudent("This student's answers were removed from this browser in another tab.");
      return;
    }
    if (event.key !== state.key) { return; }
    var record;
    try { record = JSON.parse(event.newValue); } catch (error) { return; }
    if (!record || typeof record !== "object") { return; }
    applyRecord(record, true);
    if (knowsNewer(record)) { store(); }
    refresh();
  });

  /* ================================================================== who is answering */

  var questionsLocked = false;

  function setQuestionsInert(inert) {
    questionsLocked = inert;
    $all(".item, .savebar .needs-student, .question-index").forEach(function (element) {
      if (inert) { element.setAttribute("inert", ""); } else { element.removeAttribute("inert"); }
    });
  }

  function start(student) {
    state = { student: student, key: storageKeyFor(student), started_at: nowIso(), answers: {}, flags: {}, locked_at: null };
    data.items.forEach(function (item) { writeAnswer(item, undefined); });
    var record = readRecord(state.key);
    if (record) { applyRecord(record, false); }
    store();
    setQuestionsInert(false);
    if (studentField && student) {
      studentField.value = student;
      studentField.readOnly = true;
      byId("start-answering").hidden = true;
      byId("switch-student").hidden = false;
      byId("student-help").textContent = "Answering as " + student + ". Answers are kept in this browser under this name.";
      try { window.sessionStorage.setItem(SESSION_KEY, student); } catch (error) { /* kept for this page only */ }
    }
    startClock();
    refresh();
  }

  function askForStudent(message) {
    state = null;
    data.items.forEach(function (item) { writeAnswer(item, undefined); });
    setQuestionsInert(true);
    studentField.readOnly = false;
    studentField.value = "";
    byId("start-answering").hidden = false;
    byId("switch-student").hidden = true;
    byId("student-help").textContent = message || "Enter your name or student id, then press Start. Answers are kept in this browser under it.";
    try { window.sessionStorage.removeItem(SESSION_KEY); } catch (error) { /* nothing kept */ }
    refresh();
  }

  function practiceWithoutStudent() { return data.mode === "practice" && !data.student; }

  function setUpStudent() {
    if (data.student) { start(data.student); return; }
    if (practiceWithoutStudent()) {
      /* practice is for oneself: no gate; the name is only needed to save a sheet */
      start("");
      byId("start-answering").hidden = true;
      byId("switch-student").hidden = true;
      studentField.readOnly = false;
      studentField.value = "";
      byId("student-help").textContent = "Needed only if you save your answers as a sheet.";
      return;
    }
    byId("start-answering").addEventListener("click", function () {
      var student = studentField.value.trim();
      if (!student) {
        byId("student-help").textContent = "Enter your name or student id first.";
        studentField.focus();
        return;
      }
      start(student);
      var first = $(".item input, .item textarea");
      if (first) { first.focus(); }
    });
    studentField.addEventListener("keydown", function (event) {
      if (event.key === "Enter" && !studentField.readOnly) { event.preventDefault(); byId("start-answering").click(); }
    });
    byId("switch-student").addEventListener("click", function () {
      if (unsaved && !window.confirm("Your latest answers are kept in this browser but not downloaded. Switch student anyway?")) { return; }
      unsaved = false;
      askForStudent();
      studentField.focus();
    });
    var remembered = null;
    try { remembered = window.sessionStorage.getItem(SESSION_KEY); } catch (error) { remembered = null; }
    if (remembered) { start(remembered); } else { askForStudent(); }
  }

  /* ================================================================== progress, index, flags */

  function say(message, bad) {
    var target = byId("save-message");
    if (!target) { return; }
    target.textContent = message;
    target.className = bad ? "bad" : "";
  }

  function answeredIds() {
    return data.items.filter(function (item) { return readAnswer(item) !== undefined; }).map(function (item) { return item.id; });
  }

  function isFlagged(id) { return !!(state && state.flags[id] && state.flags[id].on); }

  function refresh() {
    var answered = answeredIds();
    var total = data.items.length;
    var left = total - answered.length;
    var progress = byId("progress");
    if (progress) {
      progress.textContent = left === 0
        ? "All " + total + " questions answered"
        : left + " of " + total + " question" + (total === 1 ? "" : "s") + " unanswered";
    }
    var flagged = 0;
    data.items.forEach(function (item) {
      var done = answered.indexOf(item.id) >= 0;
      var flag = isFlagged(item.id);
      if (flag) { flagged++; }
      var link = $('[data-index-for="' + item.id + '"]');
      if (link) {
        link.className = "index-link" + (done ? " answered" : "") + (flag ? " flagged" : "");
        $(".index-state", link).textContent = (done ? "answered" : "unanswered") + (flag ? ", flagged for review" : "");
      }
      var flagButton = $('[data-flag="' + item.id + '"]');
      if (flagButton) {
        flagButton.setAttribute("aria-pressed", flag ? "true" : "false");
        flagButton.textContent = flag ? "Flagged for review" : "Flag for review";
      }
      var element = itemElement(item.id);
      if (element) { element.classList.toggle("is-flagged", flag); }
      var clear = $('[data-clear="' + item.id + '"]');
      if (clear) { clear.disabled = !done || !!(state && state.locked_at); }
    });
    var summary = byId("index-summary");
    if (summary) { summary.textContent = answered.length + " answered, " + left + " unanswered, " + flagged + " flagged"; }
    var next = byId("next-unanswered");
    if (next) { next.disabled = left === 0; }
    updateRevealButtons();
  }

  /* The question the student was last in (the button itself takes focus when pressed). */
  var lastItem = null;
  document.addEventListener("focusin", function (event) {
    var element = event.target.closest ? event.target.closest(".item") : null;
    if (element) { lastItem = element.getAttribute("data-item"); }
  });

  function goToNextUnanswered() {
    var answered = answeredIds();
    var order = data.items.map(function (item) { return item.id; });
    var from = lastItem ? order.indexOf(lastItem) : -1;
    for (var step = 1; step <= order.length; step++) {
      var id = order[(from + step + order.length) % order.length];
      if (answered.indexOf(id) < 0) {
        var heading = byId("h-" + id);
        itemElement(id).scrollIntoView({ block: "start" });
        var target = $("input, textarea", itemElement(id)) || heading;
        target.focus({ preventScroll: true });
        return;
      }
    }
  }

  /* ================================================================== edits */

  function itemOf(target) {
    var element = target.closest ? target.closest(".item") : null;
    return element ? itemsById[element.getAttribute("data-item")] : null;
  }

  var readingTimers = {};

  function onEdit(event) {
    if (!state || state.locked_at) { return; }
    var item = itemOf(event.target);
    if (!item || event.target.id === "student-id") { return; }
    var capped = item.kind === "mcq" ? "" : capAnswer(item);
    var value = readAnswer(item);
    state.answers[item.id] = { value: value === undefined ? null : value, at: Date.now() };
    unsaved = true;
    store();
    changed(item.id);
    if (capped) {
      showReading(item, capped);
    } else if (item.kind === "shape" || item.kind === "numeric") {
      /* as the student types: clear a message at once, show a new one after a pause (never
         at once on leaving the box: the layout would shift under a click in progress) */
      if (!readingMessage(item.kind, box(item).value)) { boxMessage(item, ""); }
      clearTimeout(readingTimers[item.id]);
      readingTimers[item.id] = setTimeout(function () { showReading(item); }, 700);
    }
    refresh();
  }

  function toggleFlag(id) {
    if (!state) { return; }
    state.flags[id] = { on: !isFlagged(id), at: Date.now() };
    store();
    refresh();
  }

  function clearChoice(id) {
    var item = itemsById[id];
    if (!state || state.locked_at) { return; }
    writeAnswer(item, undefined);
    state.answers[id] = { value: null, at: Date.now() };
    unsaved = true;
    store();
    refresh();
    changed(id);
    var first = $("input", itemElement(id));
    if (first) { first.focus(); }
  }

  /* ================================================================== saving the sheet */

  function safeFilePart(text) { return text.replace(/[^A-Za-z0-9._-]+/g, "_").replace(/^[._]+/, "") || "student"; }

  function collectAnswers() {
    var all = allAnswers();
    var answers = {};
    Object.keys(all).forEach(function (id) { if (all[id] !== null) { answers[id] = all[id]; } });
    return answers;
  }

  /* ================================================================== the page's answers, for a script that adds to it
     (vaequiz serve's serve.js saves them to the server): every graded question's answer (null
     when unanswered), answers written in as if typed (kept in this browser too), and a hook
     called after every edit, clearing a choice included. */

  var changeHooks = [];

  function allAnswers() {
    var answers = {};
    data.items.forEach(function (item) {
      if (item.kind === "flashcard") { return; }
      var value = readAnswer(item);
      answers[item.id] = value === undefined ? null : item.kind === "mcq" && item.multiple && !Array.isArray(value) ? [value] : value;
    });
    return answers;
  }

  function restoreAnswers(answers) {
    if (!state) { return; }
    Object.keys(answers).forEach(function (id) {
      var item = itemsById[id];
      var value = answers[id];
      if (!item || item.kind === "flashcard" || value === undefined || value === null) { return; }
      writeAnswer(item, value);
      state.answers[id] = { value: value, at: Date.now() };
    });
    store();
    refresh();
  }

  function changed(id) {
    changeHooks.forEach(function (hook) { hook(id); });
  }

  window.vaequizPage = Object.freeze({
    items: Object.freeze(data.items.map(function (item) { return Object.freeze({ id: item.id, kind: item.kind }); })),
    answers: allAnswers,
    restore: restoreAnswers,
    onChange: function (hook) { changeHooks.push(hook); }
  });

  function saveSheet(automatic) {
    if (state && practiceWithoutStudent()) { state.student = studentField.value.trim(); }
    if (!state || !state.student) {
      byId("student-help").textContent = "Enter your name or student id first.";
      say("Enter your name or student id first.", true);
      if (studentField) { studentField.focus(); }
      return;
    }
    store();
    var sheet = {
      student: state.student,
      quiz: data.quiz,
      variant: data.variant,
      labels: data.labels,
      started_at: state.started_at,
      saved_at: nowIso(),
      mode: data.mode,
      order: data.items.map(function (item) { return item.id; }),
      answers: collectAnswers()
    };
    if (data.params) { sheet.params = data.params; }
    if (data.time_limit_min) {
      sheet.time_limit_min = data.time_limit_min;
      if (state.locked_at) { sheet.locked_at = state.locked_at; }
    }
    var blob = new Blob([JSON.stringify(sheet, null, 2) + "\n"], { type: "application/json" });
    var link = document.createElement("a");
    link.href = URL.createObjectURL(blob);
    link.download = data.quiz + "-" + safeFilePart(state.student) + ".json";
    document.body.appendChild(link);
    link.click();
    document.body.removeChild(link);
    setTimeout(function () { URL.revokeObjectURL(link.href); }, 10000);
    unsaved = false;
    var left = data.items.length - Object.keys(sheet.answers).length;
    say((automatic ? "Time is up. " : "") + "Saved " + link.download + " at " + clock() +
      (left ? " (" + left + " unanswered)" : "") + ". Hand in that file.", false);
    var clear = byId("clear-answers");
    if (clear) { clear.hidden = false; }
  }

  function clearThisComputer() {
    if (!state) { return; }
    if (!window.confirm("Remove " + state.student + "'s answers from this browser? Keep the downloaded sheet: it is what you hand in.")) { return; }
    try { window.localStorage.removeItem(state.key); } catch (error) { /* nothing stored */ }
    forgetStudent("Your answers were removed from this browser.");
  }

  /* After a clear, in this tab or another one: this tab forgets the answers too, so it can never
     write them back (a tab that kept them would restore them on the next student's first save). */
  function forgetStudent(message) {
    unsaved = false;
    var clear = byId("clear-answers");
    if (clear) { clear.hidden = true; }
    if (data.student) {
      data.items.forEach(function (item) { writeAnswer(item, undefined); });
      state.answers = {}; state.flags = {};
      refresh();
    } else {
      askForStudent(message + " The next student enters their name or id here.");
    }
    say(message, false);
  }

  /* ================================================================== the exam clock */

  var clockTimer = null;

  function deadline() {
    return new Date(Date.parse(state.started_at) + data.time_limit_min * 60000);
  }

  function startClock() {
    var display = byId("time-left");
    if (!data.time_limit_min || !display) { return; }
    if (state.locked_at) { lockAnswers(state.locked_at, false); return; }
    var warned = {};
    clearInterval(clockTimer);
    function tick() {
      if (!state) { clearInterval(clockTimer); return; }
      var left = Math.max(0, Math.round((deadline() - Date.now()) / 1000));
      var minutes = Math.floor(left / 60), seconds = left % 60;
      display.textContent = minutes + ":" + (seconds < 10 ? "0" : "") + seconds;
      [5, 1].forEach(function (mark) {
        if (left <= mark * 60 && left > 0 && !warned[mark] && data.time_limit_min > mark) {
          warned[mark] = true;
          var warning = byId("time-warning");
          warning.textContent = mark + " minute" + (mark === 1 ? "" : "s") + " left: save your answers soon.";
          byId("time-box").classList.add("urgent");
        }
      });
      if (left === 0) {
        clearInterval(clockTimer);
        lockAnswers(nowIso(), true);
      }
    }
    tick();
    clockTimer = setInterval(tick, 1000);
  }

  function lockAnswers(when, save) {
    if (!state) { return; }
    state.locked_at = when;
    store();
    $all(".item input, .item textarea").forEach(function (input) {
      if (input.type === "text" || input.tagName === "TEXTAREA") { input.readOnly = true; } else { input.disabled = true; }
    });
    $all("[data-clear]").forEach(function (button) { button.disabled = true; });
    var warning = byId("time-warning");
    if (warning) { warning.textContent = "Time is up: your answers are locked. Hand in the saved sheet."; }
    var display = byId("time-left");
    if (display) { display.textContent = "0:00"; }
    clearInterval(clockTimer);
    if (save) { saveSheet(true); }
  }

  /* ================================================================== the code box */

  function setUpCodeBox(codeBox) {
    var leaving = false;
    codeBox.addEventListener("keydown", function (event) {
      if (event.key === "Escape") { leaving = true; return; }
      if (event.key === "Tab" && !event.shiftKey && !event.altKey && !event.ctrlKey && !event.metaKey && !leaving) {
        event.preventDefault();
        if (codeBox.readOnly) { return; }
        codeBox.setRangeText("    ", codeBox.selectionStart, codeBox.selectionEnd, "end");
        codeBox.dispatchEvent(new Event("input", { bubbles: true }));
        return;
      }
      if (event.key !== "Shift") { leaving = false; }
    });
    codeBox.addEventListener("blur", function () { leaving = false; });
  }

  /* ================================================================== practice */

  function plural(n, word) { return n + " " + word + (n === 1 ? "" : "s"); }

  function judge(item, key) {
    var value = readAnswer(item);
    if (value === undefined) { return { verdict: null, message: "Answer first, then check." }; }
    if (item.kind === "mcq") {
      var chosen = (Array.isArray(value) ? value : [value]).slice().sort();
      var right = chosen.join(",") === key.labels.slice().sort().join(",");
      if (right) { return { verdict: true, message: "Correct." }; }
      if (!item.multiple) { return { verdict: false, message: "Not correct. Read the feedback on your choice and try again." }; }
      var hits = chosen.filter(function (label) { return key.labels.indexOf(label) >= 0; }).length;
      return {
        verdict: false,
        message: "Not correct: " + hits + " of your " + plural(chosen.length, "tick") + (hits === 1 ? " is" : " are") +
          " right, and there " + (key.labels.length === 1 ? "is 1 correct option" : "are " + key.labels.length + " correct options") + ". Try again."
      };
    }
    if (item.kind === "shape") {
      var shape = parseShape(value);
      if (shape === null) { return { verdict: null, message: readingMessage("shape", value) }; }
      var same = shape.length === key.shape.length && shape.join(",") === key.shape.join(",");
      if (same) { return { verdict: true, message: "Correct." }; }
      var sorted = function (dims) { return dims.slice().sort(function (a, b) { return a - b; }).join(","); };
      if (shape.length === key.shape.length && sorted(shape) === sorted(key.shape)) {
        return { verdict: false, message: "Not correct: right numbers, wrong order. Try again." };
      }
      return { verdict: false, message: "Not correct: that is not the shape. Try again." };
    }
    var number = parseNumber(value);
    if (number === null) { return { verdict: null, message: readingMessage("numeric", value) }; }
    var close = isClose(number, key.value, Math.max(key.relative_tolerance, 1e-9), key.tolerance);
    return { verdict: close, message: close ? "Correct." : "Not correct. Try again." };
  }

  function revealKey(item) {
    var reveal = byId("reveal-" + item.id);
    if (reveal) { reveal.hidden = false; }
    $all(".option", itemElement(item.id)).forEach(function (option) {
      var input = $("input", option);
      var key = (data.checks[item.id] || {}).labels || [];
      if (input && key.indexOf(input.value) >= 0) { option.classList.add("is-key"); }
    });
    var show = $('[data-show-answer="' + item.id + '"]');
    if (show) { show.hidden = true; }
  }

  function checkItem(item) {
    var element = itemElement(item.id);
    var result = judge(item, (data.checks || {})[item.id]);
    var verdict = byId("verdict-" + item.id);
    verdict.textContent = result.message;
    verdict.className = "verdict" + (result.verdict === true ? " ok" : result.verdict === false ? " bad" : "");
    if (result.verdict === null) { return; }
    var chosen = readAnswer(item);
    chosen = Array.isArray(chosen) ? chosen : [chosen];
    $all(".option-feedback", element).forEach(function (feedback) {
      feedback.hidden = chosen.indexOf(feedback.getAttribute("data-feedback-for")) < 0;
    });
    if (result.verdict) { revealKey(item); }
  }

  function updateRevealButtons() {
    data.items.forEach(function (item) {
      var button = $('[data-reveal="' + item.id + '"]');
      if (button) { button.disabled = readAnswer(item) === undefined; }
    });
  }

  /* ================================================================== flashcards as a deck */

  function setUpDeck() {
    var cards = $all(".card");
    function flip(card, show) {
      var button = $(".flip", card);
      var back = $(".card-back", card);
      back.hidden = !show;
      card.classList.toggle("flipped", show);
      button.setAttribute("aria-expanded", show ? "true" : "false");
      button.textContent = show ? "Hide answer" : "Show answer";
    }
    cards.forEach(function (card) {
      $(".flip", card).addEventListener("click", function () { flip(card, $(".card-back", card).hidden); });
    });
    var showAll = byId("show-all-cards");
    var hideAll = byId("hide-all-cards");
    if (showAll) { showAll.addEventListener("click", function () { cards.forEach(function (c) { flip(c, true); }); }); }
    if (hideAll) { hideAll.addEventListener("click", function () { cards.forEach(function (c) { flip(c, false); }); }); }

    var deck = byId("deck");
    if (!deck || !cards.length) { return; }
    var queue = [], again = [], known = 0, current = null, round = 1;
    var ids = cards.map(function (card) { return card.getAttribute("data-card"); });
    var stage = byId("deck-card");
    var progress = byId("deck-progress");
    var controls = byId("deck-controls");
    var doneBox = byId("deck-done");

    function cardById(id) { return byId("card-" + id); }

    function render() {
      if (current === null) {
        stage.textContent = "";
        controls.hidden = true;
        doneBox.hidden = false;
        byId("deck-done-text").textContent = "All " + plural(ids.length, "card") + " known, in " + plural(round, "round") + ".";
        progress.textContent = ids.length + " of " + ids.length + " known";
        return;
      }
      doneBox.hidden = true;
      controls.hidden = false;
      var copy = cardById(current).cloneNode(true);
      copy.removeAttribute("id");
      copy.classList.add("deck-card");
      $all("[id]", copy).forEach(function (element) { element.id = "deck-" + element.id; });
      copy.setAttribute("aria-labelledby", "deck-h-" + current);
      var back = $(".card-back", copy);
      back.hidden = true;
      copy.classList.remove("flipped");
      var button = $(".flip", copy);
      button.setAttribute("aria-controls", back.id);
      button.setAttribute("aria-expanded", "false");
      button.textContent = "Show answer";
      button.addEventListener("click", function () { turn(); });
      stage.textContent = "";
      stage.appendChild(copy);
      progress.textContent = known + " of " + ids.length + " known · " + plural(queue.length + 1, "card") +
        " left in round " + round + (again.length ? " · " + again.length + " to repeat" : "");
      byId("deck-again").disabled = true;
      byId("deck-got-it").disabled = true;
    }

    function turn() {
      var copy = $(".deck-card", stage);
      if (!copy) { return; }
      var back = $(".card-back", copy);
      var show = back.hidden;
      back.hidden = !show;
      copy.classList.toggle("flipped", show);
      var button = $(".flip", copy);
      button.setAttribute("aria-expanded", show ? "true" : "false");
      button.textContent = show ? "Hide answer" : "Show answer";
      byId("deck-again").disabled = !show;
      byId("deck-got-it").disabled = !show;
    }

    function next() {
      if (!queue.length && again.length) { queue = again; again = []; round++; }
      current = queue.length ? queue.shift() : null;
      render();
    }

    function answer(gotIt) {
      if (current === null || byId("deck-got-it").disabled) { return; }
      if (gotIt) { known++; } else { again.push(current); }
      next();
      var focusTarget = $(".deck-card .flip", stage) || byId("deck-restart");
      focusTarget.focus();
    }

    function shuffled(list) {
      var copy = list.slice();
      for (var i = copy.length - 1; i > 0; i--) {
        var j = Math.floor(Math.random() * (i + 1));
        var swap = copy[i]; copy[i] = copy[j]; copy[j] = swap;
      }
      return copy;
    }

    function restart(shuffle) {
      queue = shuffle ? shuffled(ids) : ids.slice();
      again = []; known = 0; round = 1;
      next();
    }

    byId("deck-again").addEventListener("click", function () { answer(false); });
    byId("deck-got-it").addEventListener("click", function () { answer(true); });
    byId("deck-shuffle").addEventListener("click", function () { restart(true); });
    byId("deck-restart").addEventListener("click", function () { restart(false); });
    document.addEventListener("keydown", function (event) {
      /* shortcuts work wherever focus is, except in a text field or on another control's key */
      if (deck.hidden || event.altKey || event.ctrlKey || event.metaKey) { return; }
      if (event.target.closest && event.target.closest("input, textarea, select, summary")) { return; }
      var key = event.key.toLowerCase();
      if (key === "f") { event.preventDefault(); turn(); }
      else if (key === "1" || key === "a") { event.preventDefault(); answer(false); }
      else if (key === "2" || key === "g") { event.preventDefault(); answer(true); }
    });

    var listView = byId("list-view");
    var deckView = byId("deck-view");
    function showView(list) {
      deck.hidden = list;
      byId("card-list").hidden = !list;
      listView.setAttribute("aria-pressed", list ? "true" : "false");
      deckView.setAttribute("aria-pressed", list ? "false" : "true");
    }
    listView.hidden = false;
    deckView.hidden = false;
    listView.addEventListener("click", function () { showView(true); });
    deckView.addEventListener("click", function () { showView(false); });
    showView(false);
    restart(false);
  }

  /* ================================================================== start */

  $all(".code-box").forEach(setUpCodeBox);
  document.addEventListener("input", onEdit);
  document.addEventListener("change", onEdit);
  var saveButton = byId("save-answers");
  if (saveButton) { saveButton.addEventListener("click", function () { saveSheet(false); }); }
  var clearButton = byId("clear-answers");
  if (clearButton) { clearButton.addEventListener("click", clearThisComputer); }
  var nextButton = byId("next-unanswered");
  if (nextButton) { nextButton.addEventListener("click", goToNextUnanswered); }
  $all("[data-flag]").forEach(function (button) {
    button.addEventListener("click", function () { toggleFlag(button.getAttribute("data-flag")); });
  });
  $all("[data-clear]").forEach(function (button) {
    button.addEventListener("click", function () { clearChoice(button.getAttribute("data-clear")); });
  });
  $all("[data-check]").forEach(function (button) {
    var item = itemsById[button.getAttribute("data-check")];
    button.addEventListener("click", function () { checkItem(item); });
  });
  $all("[data-show-answer]").forEach(function (button) {
    button.addEventListener("click", function () { revealKey(itemsById[button.getAttribute("data-show-answer")]); });
  });
  $all("[data-reveal]").forEach(function (button) {
    button.addEventListener("click", function () {
      byId("reveal-" + button.getAttribute("data-reveal")).hidden = false;
    });
  });
  window.addEventListener("beforeunload", function (event) {
    if (!unsaved || data.mode !== "exam") { return; }
    event.preventDefault();
    event.returnValue = "";
  });
  setUpStudent();
}());
