// nhiwatch UI: live updates and a keyboard shortcut. Served as a file (the Content-Security-Policy
// allows no inline script); the pages work without it.
(function () {
  "use strict";
  var POLL_MS = 4000;
  var body = document.body;
  var status = document.getElementById("live-status");
  var toggle = document.getElementById("live-toggle");
  var busy = false;

  function say(text) {
    if (status) status.textContent = text;
  }

  // Re-renders <main> from the server when the data version changes, keeping open <details>
  // and the scroll position; leaves the page alone while someone is typing in a form.
  function refresh() {
    var active = document.activeElement;
    if (active && active.closest && active.closest("main form")) {
      say("New data: reload to see it");
      return Promise.resolve();
    }
    return fetch(location.href, { credentials: "same-origin", cache: "no-store" })
      .then(function (r) { return r.ok ? r.text() : null; })
      .then(function (html) {
        if (!html) return;
        var doc = new DOMParser().parseFromString(html, "text/html");
        var fresh = doc.getElementById("main");
        var main = document.getElementById("main");
        if (!fresh || !main) return;
        var open = Array.prototype.map.call(
          main.querySelectorAll("details[open][id]"), function (d) { return d.id; });
        var closed = Array.prototype.map.call(
          main.querySelectorAll("details[id]:not([open])"), function (d) { return d.id; });
        var y = window.scrollY;
        main.replaceWith(document.adoptNode(fresh));
        open.forEach(function (id) { var d = document.getElementById(id); if (d) d.open = true; });
        closed.forEach(function (id) { var d = document.getElementById(id); if (d) d.open = false; });
        window.scrollTo(0, y);
        body.dataset.version = doc.body.dataset.version || "";
        say("Updated " + new Date().toLocaleTimeString());
      });
  }

  function poll() {
    if (busy || document.hidden || (toggle && !toggle.checked)) return;
    busy = true;
    fetch("/ui/api/version", { credentials: "same-origin", cache: "no-store" })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (answer) {
        if (answer && answer.version && answer.version !== body.dataset.version) return refresh();
      })
      .catch(function () { say("Offline"); })
      .then(function () { busy = false; });
  }

  if (body.dataset.version) setInterval(poll, POLL_MS);

  // "/" jumps to the search box, as in many tools.
  document.addEventListener("keydown", function (e) {
    if (e.key !== "/" || e.ctrlKey || e.metaKey || e.altKey) return;
    var t = e.target;
    if (t && t.closest && t.closest("input, textarea, select")) return;
    var search = document.getElementById("search");
    if (search) { e.preventDefault(); search.focus(); }
  });
})();
