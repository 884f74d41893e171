// tensorfab jobs dashboard: fetch the live part of the page again every few seconds.
// The server renders everything (the page works without this script); this only swaps in
// the fresh HTML of /ui/live for the same page, and says when the daemon stops answering.
(function () {
  "use strict";
  var live = document.getElementById("live");
  var stamp = document.getElementById("updated");
  if (!live) {
    return;
  }
  var everyMs = 1000 * Number(live.getAttribute("data-refresh-s") || 2);
  var busy = false;

  function mark(text, stale) {
    if (stamp) {
      stamp.textContent = text;
      stamp.className = stale ? "stale" : "";
    }
  }

  function refresh() {
    if (busy || document.hidden) {
      return;
    }
    busy = true;
    fetch("/ui/live" + window.location.search, { cache: "no-store", credentials: "same-origin" })
      .then(function (answer) {
        if (answer.status === 401) {
          window.location.reload(); // logged out or token revoked: show the login form
          return null;
        }
        if (!answer.ok) {
          throw new Error("HTTP " + answer.status);
        }
        return answer.text();
      })
      .then(function (html) {
        if (html !== null) {
          live.innerHTML = html;
          mark(new Date().toLocaleTimeString(), false);
        }
      })
      .catch(function (err) {
        mark("daemon not answering (" + err.message + ")", true);
      })
      .then(function () {
        busy = false;
      });
  }

  mark(new Date().toLocaleTimeString(), false);
  window.setInterval(refresh, everyMs);
  document.addEventListener("visibilitychange", refresh);
})();
