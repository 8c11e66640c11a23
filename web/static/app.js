// Tollgate pages work without this file. It adds: copy buttons, focus on the error summary,
// and live updates of "live on all gateways" (polling /live/{event} until every node has the change).
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
  var summary = document.querySelector("[data-autofocus]");
  if (summary) { summary.focus(); }
  document.querySelectorAll("[data-live]").forEach(function (el) {
    var event = el.getAttribute("data-live");
    if (event === "0" || el.classList.contains("ok")) { return; }
    var tries = 0;
    function poll() {
      tries += 1;
      fetch("/live/" + encodeURIComponent(event), { credentials: "same-origin" })
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
