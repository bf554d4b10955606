// agentq operator dashboard: live refresh, vendored (no network, no framework).
// Every page works without this file. Where scripts run, the page's <main data-refresh>
// is fetched again every few seconds and swapped in place; a redirect (signed out) or an
// error stops nothing, the next round tries again. While a control inside <main> has the
// focus, the swap waits, so a click on a form button is never lost.
(function () {
  "use strict";
  var main = document.querySelector("main[data-refresh]");
  if (!main || !window.fetch || !window.DOMParser) return;
  var every = Number(main.getAttribute("data-refresh")) || 2000;
  function swap(html) {
    var next = new DOMParser().parseFromString(html, "text/html").querySelector("main[data-refresh]");
    if (next && !main.contains(document.activeElement)) main.innerHTML = next.innerHTML;
  }
  function round() {
    if (document.hidden) return setTimeout(round, every);
    fetch(location.href, { credentials: "same-origin", redirect: "manual" })
      .then(function (r) { return r.ok ? r.text() : null; })
      .then(function (html) { if (html) swap(html); })
      .catch(function () {})
      .then(function () { setTimeout(round, every); });
  }
  setTimeout(round, every);
})();
