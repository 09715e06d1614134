// APEX Schema Admin: the panel's own small behaviours. Every page works without this file.
(function () {
  "use strict";

  // Forms marked data-confirm ask before they are sent.
  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (!(form instanceof HTMLFormElement)) return;
    var question = form.getAttribute("data-confirm");
    if (question && !window.confirm(question)) event.preventDefault();
  });

  // Copy buttons: data-copy-target is a selector; the text of every element it matches is
  // copied (several, e.g. each step of a SQL preview, joined by a blank line).
  function wireCopyButtons(root) {
    root.querySelectorAll("[data-copy-target]").forEach(function (button) {
      if (!navigator.clipboard) return;
      button.hidden = false;
      if (button.dataset.copyWired) return;
      button.dataset.copyWired = "1";
      button.addEventListener("click", function () {
        var sources = document.querySelectorAll(button.getAttribute("data-copy-target"));
        if (!sources.length) return;
        var text = Array.prototype.map.call(sources, function (source) {
          return source.textContent.trim();
        }).join("\n\n");
        navigator.clipboard.writeText(text).then(function () {
          var label = button.textContent;
          button.textContent = "Copied";
          window.setTimeout(function () { button.textContent = label; }, 1500);
        });
      });
    });
  }

  document.addEventListener("DOMContentLoaded", function () { wireCopyButtons(document); });
  document.addEventListener("htmx:load", function (event) { wireCopyButtons(event.target); });
})();
