"""Live logs for many viewers: one channel per followed job, fed from the store.

Every stored line is in the store first, so any replica can serve any job's log. On the
replica that supervises the job, lines are also handed over in memory the moment they are
stored (low latency); a poller per channel reads the store for the rest (other replicas,
catching up, the final status). Viewers that are far behind read straight from the store.

Memory is bounded whatever viewers do: a channel keeps at most ``BUFFER`` lines and
``BUFFER_BYTES`` of text (shared by its viewers); a viewer is handed at most ``CHUNK_BYTES``
of lines at a time and asks for the next chunk only once the last one was taken (so a
viewer that does not read holds one chunk, not its whole backlog), and reads a few
chunks' worth of lines from the store at a time. ``close_all`` ends every stream with
``Closing`` (the server is shutting down: viewers reconnect to another replica).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from dataclasses import dataclass, field
from itertools import islice

from sqlalchemy import select

from admin.jobs import queue, wakeup
from admin.jobs.record import Published
from admin.memory import release_free_memory
from admin.runtime import Runtime
from admin.store.models import Job, JobStatus

BUFFER = 4000
BUFFER_BYTES = 4 * 1024 * 1024
FETCH = 1000
CHUNK_BYTES = 16 * 1024
# What a viewer reads from the store at once: a few chunks' worth of lines (_next_fetch).
FETCH_BYTES = 4 * CHUNK_BYTES
VIEWER_FETCH_MIN = 8
VIEWER_FETCH_MAX = 64


def line_bytes(line: Published) -> int:
    """What a line costs in a buffer or an event, about (its text dominates)."""
    return len(line.text) + 64


def _next_fetch(lines: Sequence[Published], current: int) -> int:
    """How many lines to read next so that they make about ``FETCH_BYTES``: fewer at once
    when the last read was over, at most twice as many when it was under (a log's first
    lines are short; what follows may not be)."""
    if not lines:
        return current
    fetched = sum(line_bytes(line) for line in lines)
    wanted = int(len(lines) * FETCH_BYTES / fetched)
    return max(VIEWER_FETCH_MIN, min(VIEWER_FETCH_MAX, 2 * current, wanted))


def first_chunk(lines: Sequence[Published], limit: int = CHUNK_BYTES) -> Sequence[Published]:
    """The longest head of ``lines`` within ``limit`` bytes (at least one line)."""
    total = 0
    for index, line in enumerate(lines):
        total += line_bytes(line)
        if total > limit and index > 0:
            return lines[:index]
    return lines


@dataclass(frozen=True)
class Finished:
    """The job ended with this status and every line has been delivered."""

    status: str


@dataclass(frozen=True)
class Closing:
    """The server is shutting down: the stream ends here (the viewer reconnects elsewhere)."""

    reason: str


@dataclass(frozen=True)
class LiveChanged:
    """The job's live view of the database changed (``jobs.live_version`` moved)."""

    version: int


@dataclass
class _Channel:
    known: int
    status: str | None
    live_version: int = 0
    # Its lines are published by a supervisor in this process (no notification needed).
    local: bool = False
    subscribers: int = 0
    buffer: deque[Published] = field(default_factory=lambda: deque(maxlen=BUFFER))
    buffered_bytes: int = 0
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    poll_now: asyncio.Event = field(default_factory=asyncio.Event)
    poller: asyncio.Task[None] | None = None

    def wake(self) -> None:
        self.changed.set()
        self.changed = asyncio.Event()

    def append(self, line: Published) -> None:
        if len(self.buffer) == self.buffer.maxlen:
            self.buffered_bytes -= line_bytes(self.buffer[0])
        self.buffer.append(line)
        self.buffered_bytes += line_bytes(line)
        while self.buffered_bytes > BUFFER_BYTES and len(self.buffer) > 1:
            self.buffered_bytes -= line_bytes(self.buffer.popleft())

    def since(self, last: int) -> list[Published] | None:
        """Up to a chunk of lines after ``last`` from memory; None when no longer buffered."""
        if last >= self.known:
            return []
        if self.buffer and self.buffer[0].seq <= last + 1:
            lines = islice(self.buffer, last + 1 - self.buffer[0].seq, None)
            chunk: list[Published] = []
            total = 0
            for line in lines:
                total += line_bytes(line)
                if total > CHUNK_BYTES and chunk:
                    break
                chunk.append(line)
            return chunk
        return None


class LogHub:
    """Fan-out of job log lines to live viewers (Server-Sent Events)."""

    def __init__(self, runtime: Runtime, *, poll_interval: float = 0.5) -> None:
        self.rt = runtime
        self.poll_interval = poll_interval
        self._loop: asyncio.AbstractEventLoop | None = None
        self._channels: dict[int, _Channel] = {}
        self._closing: Closing | None = None
        self._listener: wakeup.Listener | None = None
        self._streams = 0

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        if self.rt.store_engine.dialect.name == "postgresql" and self._listener is None:
            # Lines stored by other processes (CLI, entrypoint, replicas) wake the poller.
            url = self.rt.store_engine.url.render_as_string(hide_password=False)
            self._listener = wakeup.Listener(url, self._stored_elsewhere)
            self._listener.start()

    def _stored_elsewhere(self, job_id: int, last_seq: int) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self._poke, job_id, last_seq)

    def _poke(self, job_id: int, last_seq: int) -> None:
        channel = self._channels.get(job_id)
        if channel is not None and not channel.local and last_seq > channel.known:
            channel.poll_now.set()

    @property
    def open_streams(self) -> int:
        return self._streams

    @property
    def closing(self) -> bool:
        return self._closing is not None

    def close_all(self, reason: str) -> None:
        """End every stream now and refuse new ones (from the event loop: shutdown)."""
        self._closing = Closing(reason)
        if self._listener is not None:
            self._listener.stop()
            self._listener = None
        for channel in list(self._channels.values()):
            channel.wake()

    # From supervisor threads.

    def publish(self, job_id: int, lines: Sequence[Published], status: str | None) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile (shutdown)
            loop.call_soon_threadsafe(self._published, job_id, list(lines), status)

    def _published(self, job_id: int, lines: list[Published], status: str | None) -> None:
        channel = self._channels.get(job_id)
        if channel is not None:
            channel.local = True
        self._ingest(job_id, lines, status)

    def _ingest(self, job_id: int, lines: list[Published], status: str | None) -> None:
        channel = self._channels.get(job_id)
        if channel is None or (not lines and status is None):
            return  # nothing new (the poller found nothing): viewers stay asleep
        for line in lines:
            if line.seq == channel.known + 1:
                channel.append(line)
                channel.known = line.seq
            elif line.seq > channel.known + 1:
                channel.poll_now.set()  # a gap: read the store now
                break
        if status is not None:
            channel.poll_now.set()  # the final status is confirmed from the store
        channel.wake()

    # Store access (in a thread).

    def _head(self, job_id: int) -> tuple[int, str | None, int]:
        with self.rt.reads() as session:
            job = queue.get(session, job_id)
            status = job.status if not JobStatus(job.status).active else None
            return queue.last_seq(session, job_id), status, job.live_version or 0

    def _fetch(
        self, job_id: int, after: int, limit: int = FETCH
    ) -> tuple[list[Published], str | None]:
        published, final, _ = self._fetch_live(job_id, after, limit)
        return published, final

    def _fetch_live(
        self, job_id: int, after: int, limit: int = FETCH
    ) -> tuple[list[Published], str | None, int]:
        """Lines after ``after``, the final status, and the live view's version."""
        with self.rt.reads() as session:
            # Status first: once it is final, every line was committed before it.
            head = session.execute(
                select(Job.status, Job.live_version).where(Job.id == job_id)
            ).first()
            status, live_version = (head[0], head[1] or 0) if head else (None, 0)
            rows = queue.lines(session, job_id, after, limit)
        published = [
            Published(r.seq, r.level, r.stream, r.text, r.created_at.timestamp()) for r in rows
        ]
        final = status if status and not JobStatus(status).active and len(rows) < limit else None
        return published, final, live_version

    # Channels.

    async def _join(self, job_id: int) -> _Channel:
        channel = self._channels.get(job_id)
        if channel is None:
            known, status, live_version = await asyncio.to_thread(self._head, job_id)
            channel = self._channels.get(job_id)
            if channel is None:
                channel = _Channel(known=known, status=status, live_version=live_version)
                self._channels[job_id] = channel
                if status is None:
                    channel.poller = asyncio.create_task(self._poll(job_id, channel))
        channel.subscribers += 1
        return channel

    def _leave(self, job_id: int, channel: _Channel) -> None:
        channel.subscribers -= 1
        if channel.subscribers <= 0 and self._channels.get(job_id) is channel:
            del self._channels[job_id]
            if channel.poller is not None:
                channel.poller.cancel()

    async def _poll(self, job_id: int, channel: _Channel) -> None:
        while channel.status is None:
            lines, final, live_version = await asyncio.to_thread(
                self._fetch_live, job_id, channel.known
            )
            self._ingest(job_id, lines, None)
            if live_version != channel.live_version:
                channel.live_version = live_version
                channel.wake()
            if final is not None and not lines:
                channel.status = final
                channel.wake()
                return
            if lines and len(lines) >= FETCH:
                continue
            # A deadline, not wait_for: on Python 3.11 wait_for can swallow the cancel of
            # the task (the last viewer gone), and the poller would then poll forever.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.poll_interval):
                    await channel.poll_now.wait()
            channel.poll_now.clear()

    async def follow(
        self, job_id: int, after: int = 0, *, keepalive: float = 15.0
    ) -> AsyncIterator[Published | Finished | Closing | LiveChanged | None]:
        """Lines after ``after`` in order, then Finished (or Closing); None is a keep-alive
        tick."""
        batches = self.follow_batches(job_id, after, keepalive=keepalive)
        async with contextlib.aclosing(batches):
            async for item in batches:
                if isinstance(item, list):
                    for line in item:
                        yield line
                else:
                    yield item

    async def follow_batches(
        self, job_id: int, after: int = 0, *, keepalive: float = 15.0
    ) -> AsyncGenerator[list[Published] | Finished | Closing | LiveChanged | None, None]:
        """Like ``follow``, with the lines that are ready at once in one list of at most
        ``CHUNK_BYTES`` (a viewer then sends them in one write: what many viewers of a busy
        job need). The next list is made only once the last one was taken."""
        if self._closing is not None:
            yield self._closing
            return
        channel = await self._join(job_id)
        self._streams += 1
        loop = asyncio.get_running_loop()
        try:
            last = after
            # Lines read from the store for this viewer, not sent yet (about one chunk).
            fetched: list[Published] = []
            fetch = VIEWER_FETCH_MIN
            # Measured from the last thing sent: a wake that brings this viewer nothing
            # (lines it already has, a gap being read) must not postpone the tick.
            quiet_until = loop.time() + keepalive
            seen_live = channel.live_version
            while True:
                if self._closing is not None:
                    yield self._closing
                    return
                if channel.live_version != seen_live:
                    seen_live = channel.live_version
                    yield LiveChanged(seen_live)
                changed = channel.changed
                batch = channel.since(last) if not fetched else None
                if batch is None:
                    if not fetched:
                        fetched, _ = await asyncio.to_thread(self._fetch, job_id, last, fetch)
                        fetch = _next_fetch(fetched, fetch)
                    batch = list(first_chunk(fetched))
                    del fetched[: len(batch)]
                if batch:
                    yield batch
                    last = batch[-1].seq
                    quiet_until = loop.time() + keepalive
                    continue
                if channel.status is not None and last >= channel.known:
                    yield Finished(channel.status)
                    return
                # A deadline, not wait_for: on Python 3.11 that wraps each wait in a task
                # of its own (with 100 viewers, 100 more tasks per batch).
                try:
                    async with asyncio.timeout_at(quiet_until):
                        await changed.wait()
                except TimeoutError:
                    yield None
                    quiet_until = loop.time() + keepalive
        finally:
            self._streams -= 1
            self._leave(job_id, channel)
            if self._streams == 0:
                release_free_memory()
