// The instructor's dashboard fills in by itself: every 5 s (while the tab is visible) it
// fetches the dashboard again and swaps in each quiz's section. Nothing else changes on the page.
(function () {
  "use strict";
  var busy = false;
  function refresh() {
    if (busy || document.visibilityState !== "visible") return;
    busy = true;
    fetch(window.location.pathname, { credentials: "same-origin", headers: { "Accept": "text/html" } })
      .then(function (response) { return response.ok ? response.text() : null; })
      .then(function (html) {
        if (!html) return;
        var fresh = new DOMParser().parseFromString(html, "text/html");
        document.querySelectorAll("section[data-live]").forEach(function (section) {
          var update = fresh.getElementById(section.id);
          if (update && update.innerHTML !== section.innerHTML) section.innerHTML = update.innerHTML;
        });
      })
      .catch(function () { /* offline for a moment: the next round tries again */ })
      .then(function () { busy = false; });
  }
  window.setInterval(refresh, 5000);
})();
