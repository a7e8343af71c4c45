// sinkdash behaviour. No inline scripts (the CSP forbids them) and no htmx trigger filters (they
// need eval, which the CSP forbids too), so the live parts of a page are driven from here.
(function () {
  "use strict";

  // New deliveries show within 2 s: one tick a second, each poll one indexed lookup server side.
  var TICK_MS = 1000;
  var listPaused = false;

  // Every element marked data-live polls on "sinkdash:tick" (see runs/views.py for why polling).
  // Nothing is sent while the tab is hidden, nor for the paused run list.
  function tick() {
    if (document.visibilityState !== "visible") return;
    document.querySelectorAll("[data-live]").forEach(function (el) {
      if (listPaused && el.hasAttribute("data-pausable")) return;
      el.dispatchEvent(new CustomEvent("sinkdash:tick"));
    });
  }
  setInterval(tick, TICK_MS);
  document.addEventListener("visibilitychange", tick);

  function showPaused() {
    document.querySelectorAll("[data-pause]").forEach(function (button) {
      button.setAttribute("aria-pressed", String(listPaused));
      button.textContent = listPaused ? "Resume" : "Pause";
    });
    document.querySelectorAll("[data-live-state]").forEach(function (el) {
      el.textContent = listPaused ? "Paused" : "Live";
      el.parentElement.classList.toggle("paused", listPaused);
    });
  }

  document.addEventListener("click", function (event) {
    var button = event.target.closest("[data-pause]");
    if (!button) return;
    listPaused = !listPaused;
    showPaused();
    if (!listPaused) tick();
  });

  // The live run list. A poll's answer goes on top of #rows: new runs, and runs the list shows
  // that a later body changed (or that match the filters again after a body took them off), with
  // a marker (data-gone) for each row that no longer matches. Here the old copy of each changed
  // row and the gone rows are dropped, and the rows put back in id order, newest first. Out-of-band
  // swaps could not do it: they need the row to be on the page already.
  function runId(tr) { return Number(tr.id.slice("run-".length)); }

  document.addEventListener("htmx:afterSwap", function (event) {
    var rows = event.detail.target;
    if (!rows || rows.id !== "rows") return;
    rows.querySelectorAll(":scope > tr[data-gone]").forEach(function (marker) {
      rows.querySelectorAll(":scope > tr[id='run-" + marker.getAttribute("data-gone") + "']")
        .forEach(function (tr) { tr.remove(); });
      marker.remove();
    });
    var seen = new Set();
    var listed = [];
    rows.querySelectorAll(":scope > tr[id^='run-']").forEach(function (tr) {
      if (seen.has(tr.id)) { tr.remove(); return; }  // the old copy: the poll's is above it
      seen.add(tr.id);
      listed.push(tr);
    });
    var ordered = listed.slice().sort(function (a, b) { return runId(b) - runId(a); });
    if (ordered.some(function (tr, i) { return tr !== listed[i]; })) rows.prepend.apply(rows, ordered);
  });

  // A text field's "change" (on blur, or on Enter just before the form's "submit") would send a
  // second request and push a second history entry for one edit: text applies on Enter or Apply.
  document.addEventListener("htmx:confirm", function (event) {
    var trigger = event.detail.triggeringEvent;
    if (trigger && trigger.type === "change" && trigger.target.matches("input[type=search], input:not([type])")) {
      event.preventDefault();
    }
  });

  // Filter forms send only the fields that are filled in, so a filtered view's URL stays short
  // enough to read and bookmark.
  document.addEventListener("htmx:configRequest", function (event) {
    if (event.detail.verb !== "get" || event.detail.elt.tagName !== "FORM") return;
    var params = event.detail.parameters;
    Object.keys(params).forEach(function (name) {
      var values = params.getAll(name);
      if (values.every(function (v) { return v === ""; })) delete params[name];
    });
  });
})();
