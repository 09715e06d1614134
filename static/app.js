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

  // Live job logs (templates/job.html). The htmx SSE extension appends each line to
  // #job-log. Two things are added here:
  // - the newest line stays in view, unless the reader pauses that (#log-follow);
  // - the stream's after= follows the last line on the page: after a full close the
  //   extension re-creates its EventSource from the sse-connect attribute, without a
  //   Last-Event-ID, and must resume after what the page already shows.
  var logPaused = false;

  function lastShownSeq(log) {
    var last = log.lastElementChild;
    var seq = last ? parseInt(last.getAttribute("data-seq"), 10) : NaN;
    return isNaN(seq) ? parseInt(log.getAttribute("data-last-seq") || "0", 10) : seq;
  }

  function resumeAfter(connect, seq) {
    var url = connect.getAttribute("sse-connect");
    if (!url || !(seq > 0)) return;
    var found = /([?&]after=)(\d+)/.exec(url);
    if (found && parseInt(found[2], 10) >= seq) return;
    connect.setAttribute(
      "sse-connect",
      found ? url.replace(found[0], found[1] + seq) : url + (url.indexOf("?") < 0 ? "?" : "&") + "after=" + seq
    );
  }

  function scrollLog(log) {
    if (!logPaused) log.scrollTop = log.scrollHeight;
  }

  function wireJobLog() {
    var log = document.getElementById("job-log");
    var button = document.getElementById("log-follow");
    if (!log) return;
    if (button) {
      button.hidden = false;
      button.addEventListener("click", function () {
        logPaused = !logPaused;
        button.setAttribute("aria-pressed", logPaused ? "true" : "false");
        button.textContent = logPaused ? "Resume auto-scroll" : "Pause auto-scroll";
        scrollLog(log);
      });
    }
    if (log.closest("[sse-connect]")) scrollLog(log);
  }

  document.addEventListener("DOMContentLoaded", wireJobLog);
  document.addEventListener("htmx:sseMessage", function (event) {
    var log = event.target;
    if (!(log instanceof Element) || log.id !== "job-log") return;
    var connect = log.closest("[sse-connect]");
    if (connect) resumeAfter(connect, lastShownSeq(log));
    scrollLog(log);
  });
})();
