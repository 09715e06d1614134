"""Live job logs over Server-Sent Events (eventstream.py), for the pages and the API.

- Lines travel as ``line`` events whose id is a sequence number: on the pages, the lines
  that are ready at once share one event (its id is the last one's: many viewers of a
  busy job then cost one write per batch, not per line); in the API, one line per event.
  A stream starts after ``max(after=, Last-Event-ID)``: the browser's own reconnect sends
  the header, and the page's ``after=`` follows the last line it shows (static/app.js), so
  a reconnect that sends no header (the htmx extension re-creating its EventSource)
  resumes as well.
- Lines come from ``LogHub.follow_batches`` (from the store: any replica serves any job).
- A line's text is HTML-escaped, and its line breaks become ``&#10;``: one fragment is one
  ``data:`` line, and nothing in a log line can end an event or start another.
- Streams need a session or an API token (401, never a redirect). A user may hold
  ``SSE_MAX_STREAMS`` of them open at once across all their sessions and tokens, the server
  ``SSE_MAX_STREAMS_TOTAL`` (429 with Retry-After for the next).
- Memory stays bounded (hub.py): lines go out in chunks, each made once the last was taken;
  a client that stops reading is dropped after ``SSE_SEND_TIMEOUT`` (streams.py).
- At shutdown every stream ends with a ``restarting`` event (``begin_shutdown``): the
  browser reconnects, to another replica, instead of holding the shutdown up.
"""

from __future__ import annotations

import contextlib
import functools
import random
import re
import time
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from typing import Annotated

from fastapi import Depends, FastAPI
from markupsafe import Markup, escape
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from admin.errors import NotAuthenticated, PermissionDenied, TooManyRequests
from admin.jobs import Finished, LogHub, Published, queue
from admin.jobs.hub import Closing, LiveChanged
from admin.web import eventstream, logtext, streams
from admin.web import principal as principals
from admin.web.errors import answer_401_plainly

# How long a browser waits before its own reconnect (milliseconds).
RETRY_MS = 1500
# What a 429 for too many streams asks the client to wait (seconds).
STREAMS_RETRY_AFTER = 5
RESTARTING = "The panel is restarting: the live log reconnects in a moment."
# Seconds between two "fetch your status block again" events to one job page.
STATUS_INTERVAL = 1.0
_CLASS_NAME = re.compile(r"^[a-z]{1,16}$")
_LINE_BREAK = re.compile(r"\r\n|\r|\n")


def line_html(
    seq: int,
    level: str,
    stream: str,
    text: str,
    at: float | None = None,
    started: float | None = None,
) -> Markup:
    """One log line as an HTML fragment on a single line (the page and the stream share it).

    With ``at`` (when it was stored) the line carries its UTC time (``data-at``, and on
    hover); with ``started`` (the job's start) also the time since then (``data-t``, shown
    before the line by the style sheet, so the line's text stays the log's text)."""
    level_class = level if _CLASS_NAME.match(level) else "info"
    stream_class = stream if _CLASS_NAME.match(stream) else "stdout"
    body = _LINE_BREAK.sub("&#10;", str(escape(text.replace("\x00", "\ufffd"))))
    classes = f"log-line level-{level_class} stream-{stream_class}"
    if level == "step":
        classes += " step-start" if logtext.is_step_start(text) else " step-end"
    timing = ""
    if at is not None:
        timing = f' data-at="{at:.3f}" title="{logtext.utc_text(at)}"'
        if started is not None:
            timing += f' data-t="{logtext.elapsed_text(at - started)}"'
    return Markup(f'<div class="{classes}" id="line-{seq}" data-seq="{seq}"{timing}>{body}</div>')


@functools.lru_cache(maxsize=1024)
def _fragment(line: Published) -> str:
    """A published line's fragment, rendered once for all the viewers that are sent it."""
    return str(line_html(line.seq, line.level, line.stream, line.text, line.at))


def resume_after(after: int, last_event_id: str | None) -> int:
    """Where a stream starts: after the later of ``after=`` and ``Last-Event-ID``."""
    value = (last_event_id or "").strip()
    last = int(value) if value.isdigit() and len(value) < 12 else 0
    return max(after, last)


# Open streams per user and per server.


class StreamSlots:
    """Counts open streams per user and in all (used from the event loop only: no lock)."""

    def __init__(self) -> None:
        self._open: Counter[str] = Counter()
        self.total = 0

    def acquire(self, key: str, limit: int, total_limit: int | None = None) -> str | None:
        """None when a slot was taken; else why not: ``caller`` or ``server``."""
        if self._open[key] >= limit:
            return "caller"
        if total_limit is not None and self.total >= total_limit:
            return "server"
        self._open[key] += 1
        self.total += 1
        return None

    def release(self, key: str) -> None:
        self._open[key] -= 1
        self.total -= 1
        if self._open[key] <= 0:
            del self._open[key]

    def held(self, key: str) -> int:
        return self._open[key]


def slots_of(app: FastAPI) -> StreamSlots:
    slots: StreamSlots | None = getattr(app.state, "sse_slots", None)
    if slots is None:
        slots = StreamSlots()
        app.state.sse_slots = slots
    return slots


def hub_of(request: Request) -> LogHub:
    hub: LogHub = request.app.state.hub
    return hub


async def stream_caller(request: Request) -> AsyncIterator[principals.Principal]:
    """A signed-in caller holding one of their stream slots until the stream ends."""
    answer_401_plainly(request)
    principal = await run_in_threadpool(principals.resolve, request)
    if principal is None:
        raise NotAuthenticated("Sign in to follow a job's live log.")
    if principal.user.must_change_password:
        raise PermissionDenied(f"{principal.user.username!r} must choose a new password first.")
    # Per user, whatever the number of their sessions and tokens.
    key = f"user:{principal.user.id}"
    settings = principals.runtime_of(request).settings
    limit = settings.sse_max_streams
    slots = slots_of(request.app)
    refused = slots.acquire(key, limit, settings.sse_max_streams_total)
    if refused == "caller":
        raise TooManyRequests(
            f"{principal.user.username!r} already follows {limit} live logs (in all their "
            "sessions and tokens), the most a user may. Close the job pages you no longer "
            "watch (or their tabs) and reload this one.",
            title="Too many live logs",
            retry_after=STREAMS_RETRY_AFTER,
        )
    if refused == "server":
        raise TooManyRequests(
            "The panel follows as many live logs as it may right now. Try again in a moment, "
            "or read the log on the job's page without following it.",
            title="Too many live logs",
            retry_after=STREAMS_RETRY_AFTER,
        )
    try:
        yield principal
    finally:
        slots.release(key)


StreamCaller = Annotated[principals.Principal, Depends(stream_caller)]


def _existing_job(request: Request, job_id: int) -> int:
    with principals.runtime_of(request).reads() as session:
        return queue.get(session, job_id).id


async def stream_job(request: Request, job_id: int, caller: StreamCaller) -> int:
    """The job's id once the caller may follow it and it exists (404 before streaming)."""
    return await run_in_threadpool(_existing_job, request, job_id)


StreamJob = Annotated[int, Depends(stream_job)]


# The events.


class EventFormat:
    """How one viewer's stream writes the lines, keep-alive ticks and the end (as bytes:
    eventstream.py)."""

    def lines(self, lines: Sequence[Published]) -> bytes:
        raise NotImplementedError

    def tick(self) -> bytes:
        """What to send beside a keep-alive comment (nothing by default)."""
        return b""

    def live(self) -> bytes:
        """What to send when the job's live view of the database changed (nothing by
        default)."""
        return b""

    def done(self, status: str) -> bytes:
        return eventstream.event(data=status, name="done")

    def restarting(self, reason: str) -> bytes:
        """The last event before the server shuts down: the client reconnects elsewhere."""
        return eventstream.event(data=reason, name="restarting", retry=RETRY_MS)


# The ``line`` events of the last batches, with whether they hold a step line: the viewers
# that follow a job are sent the same batches (hub.py), each encoded once for all of them.
_PAGE_BATCHES = eventstream.SharedEvents()


def _page_batch(lines: Sequence[Published]) -> tuple[bytes, bool]:
    data = "".join(_fragment(line) for line in lines)
    encoded = eventstream.event(data=data, id=str(lines[-1].seq), name="line")
    return encoded, any(line.level == "step" for line in lines)


class PageEvents(EventFormat):
    """The job page's stream, for one viewer.

    The lines ready at once travel as one ``line`` event (one write for many lines): its data
    is their fragments, its id the last one's sequence number. A ``status`` event (no id, so
    the last event id stays the line's) asks the page to fetch its status block again: after
    the first lines (the page may still say "queued"), then when a step has finished, at most
    once every ``status_interval`` seconds per viewer (a refresh the interval held back goes
    with the next lines or keep-alive tick), in the same write as the lines. Each wait is
    longer by a random part of up to ``spread`` of the interval: viewers that opened the page
    together would otherwise all fetch their status block in the same moment.
    """

    def __init__(
        self, job_id: int, status_interval: float = STATUS_INTERVAL, spread: float = 0.25
    ) -> None:
        self.job_id = job_id
        self.status_interval = status_interval
        self.spread = spread
        self._pending = True
        self._sent_at: float | None = None
        self._wait = status_interval

    def lines(self, lines: Sequence[Published]) -> bytes:
        key = (self.job_id, lines[0].seq, lines[-1].seq)
        encoded, steps = _PAGE_BATCHES.get(key, lambda: _page_batch(lines))
        if steps:
            self._pending = True
        return encoded + self._status(str(lines[-1].seq))

    def tick(self) -> bytes:
        return self._status("tick")

    def live(self) -> bytes:
        self._pending = True
        return self._status("live")

    def _status(self, data: str) -> bytes:
        now = time.monotonic()
        if self._pending and (self._sent_at is None or now - self._sent_at >= self._wait):
            self._pending = False
            self._sent_at = now
            self._wait = self.status_interval * (1 + random.uniform(0, self.spread))
            return eventstream.event(data=data, name="status")
        return b""


async def events(
    hub: LogHub, job_id: int, after: int, keepalive: float, fmt: EventFormat
) -> AsyncIterator[bytes]:
    """The job's lines after ``after`` as events, keep-alive comments, then ``done``: what
    each hub item makes, in one write."""
    yield eventstream.event(comment=f"job {job_id}, lines after {after}", retry=RETRY_MS)
    batches = hub.follow_batches(job_id, after, keepalive=keepalive)
    async with contextlib.aclosing(batches):
        async for item in batches:
            if item is None:
                yield eventstream.KEEPALIVE + fmt.tick()
            elif isinstance(item, Finished):
                yield fmt.done(item.status)
                return
            elif isinstance(item, Closing):
                yield fmt.restarting(item.reason)
                return
            elif isinstance(item, LiveChanged):
                live = fmt.live()
                if live:
                    yield live
            else:
                yield fmt.lines(item)


def stream(request: Request, job_id: int, after: int, fmt: EventFormat) -> Response:
    """The response that follows the job's log for one viewer (the pages' and the API's)."""
    keepalive = principals.runtime_of(request).settings.sse_keepalive
    return eventstream.EventStreamResponse(events(hub_of(request), job_id, after, keepalive, fmt))


def begin_shutdown(app: FastAPI) -> None:
    """End every live-log stream with a ``restarting`` event (the server is stopping).

    Called by ``schema-admin serve`` when it is told to stop, before uvicorn waits for
    open responses: streams never end by themselves, and the shutdown that cancels the
    running jobs would otherwise wait for every viewer to leave.
    """
    app.state.draining = True
    hub: LogHub | None = getattr(app.state, "hub", None)
    if hub is not None:
        hub.close_all(RESTARTING)
    # A client that does not read would hold its stream (and the shutdown) up: 1 s more.
    streams.hurry(app.state)
