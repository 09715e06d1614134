"""A worker whose supervisor is gone: it takes its job over and records its own end.

The supervisor is the panel or CLI process that started the worker; the worker runs in a
session of its own, so it outlives a supervisor that is killed. It notices within a
second (its control pipe breaks, or its parent changes), and then, from its beat thread:

- takes the job over in the store (a compare-and-set on the job's owner: if another
  process owns it already, the worker only stops);
- writes from then on its own lines to the job's log (numbered after the stored ones),
  beginning with what happened and which steps it had finished, and keeps the job's
  heartbeat fresh;
- makes the run stop before its next step (``should_stop``): a step that has begun ends
  or is rolled back, as usual, so the database is at a revision boundary;
- at the end records the outcome, with where the target is read from the target itself.

It needs the panel's settings and store only then, so a worker that never loses its
supervisor never loads them.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import TYPE_CHECKING, Any

from admin.jobs.protocol import Emitter, Message, Order, decode, log_line

if TYPE_CHECKING:
    from admin.jobs.ownership import Owner
    from admin.jobs.record import JobRecord
    from admin.runtime import Runtime

log = logging.getLogger(__name__)
# Seconds between the worker's beats (the supervisor renews the job's lease on them).
BEAT_EVERY = 1.0


class Watchman:
    """The worker's beat thread: proves the worker alive, notices a lost supervisor."""

    def __init__(self, order: Order, out: Emitter) -> None:
        self.order = order
        self.out = out
        self.reason: str | None = None
        self.owner: Owner | None = None
        self.record: JobRecord | None = None
        self.finished_steps: list[str] = []
        self.heads_after: dict[int, str] = {}
        self._runtime: Runtime | None = None
        self._parent = os.getppid()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="watchman", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def should_stop(self) -> str | None:
        """The engine asks before each step: a reason to stop there, or None."""
        return self.reason

    def step_finished(self, step: int, revision: str | None, heads: str | None) -> None:
        if revision:
            self.finished_steps.append(revision)
        if heads is not None:
            self.heads_after[step] = heads

    def _watch(self) -> None:
        self.out.send(Message("beat", level="debug"), now=True)
        while not self._stop.wait(BEAT_EVERY):
            if self.reason is None:
                self.out.send(Message("beat", level="debug"), now=True)
                gone = self.out.broken.is_set() or os.getppid() != self._parent
                if gone:
                    self._take_over()
            elif self.record is not None:
                self._renew()

    def _take_over(self) -> None:
        """The supervisor is gone: own the job, keep its log, stop before the next step."""
        self.reason = "the panel supervising this job is gone (killed or crashed)"
        from admin.config import load_settings
        from admin.jobs import queue
        from admin.jobs.ownership import Owner, take_over
        from admin.jobs.record import JobRecord
        from admin.runtime import Runtime

        try:
            rt = self._runtime = Runtime.open(load_settings())
            me = Owner.new("worker")
            with rt.transaction() as session:
                owned = take_over(session.connection(), self.order.job_id, self.order.owner, me)
                seq = queue.last_seq(session, self.order.job_id)
        except Exception as exc:  # no store: the run still stops at the next boundary
            log.error("job %s: the worker could not take the job over: %s", self.order.job_id, exc)
            return
        if not owned:
            return  # another process owns it now (recovery ended it): only stop
        self.owner = me
        record = JobRecord(rt, self.order.job_id, me)
        record.seq = seq
        done = ", ".join(self.finished_steps) or "none"
        record.add(
            [
                queue.NewLine(
                    f"{self.reason}: the worker took the job over and stops before its next "
                    f"step; steps it had finished: {done}. Lines the panel had not stored "
                    "yet may be missing above; from here on the worker writes its own.",
                    "warning",
                    "runner",
                )
            ]
        )
        self.record = record
        self.out.redirect(self._store)

    def _store(self, text: str) -> None:
        """The emitter's lines, as the supervisor would have stored them."""
        from admin.jobs import queue

        assert self.record is not None
        lines = []
        for raw in text.splitlines():
            message = decode(raw)
            if message.kind == "result":
                self.result = {"status": message.text, **message.data}
            line = log_line(message)
            if line is not None:
                lines.append(queue.NewLine(*line))
        self.record.add(lines)

    result: dict[str, Any] | None = None

    def _renew(self) -> None:
        assert self.record is not None
        if self.record.heartbeat():
            self.reason = "cancelled on request (while the worker ran on its own)"

    def finish(self, code: int) -> None:
        """Record the job's end, if this worker owns the job now."""
        self._stop.set()
        if self.record is None or self._runtime is None:
            return
        from admin.jobs import outcome, queue
        from admin.store.models import JobStatus

        rt, record = self._runtime, self.record
        with rt.reads() as session:
            job = queue.get(session, self.order.job_id)
        status, error = outcome.status_of(self.result, code, None)
        where = outcome.where_now(rt.settings, job, self.result)
        steps = outcome.steps_applied(
            self.heads_after, where, job.revision_before, len(self.finished_steps)
        )
        record.add(
            [
                queue.NewLine(
                    f"job {status.value}; the database is at {where.said}"
                    + (f": {error}" if error else ""),
                    "info" if status is JobStatus.SUCCEEDED else "error",
                    "runner",
                )
            ]
        )
        deadline = time.monotonic() + 10
        while not record.flush() and record.lost is None and time.monotonic() < deadline:
            time.sleep(0.5)
        try:
            queue.finish(
                rt,
                self.order.job_id,
                status,
                revision_after=where.revision,
                error=error,
                exit_code=code,
                owner=record.owner,
                steps_done=steps,
            )
        except Exception as exc:  # recovery will end it from the same truth
            log.error("job %s: the worker could not record its end: %s", self.order.job_id, exc)
        finally:
            record.close()
            rt.close()
