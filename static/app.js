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
    // Lines may sit inside step groups (<details class="log-step">): the last line anywhere.
    var all = log.getElementsByClassName("log-line");
    var last = all.length ? all[all.length - 1] : null;
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

  // Times: the server writes UTC (<time datetime=... data-local=...>, render.timestamp); here
  // they are shown in the viewer's time zone, with the UTC time kept on hover, and list
  // times as "3 min ago". Without this file the pages say UTC.
  function pad(n) { return (n < 10 ? "0" : "") + n; }

  function zoneName(date) {
    try {
      var parts = new Intl.DateTimeFormat(undefined, { timeZoneName: "short" }).formatToParts(date);
      for (var i = 0; i < parts.length; i++) {
        if (parts[i].type === "timeZoneName") return parts[i].value;
      }
    } catch (e) { /* an old browser: no zone name */ }
    return "";
  }

  function localText(date, seconds) {
    var text = date.getFullYear() + "-" + pad(date.getMonth() + 1) + "-" + pad(date.getDate()) +
      " " + pad(date.getHours()) + ":" + pad(date.getMinutes()) +
      (seconds ? ":" + pad(date.getSeconds()) : "");
    var zone = zoneName(date);
    return zone ? text + " " + zone : text;
  }

  function relativeText(date, now) {
    var seconds = Math.round((now - date) / 1000);
    var future = seconds < 0;
    var size = Math.abs(seconds);
    var text;
    if (size < 45) return future ? "in a few seconds" : "just now";
    if (size < 90) text = "1 min";
    else if (size < 3600) text = Math.round(size / 60) + " min";
    else if (size < 5400) text = "1 hour";
    else if (size < 86400) text = Math.round(size / 3600) + " hours";
    else if (size < 172800) text = "1 day";
    else if (size < 30 * 86400) text = Math.round(size / 86400) + " days";
    else return null;  // older: the date itself says more
    return future ? "in " + text : text + " ago";
  }

  function showLocalTimes(root) {
    var now = Date.now();
    root.querySelectorAll("time[data-local]").forEach(function (node) {
      var date = new Date(node.getAttribute("datetime"));
      if (isNaN(date.getTime())) return;
      if (!node.dataset.utc) node.dataset.utc = node.getAttribute("title") || node.textContent;
      var local = localText(date, node.hasAttribute("data-seconds"));
      var relative = node.getAttribute("data-local") === "relative" ? relativeText(date, now) : null;
      node.textContent = relative || local;
      node.setAttribute("title", (relative ? local + " · " : "") + node.dataset.utc);
      node.classList.add("localized");
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    showLocalTimes(document);
    window.setInterval(function () { showLocalTimes(document); }, 30000);
  });
  document.addEventListener("htmx:load", function (event) { showLocalTimes(event.target); });
  // Out-of-band swaps (a job's details) do not fire htmx:load on the swapped element.
  document.addEventListener("htmx:oobAfterSwap", function (event) {
    var swapped = event.detail && event.detail.target;
    if (swapped instanceof Element) showLocalTimes(swapped);
  });

  // The job page's status block after the stream's done: #job-live asks for its content on
  // sse:done and sse:status (queued behind a fetch in flight), and the stream may close
  // before the last answer is in. Until the block shows an ended job, ask again: soon, then
  // every few seconds.
  var ENDED = /^(succeeded|failed|cancelled|interrupted)$/;
  var settleTimer = null;

  function jobEnded() {
    var block = document.getElementById("job-status");
    return !block || ENDED.test(block.getAttribute("data-status") || "");
  }

  function settleJobStatus(attempt) {
    settleTimer = null;
    var live = document.querySelector("#job-live[hx-get]");
    if (!live || !window.htmx || jobEnded()) return;
    window.htmx.trigger(live, "job:settle");
    var wait = attempt < 5 ? 400 * (attempt + 1) : 5000;
    settleTimer = window.setTimeout(function () { settleJobStatus(attempt + 1); }, wait);
  }

  function settleSoon() {
    if (settleTimer === null) {
      settleTimer = window.setTimeout(function () { settleJobStatus(0); }, 300);
    }
  }

  document.addEventListener("htmx:sseMessage", function (event) {
    var type = event.detail && event.detail.type;
    if (event.target instanceof Element && event.target.id === "job-live" && type === "done") {
      settleSoon();
    }
  });
  document.addEventListener("htmx:sseClose", function () {
    if (document.getElementById("job-live")) settleSoon();
  });
})();

// The job's log for people (admin/web/logtext.py): live lines get their time since the job
// started (data-t, from data-at) and join their step's group (folded once the step is done);
// the search box shows the lines that match.
(function () {
  var DONE_IN = / done in (\d+(?:\.\d+)?)s$/;
  var query = "";

  function elapsed(seconds) {
    seconds = Math.max(0, seconds);
    if (seconds < 60) return "+" + seconds.toFixed(3) + "s";
    var minutes = Math.floor(seconds / 60), secs = seconds - 60 * minutes;
    if (minutes < 60) return "+" + minutes + ":" + (secs < 10 ? "0" : "") + secs.toFixed(1);
    var hours = Math.floor(minutes / 60);
    minutes -= 60 * hours;
    return "+" + hours + ":" + (minutes < 10 ? "0" : "") + minutes + ":" + (secs < 10 ? "0" : "") + Math.floor(secs);
  }

  function stamp(log, line) {
    var started = parseFloat(log.getAttribute("data-started"));
    var at = parseFloat(line.getAttribute("data-at"));
    if (!line.hasAttribute("data-t") && !isNaN(started) && !isNaN(at)) {
      line.setAttribute("data-t", elapsed(at - started));
    }
  }

  function openGroup(node) {
    return node && node.tagName === "DETAILS" && node.classList.contains("log-step") &&
      !node.hasAttribute("data-done") ? node : null;
  }

  function finish(group, line) {
    group.setAttribute("data-done", "1");
    var found = DONE_IN.exec(line.textContent || "");
    if (found) {
      var took = document.createElement("span");
      took.className = "step-duration";
      took.textContent = parseFloat(found[1]).toFixed(3) + " s";
      group.querySelector("summary").appendChild(took);
    }
    group.open = false;
  }

  function groupLines(log) {
    var loose = Array.prototype.filter.call(log.children, function (node) {
      return node.classList.contains("log-line") && !node.hasAttribute("data-placed");
    });
    loose.forEach(function (line) {
      line.setAttribute("data-placed", "1");
      stamp(log, line);
      matches(line);
      var group = openGroup(line.previousElementSibling);
      if (line.classList.contains("step-start")) {
        var details = document.createElement("details");
        details.className = "log-step";
        details.open = true;
        var summary = document.createElement("summary");
        details.appendChild(summary);
        log.insertBefore(details, line);
        summary.appendChild(line);
      } else if (group) {
        group.appendChild(line);
        if (line.classList.contains("step-end")) finish(group, line);
      }
    });
  }

  function matches(line) {
    if (!query) {
      line.classList.remove("search-miss", "search-hit");
      return false;
    }
    var hit = (line.textContent || "").toLowerCase().indexOf(query) >= 0;
    line.classList.toggle("search-miss", !hit);
    line.classList.toggle("search-hit", hit);
    if (hit) {
      var group = line.closest("details.log-step");
      if (group) group.open = true;
    }
    return hit;
  }

  function highlight(log, count) {
    var hits = 0;
    Array.prototype.forEach.call(log.getElementsByClassName("log-line"), function (line) {
      if (matches(line)) hits += 1;
    });
    if (count) count.textContent = query ? hits + (hits === 1 ? " line" : " lines") : "";
  }

  // A long log's folded ranges are not on the page: the server says which stored lines
  // match, and the ranges that hold some are opened (htmx loads them; highlight follows).
  var asked = 0;
  function openMatchingRanges(log) {
    var url = log.getAttribute("data-search");
    var folded = log.querySelectorAll("details.log-range:not([open])");
    if (!query || !url || !folded.length) return;
    var mine = ++asked;
    fetch(url + "?q=" + encodeURIComponent(query), {
      credentials: "same-origin",
      headers: { Accept: "application/json" },
    })
      .then(function (answer) { return answer.ok ? answer.json() : null; })
      .then(function (found) {
        if (!found || mine !== asked) return;
        Array.prototype.forEach.call(folded, function (range) {
          var after = parseInt(range.getAttribute("data-after"), 10);
          var until = parseInt(range.getAttribute("data-until"), 10);
          var hit = found.seqs.some(function (seq) { return seq > after && seq <= until; });
          if (hit) range.open = true;
        });
      })
      .catch(function () {});
  }

  function search(log, count) {
    highlight(log, count);
    openMatchingRanges(log);
  }

  document.addEventListener("DOMContentLoaded", function () {
    var log = document.getElementById("job-log");
    if (!log) return;
    var box = document.getElementById("log-search");
    var count = document.getElementById("log-search-count");
    if (box) {
      box.hidden = false;
      var timer = null;
      box.addEventListener("input", function () {
        window.clearTimeout(timer);
        timer = window.setTimeout(function () {
          query = box.value.trim().toLowerCase();
          search(log, count);
        }, 120);
      });
    }
    Array.prototype.forEach.call(log.getElementsByClassName("log-line"), function (line) {
      stamp(log, line);
    });
  });
  document.addEventListener("htmx:sseMessage", function (event) {
    var log = event.target;
    if (log instanceof Element && log.id === "job-log") groupLines(log);
  });
  document.addEventListener("htmx:afterSwap", function (event) {
    var body = event.target;
    var log = body instanceof Element ? body.closest("#job-log") : null;
    if (!log || !body.closest("details.log-range")) return;
    if (query) highlight(log, document.getElementById("log-search-count"));
  });
})();
