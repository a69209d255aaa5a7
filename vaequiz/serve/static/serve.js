/* vaequiz serve: added to a built quiz page by the server. It saves the page's answers to the
   server (debounced, every change), restores them on load, submits exams, asks for practice
   grading and shows each question's grading state. The answers themselves are read and written
   by the page's own script (quiz.js, through window.vaequizPage), which also keeps the page's
   local copy: the fallback when the server cannot be reached. */
(function () {
  "use strict";
  var quizPage = window.vaequizPage;
  var conf = JSON.parse(document.getElementById("serve-data").textContent);
  var base = "/api/attempts/" + conf.attempt;
  var DEBOUNCE_MS = 800;

  function $(selector, root) { return (root || document).querySelector(selector); }
  function $all(selector, root) { return Array.prototype.slice.call((root || document).querySelectorAll(selector)); }
  function itemElement(id) { return document.getElementById("q-" + id); }
  function answers() { return quizPage.answers(); }

  /* status bar */
  var bar = document.createElement("section");
  bar.className = "savebar serve-bar";
  bar.setAttribute("aria-label", "Saved on the server");
  var status = document.createElement("p");
  status.id = "server-status";
  status.setAttribute("role", "status");
  status.setAttribute("aria-live", "polite");
  bar.appendChild(status);
  var action = document.createElement("button");
  action.type = "button";
  action.id = conf.mode === "exam" ? "submit-exam" : "grade-practice";
  action.textContent = conf.mode === "exam" ? "Submit exam" : "Grade my answers";
  bar.appendChild(action);
  var main = document.getElementById("main");
  main.appendChild(bar);
  function say(text) { status.textContent = text; }

  function call(path, body) {
    return fetch(base + path, {
      method: body === undefined ? "GET" : "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": conf.csrf },
      body: body === undefined ? undefined : JSON.stringify(body)
    }).then(function (response) {
      return response.json().then(function (data) {
        if (!response.ok) { throw new Error(data.error || ("HTTP " + response.status)); }
        return data;
      });
    });
  }

  var timer = null, pending = false, locked = conf.submitted;
  function save() {
    timer = null;
    if (locked) { return Promise.resolve(); }
    pending = false;
    return call("/answers", { answers: answers() }).then(function (data) {
      say("Saved on the server at " + new Date(data.saved_at).toLocaleTimeString() + ".");
    }).catch(function (error) {
      pending = true;
      say("Not saved on the server (" + error.message + "); your answers are kept in this browser and sent again when the connection is back.");
    });
  }
  function schedule() {
    if (locked) { return; }
    pending = true;
    if (timer) { clearTimeout(timer); }
    timer = setTimeout(save, DEBOUNCE_MS);
  }
  window.addEventListener("online", function () { if (pending) { save(); } });

  function describe(states) {
    var lines = [];
    quizPage.items.forEach(function (item) {
      var s = states[item.id];
      var element = itemElement(item.id);
      if (!s || !element) { return; }
      var box = $(".serve-result", element);
      if (!box) { box = document.createElement("div"); box.className = "serve-result"; box.setAttribute("role", "status"); element.appendChild(box); }
      var text = s.state === "queued" ? "Queued for grading (position " + s.position + ")" : s.state === "running" ? "Being graded now" : "Graded";
      if (s.result) {
        text += ": " + s.result.points + " of " + s.result.max_points + " points";
        s.result.checks.forEach(function (check) { if (check.message) { text += "\n" + check.name + ": " + check.message; } });
      }
      box.textContent = text;
      lines.push(s.state);
    });
    return lines;
  }

  function poll() {
    call("/status").then(function (data) {
      var states = describe(data.questions);
      var waiting = states.filter(function (s) { return s !== "graded"; }).length;
      if (data.submitted) {
        say(waiting ? "Submitted; " + waiting + " answer(s) waiting to be graded." :
            (data.released ? "Submitted and graded." : "Submitted. Grades and feedback appear here when your instructor releases them."));
      }
      /* every 1.5 s; less often (up to 10 s) while far back in a long queue, so a class
         waiting on a burst does not keep the server busy answering polls */
      var deepest = 0;
      Object.keys(data.questions).forEach(function (id) { deepest = Math.max(deepest, data.questions[id].position || 0); });
      if (waiting) { setTimeout(poll, Math.min(10000, Math.max(1500, deepest * 10))); }
    }).catch(function (error) { say("Could not reach the server (" + error.message + "); retrying."); setTimeout(poll, 5000); });
  }

  action.addEventListener("click", function () {
    if (conf.mode === "exam") {
      if (!window.confirm("Submit the exam? You cannot change your answers afterwards.")) { return; }
      call("/submit", { answers: answers() }).then(function () {
        locked = true; action.disabled = true; poll();
      }).catch(function (error) { say("Not submitted: " + error.message); });
    } else {
      var given = answers();
      var chosen = {};
      Object.keys(given).forEach(function (id) { if (given[id] !== null) { chosen[id] = given[id]; } });
      call("/grade", { answers: chosen }).then(poll).catch(function (error) { say("Not graded: " + error.message); });
    }
  });

  /* the server's copy wins for the questions it has; the page's local copy fills the rest */
  quizPage.restore(conf.answers);
  quizPage.onChange(schedule);
  schedule();  /* answers only this browser had go to the server */
  if (conf.submitted) {
    action.disabled = true;
    $all("#main input, #main textarea").forEach(function (box) { box.disabled = true; });
    poll();
  } else if (conf.graded) {
    poll();
  } else {
    say(conf.deadline ? "Answers are saved on the server as you type. Time is up at " + new Date(conf.deadline).toLocaleTimeString() + "." : "Answers are saved on the server as you type.");
  }
})();
