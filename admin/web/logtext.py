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

from admin.store.models import JobLine

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
