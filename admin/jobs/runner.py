"""The web process's runner: one supervisor thread per job, and periodic recovery."""

from __future__ import annotations

import logging
import threading

from admin import audit
from admin.jobs import queue, recovery
from admin.jobs.supervisor import Publisher, Supervisor
from admin.runtime import Runtime
from admin.store.models import Job

log = logging.getLogger(__name__)


class Runner:
    """Started and stopped by the app's lifespan."""

    def __init__(self, runtime: Runtime, publish: Publisher | None = None) -> None:
        self.rt = runtime
        self.publish = publish
        self._active: dict[int, tuple[Supervisor, threading.Thread]] = {}
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._recovery: threading.Thread | None = None

    # Life cycle.

    def start(self) -> None:
        self.recover()
        interval = max(1.0, min(self.rt.settings.job_lease / 2, 10.0))
        self._recovery = threading.Thread(
            target=self._recover_every, args=(interval,), name="job-recovery", daemon=True
        )
        self._recovery.start()

    def stop(self, timeout: float | None = None) -> None:
        """Cancel what still runs (the database stays at a revision boundary) and wait."""
        self._stopping.set()
        with self._lock:
            running = list(self._active.values())
        for supervisor, _ in running:
            supervisor.cancel_soon("the panel is shutting down")
        limit = timeout if timeout is not None else self.rt.settings.job_cancel_grace + 5
        for _, thread in running:
            thread.join(limit)
        if self._recovery is not None:
            self._recovery.join(2)

    # Jobs.

    def submit(self, request: queue.JobRequest, actor: audit.Actor) -> Job:
        """Record the job and start its worker at once."""
        job = queue.submit(self.rt, request, actor)
        self.launch(job.id)
        return job

    def launch(self, job_id: int) -> None:
        supervisor = Supervisor(self.rt, job_id, publish=self.publish)
        thread = threading.Thread(
            target=self._supervise, args=(supervisor,), name=f"job-{job_id}", daemon=True
        )
        with self._lock:
            self._active[job_id] = (supervisor, thread)
        thread.start()

    def _supervise(self, supervisor: Supervisor) -> None:
        try:
            supervisor.run()
        except Exception:
            log.exception(
                "supervising job %s failed", supervisor.job_id, extra={"job_id": supervisor.job_id}
            )
        finally:
            with self._lock:
                self._active.pop(supervisor.job_id, None)

    def cancel(self, job_id: int, actor: audit.Actor) -> Job:
        """Record the request; the supervisor (here or on another replica) acts on it."""
        job = queue.request_cancel(self.rt, job_id, actor)
        with self._lock:
            entry = self._active.get(job_id)
        if entry is not None:
            entry[0].cancel_soon(f"cancelled by {actor.name}")
        return job

    def supervised(self, job_id: int) -> bool:
        with self._lock:
            return job_id in self._active

    def wait(self, job_id: int, timeout: float | None = None) -> bool:
        """Wait for a locally supervised job to end (tests, the entrypoint)."""
        with self._lock:
            entry = self._active.get(job_id)
        if entry is None:
            return True
        entry[1].join(timeout)
        return not entry[1].is_alive()

    # Recovery.

    def recover(self) -> list[int]:
        """End the record of jobs nothing runs any more (``admin.jobs.recovery``)."""
        try:
            return recovery.recover(self.rt, supervised=self.supervised)
        except Exception:
            log.exception("job recovery failed")
            return []

    def _recover_every(self, interval: float) -> None:
        while not self._stopping.wait(interval):
            self.recover()
