// Tollgate pages work without this file. It adds: copy buttons, focus on the error summary,
// the last key shown filled into the API reference, and live updates of "live on all gateways" (polling /live/{event} until every node has the change).
(function () {
  "use strict";
  document.querySelectorAll("[data-copy]").forEach(function (button) {
    var target = document.getElementById(button.getAttribute("data-copy"));
    if (!target || !navigator.clipboard) { return; }
    button.hidden = false;
    button.addEventListener("click", function () {
      navigator.clipboard.writeText(target.textContent.trim()).then(function () {
        var label = button.textContent;
        button.textContent = "Copied";
        setTimeout(function () { button.textContent = label; }, 1500);
      });
    });
  });
  // A key shown once is kept in this tab's sessionStorage (never sent anywhere), so the API
  // reference can fill it into its curl lines and try-it forms.
  var shown = document.getElementById("new-key");
  if (shown && window.sessionStorage) {
    try { sessionStorage.setItem("tollgate-key", shown.textContent.trim()); } catch (e) { /* storage full or off */ }
  }
  var kept = null;
  try { kept = window.sessionStorage && sessionStorage.getItem("tollgate-key"); } catch (e) { kept = null; }
  if (kept && /^tg_[A-Za-z0-9_-]+$/.test(kept)) {
    document.querySelectorAll("[data-curl]").forEach(function (code) {
      code.textContent = code.textContent.split("$TOLLGATE_KEY").join(kept);
    });
    document.querySelectorAll("input[data-key]").forEach(function (input) {
      if (!input.value) { input.value = kept; }
    });
  }
  var summary = document.querySelector("[data-autofocus]");
  if (summary) { summary.focus(); }
  document.querySelectorAll("[data-live]").forEach(function (el) {
    var event = el.getAttribute("data-live");
    if (event === "0" || el.classList.contains("ok")) { return; }
    var tries = 0;
    function poll() {
      tries += 1;
      fetch((el.getAttribute("data-live-base") || "/live/") + encodeURIComponent(event), { credentials: "same-origin" })
        .then(function (r) { return r.ok ? r.json() : null; })
        .then(function (live) {
          if (!live) { return; }
          el.textContent = live.text;
          if (live.done) { el.classList.add("ok"); } else if (tries < 120) { setTimeout(poll, 250); }
        })
        .catch(function () { if (tries < 120) { setTimeout(poll, 1000); } });
    }
    poll();
  });
})();
