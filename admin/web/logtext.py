"""A job's log for people: times, steps as groups, the plain-text export.

The page shows each line's time since the job started (its UTC time on hover), and groups
a migration's lines per step (``<details>``, folded once the step is done, its duration
beside it); the plain-text export has both times on every line. Live lines get the same
grouping from static/app.js as they arrive.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import UTC, datetime

from markupsafe import Markup, escape
from sqlalchemy.orm import Session

from admin.jobs import queue
from admin.store.models import Job, JobLine

# A log longer than FULL lines shows its first lines (up to its first step) and its last
# TAIL lines on the page; the lines between are folded in ranges of RANGE lines, each loaded
# when opened (GET /jobs/{id}/lines): a 5,000-step job's page stays small and quick.
FULL = 2000
HEAD = 50
TAIL = 500
RANGE = 2000

_STEP_START = re.compile(r"^\[\d+/\d+\] Running ")
_DONE_IN = re.compile(r" done in (\d+(?:\.\d+)?)s$")


def is_step_start(text: str) -> bool:
    return bool(_STEP_START.match(text))


def utc_text(at: float) -> str:
    moment = datetime.fromtimestamp(at, UTC)
    return moment.strftime("%Y-%m-%d %H:%M:%S.") + f"{moment.microsecond // 1000:03d} UTC"


def elapsed_text(seconds: float) -> str:
    """``+1.234s``, ``+2:03.4``, ``+1:02:03``: the time since the job started."""
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"+{seconds:.3f}s"
    minutes, secs = divmod(seconds, 60)
    if minutes < 60:
        return f"+{int(minutes)}:{secs:04.1f}"
    hours, minutes = divmod(int(minutes), 60)
    return f"+{hours}:{minutes:02d}:{int(secs):02d}"


def step_duration(text: str) -> str | None:
    found = _DONE_IN.search(text)
    return f"{float(found.group(1)):.3f} s" if found else None


def grouped(
    lines: Sequence[JobLine], started: datetime | None, render: Callable[..., Markup]
) -> Markup:
    """The page's log: lines, with each step's lines inside one ``<details>``."""
    start = started.timestamp() if started else None
    parts: list[str] = []
    group: list[str] = []
    summary = ""
    for line in lines:
        html = render(
            line.seq, line.level, line.stream, line.text, line.created_at.timestamp(), start
        )
        if line.level == "step" and is_step_start(line.text):
            if summary:
                parts.append(_group(summary, group, None))
            summary, group = str(html), []
        elif summary:
            group.append(str(html))
            if line.level == "step":
                parts.append(_group(summary, group, step_duration(line.text) or ""))
                summary, group = "", []
        else:
            parts.append(str(html))
    if summary:
        parts.append(_group(summary, group, None))
    return Markup("".join(parts))


def _starts_step(line: JobLine) -> bool:
    return line.level == "step" and is_step_start(line.text)


def page_log(session: Session, job: Job, render: Callable[..., Markup]) -> tuple[Markup, int]:
    """The log as the job page shows it, and the last line's number."""
    last = queue.last_seq(session, job.id)
    started = job.started_at or job.created_at
    if last <= FULL:
        lines = queue.lines(session, job.id, 0, FULL)
        return grouped(lines, started, render), (lines[-1].seq if lines else 0)
    head = queue.lines(session, job.id, 0, HEAD)
    head = head[: next((i for i, line in enumerate(head) if _starts_step(line)), len(head))]
    tail = queue.lines(session, job.id, last - TAIL, TAIL)
    tail = tail[next((i for i, line in enumerate(tail) if _starts_step(line)), 0) :]
    after = head[-1].seq if head else 0
    until = tail[0].seq - 1 if tail else last
    parts = [grouped(head, started, render)]
    for low in range(after, until, RANGE):
        parts.append(folded_range(job.id, low, min(low + RANGE, until)))
    parts.append(grouped(tail, started, render))
    return Markup("").join(parts), (tail[-1].seq if tail else last)


def folded_range(job_id: int, after: int, until: int) -> Markup:
    """Lines ``after`` + 1 to ``until``, folded; htmx loads them when opened (without
    JavaScript the link gives them as JSON)."""
    url = f"/jobs/{job_id}/lines?after={after}&until={until}"
    json_url = f"/api/v1/jobs/{job_id}/log?after={after}&limit={until - after}"
    return Markup(
        f'<details class="log-range" data-after="{after}" data-until="{until}" '
        f'hx-get="{url}" hx-trigger="toggle once" '
        f'hx-target="find .log-range-body" hx-swap="innerHTML"><summary>lines {after + 1}–'
        f"{until} (open to load them)</summary>"
        f'<div class="log-range-body"><a href="{json_url}">lines {after + 1}–{until} as '
        "JSON</a></div></details>"
    )


def _group(summary: str, lines: list[str], duration: str | None) -> str:
    """A step: folded once done (``duration`` given), open while it runs."""
    state = ' data-done="1"' if duration is not None else " open"
    took = f'<span class="step-duration">{escape(duration)}</span>' if duration else ""
    return (
        f'<details class="log-step"{state}><summary>{summary}{took}</summary>'
        + "".join(lines)
        + "</details>"
    )


def plain_lines(lines: Iterable[JobLine], started: datetime | None) -> Iterator[str]:
    """The export: ``2026-12-07T14:00:01.234Z +1.234s info    text`` per line (the
    continuation lines of a text indented under its first)."""
    start = started.timestamp() if started else None
    for line in lines:
        at = line.created_at.timestamp()
        iso = datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
        since = elapsed_text(at - start) if start is not None else "-"
        head = f"{iso} {since:>10} {line.level:<7} "
        # A line of several (a statement, a traceback) keeps its lines under its text.
        yield head + line.text.replace("\n", "\n" + " " * len(head)) + "\n"
