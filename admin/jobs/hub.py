"""Live logs for many viewers: one channel per followed job, fed from the store.

Every stored line is in the store first, so any replica can serve any job's log. On the
replica that supervises the job, lines are also handed over in memory the moment they are
stored (low latency); a poller per channel reads the store for the rest (other replicas,
catching up, the final status). Viewers that are far behind read straight from the store.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from dataclasses import dataclass, field
from itertools import islice

from sqlalchemy import select

from admin.jobs import queue
from admin.jobs.record import Published
from admin.runtime import Runtime
from admin.store.models import Job, JobStatus

BUFFER = 4000
FETCH = 1000


@dataclass(frozen=True)
class Finished:
    """The job ended with this status and every line has been delivered."""

    status: str


@dataclass
class _Channel:
    known: int
    status: str | None
    subscribers: int = 0
    buffer: deque[Published] = field(default_factory=lambda: deque(maxlen=BUFFER))
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    poll_now: asyncio.Event = field(default_factory=asyncio.Event)
    poller: asyncio.Task[None] | None = None

    def wake(self) -> None:
        self.changed.set()
        self.changed = asyncio.Event()

    def since(self, last: int) -> list[Published] | None:
        """Lines after ``last`` from memory; None when they are no longer buffered."""
        if last >= self.known:
            return []
        if self.buffer and self.buffer[0].seq <= last + 1:
            return list(islice(self.buffer, last + 1 - self.buffer[0].seq, None))
        return None


class LogHub:
    """Fan-out of job log lines to live viewers (Server-Sent Events)."""

    def __init__(self, runtime: Runtime, *, poll_interval: float = 0.5) -> None:
        self.rt = runtime
        self.poll_interval = poll_interval
        self._loop: asyncio.AbstractEventLoop | None = None
        self._channels: dict[int, _Channel] = {}

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    @property
    def open_streams(self) -> int:
        return sum(channel.subscribers for channel in self._channels.values())

    # From supervisor threads.

    def publish(self, job_id: int, lines: Sequence[Published], status: str | None) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile (shutdown)
            loop.call_soon_threadsafe(self._ingest, job_id, list(lines), status)

    def _ingest(self, job_id: int, lines: list[Published], status: str | None) -> None:
        channel = self._channels.get(job_id)
        if channel is None or (not lines and status is None):
            return  # nothing new (the poller found nothing): viewers stay asleep
        for line in lines:
            if line.seq == channel.known + 1:
                channel.buffer.append(line)
                channel.known = line.seq
            elif line.seq > channel.known + 1:
                channel.poll_now.set()  # a gap: read the store now
                break
        if status is not None:
            channel.poll_now.set()  # the final status is confirmed from the store
        channel.wake()

    # Store access (in a thread).

    def _head(self, job_id: int) -> tuple[int, str | None]:
        with self.rt.reads() as session:
            job = queue.get(session, job_id)
            status = job.status if not JobStatus(job.status).active else None
            return queue.last_seq(session, job_id), status

    def _fetch(self, job_id: int, after: int) -> tuple[list[Published], str | None]:
        with self.rt.reads() as session:
            # Status first: once it is final, every line was committed before it.
            status = session.scalar(select(Job.status).where(Job.id == job_id))
            rows = queue.lines(session, job_id, after, FETCH)
        published = [Published(r.seq, r.level, r.stream, r.text) for r in rows]
        final = status if status and not JobStatus(status).active and len(rows) < FETCH else None
        return published, final

    # Channels.

    async def _join(self, job_id: int) -> _Channel:
        channel = self._channels.get(job_id)
        if channel is None:
            known, status = await asyncio.to_thread(self._head, job_id)
            channel = self._channels.get(job_id)
            if channel is None:
                channel = _Channel(known=known, status=status)
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
            lines, final = await asyncio.to_thread(self._fetch, job_id, channel.known)
            self._ingest(job_id, lines, None)
            if final is not None and not lines:
                channel.status = final
                channel.wake()
                return
            if lines and len(lines) >= FETCH:
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(channel.poll_now.wait(), self.poll_interval)
            channel.poll_now.clear()

    async def follow(
        self, job_id: int, after: int = 0, *, keepalive: float = 15.0
    ) -> AsyncIterator[Published | Finished | None]:
        """Lines after ``after`` in order, then Finished; None is a keep-alive tick."""
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
    ) -> AsyncGenerator[list[Published] | Finished | None, None]:
        """Like ``follow``, with the lines that are ready at once in one list (a viewer
        then sends them in one write: what many viewers of a busy job need)."""
        channel = await self._join(job_id)
        loop = asyncio.get_running_loop()
        try:
            last = after
            # Measured from the last thing sent: a wake that brings this viewer nothing
            # (lines it already has, a gap being read) must not postpone the tick.
            quiet_until = loop.time() + keepalive
            while True:
                changed = channel.changed
                batch = channel.since(last)
                if batch is None:
                    batch, _ = await asyncio.to_thread(self._fetch, job_id, last)
                if batch:
                    yield batch
                    last = batch[-1].seq
                    quiet_until = loop.time() + keepalive
                    continue
                if channel.status is not None and last >= channel.known:
                    yield Finished(channel.status)
                    return
                try:
                    await asyncio.wait_for(changed.wait(), max(0.0, quiet_until - loop.time()))
                except TimeoutError:
                    yield None
                    quiet_until = loop.time() + keepalive
        finally:
            self._leave(job_id, channel)
