"""The supervisor: spawns a job's worker, stores its lines, and records the outcome.

Used by the web runner (one thread per job) and by the CLI and the entrypoint (in the
foreground, echoing the log to the terminal): a job is the same record, log and audit
trail whoever started it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue as queue_module
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Collection, Sequence
from typing import IO, Any

from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from admin import audit, migrations
from admin.config import Settings
from admin.jobs import outcome, queue
from admin.jobs.ownership import NotOwner, Owner
from admin.jobs.planscript import PlanScript
from admin.jobs.protocol import Message, Order, decode, log_line
from admin.jobs.record import JobRecord, Publisher
from admin.live.watch import JobWatch
from admin.runtime import Runtime
from admin.store.models import Job, JobStatus

log = logging.getLogger(__name__)

MAX_BATCH = 500
# Seconds between two commits of log lines while lines keep coming.
COALESCE = 0.05
# Seconds between two writes of the job's steps done (pages refresh at most once a second).
PROGRESS_EVERY = 1.0
MAX_LINE = 64 * 1024
# Seconds a job's end waits for its plan's offline script (its SQL fingerprint).
RENDER_TIMEOUT = 120.0
_SETTING_NAMES = {name.upper() for name in Settings.model_fields}


def worker_command(job_id: int, control_fd: int) -> list[str]:
    return [sys.executable, "-m", "admin.jobs.worker", str(job_id), str(control_fd)]


def work_order(job: Job, settings: Settings, owner: Owner | None = None) -> Order:
    """What the worker needs to know of ``job`` and of the settings it runs with."""
    return Order(
        job_id=job.id,
        kind=job.kind,
        target_revision=job.target_revision,
        plan_fingerprint=job.plan_fingerprint,
        source=job.source,
        requested_by=job.requested_by,
        database_url=settings.database_url,
        alembic_config=str(settings.alembic_config),
        lock_timeout=settings.lock_timeout,
        statement_timeout=settings.statement_timeout,
        migration_lock_wait=settings.migration_lock_wait,
        backup_gate=settings.backups_gate_migrations or bool((job.options or {}).get("backup")),
        cache_dir=str(settings.cache_dir),
        owner=str(owner) if owner is not None else None,
        target_connection=migrations.ConnectOptions.from_settings(settings).as_dict(),
        lock_retries=str((job.options or {}).get("lock_retries") or settings.lock_retries),
        lock_retry_pause=settings.lock_retry_pause,
        lock_retry_final_without_timeout=settings.lock_retry_final_without_timeout,
    )


def worker_env(settings: Settings) -> dict[str, str]:
    """The parent's environment with its settings exactly as this process has them."""
    env = {k: v for k, v in os.environ.items() if k.upper() not in _SETTING_NAMES}
    env.update(settings.to_env())
    env["PYTHONUNBUFFERED"] = "1"
    # Alembic orders version-table statements at merges by set iteration: a fixed seed
    # makes a run's SQL the same as the preview's (admin.migrations.offline does the same).
    env["PYTHONHASHSEED"] = "0"
    return env


def _pump(stream: IO[str], name: str, sink: queue_module.Queue[tuple[str, str | None]]) -> None:
    for line in stream:
        sink.put((name, line[:MAX_LINE]))
    sink.put((name, None))


class Supervisor:
    """Runs one job to its end."""

    def __init__(
        self,
        runtime: Runtime,
        job_id: int,
        *,
        publish: Publisher | None = None,
        echo: Callable[[str], None] | None = None,
        echo_levels: Collection[str] | None = None,
    ) -> None:
        self.rt = runtime
        self.job_id = job_id
        self.publish = publish
        self.owner = Owner.new("supervisor")
        self.record = JobRecord(
            runtime, job_id, self.owner, publish=publish, echo=echo, echo_levels=echo_levels
        )
        self.cancel_reason: str | None = None
        self._cancel = threading.Event()
        self._cancelled_at: float | None = None
        self._backend_pid: int | None = None
        self._result: dict[str, Any] | None = None
        self._heard = time.monotonic()
        self._heard_any = False
        self._heads_after: dict[int, str] = {}
        self._steps_done = 0
        self._steps_stored = 0
        self._progress_at = 0.0
        self._proc: subprocess.Popen[str] | None = None
        self._control: IO[str] | None = None
        self._script: PlanScript | None = None
        # The live view of the database (PostgreSQL targets), sampled while the job runs.
        self.live = JobWatch(runtime.settings.database_url, job_id, lambda: self._backend_pid)
        self._live_version = 0

    # Control from other threads.

    def cancel_soon(self, reason: str = "cancelled on request") -> None:
        self.cancel_reason = self.cancel_reason or reason
        self._cancel.set()

    # The run.

    def run(self) -> Job:
        try:
            return self._run()
        finally:
            self.record.close()

    def _current(self) -> Job:
        with self.rt.reads() as session:
            return queue.get(session, self.job_id)

    def _run(self) -> Job:
        with self.rt.reads() as session:
            self.record.seq = queue.last_seq(session, self.job_id)
            job = queue.get(session, self.job_id)
            self._live_version = job.live_version or 0
        try:
            queue.claim(self.rt, self.job_id, self.owner)
        except NotOwner as exc:  # another supervisor has it (or it ended): not started twice
            self.record.lost = str(exc)
            return job
        described = queue.NewLine(self._describe(job), "info", "runner")
        started = time.monotonic()
        control, control_end = os.pipe()
        try:
            proc = subprocess.Popen(
                worker_command(self.job_id, control_end),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                stdin=subprocess.PIPE,
                pass_fds=(control_end,),
                text=True,
                encoding="utf-8",
                errors="replace",
                env=worker_env(self.rt.settings),
                start_new_session=True,
            )
        except OSError as exc:
            os.close(control)
            self._store([described])
            return self._finish(JobStatus.FAILED, f"the worker could not start: {exc}", None)
        finally:
            os.close(control_end)
        self._control = os.fdopen(control, "r", encoding="utf-8", errors="replace")
        self._proc = proc
        self._hand_over(proc, work_order(job, self.rt.settings, self.owner))
        self._script = PlanScript(job, self.rt.settings)
        # Recorded while the worker starts up.
        queue.mark_started(self.rt, self.job_id, proc.pid, self.owner)
        self._store([described, queue.NewLine(f"worker pid {proc.pid} started", "info", "runner")])
        self.live.start()
        try:
            self._follow(proc)
        finally:
            self.live.stop()
        self._collect_live(final=True)
        if self.record.lost is not None:
            # Another process owns the job now: its record is theirs to finish.
            return self._current()
        cancelled = self.cancel_reason if self._cancel.is_set() else None
        status, error = outcome.status_of(self._result, proc.returncode, cancelled)
        elapsed = time.monotonic() - started
        return self._finish(status, error, proc.returncode, elapsed)

    @staticmethod
    def _hand_over(proc: subprocess.Popen[str], order: Order) -> None:
        """The order on the worker's stdin (a worker that died at once has no stdin left:
        its exit code then tells what happened)."""
        assert proc.stdin is not None
        with contextlib.suppress(BrokenPipeError):
            proc.stdin.write(order.encode())
        with contextlib.suppress(BrokenPipeError):
            proc.stdin.close()

    def _describe(self, job: Job) -> str:
        target = f" to {job.target_revision}" if job.target_revision else ""
        return (
            f"job {job.id}: {job.kind}{target} on {job.target_display}, requested by "
            f"{job.requested_by} via {job.source}"
        )

    def _follow(self, proc: subprocess.Popen[str]) -> None:
        sink: queue_module.Queue[tuple[str, str | None]] = queue_module.Queue()
        assert proc.stdout is not None and proc.stderr is not None
        assert self._control is not None
        streams = {"control": self._control, "stdout": proc.stdout, "stderr": proc.stderr}
        readers = [
            threading.Thread(target=_pump, args=(stream, name, sink), daemon=True)
            for name, stream in streams.items()
        ]
        for reader in readers:
            reader.start()
        open_streams = len(readers)
        interval = min(self.rt.settings.job_heartbeat, 0.5)
        last_beat = time.monotonic()
        last_commit = 0.0
        while open_streams:
            batch: list[tuple[str, str | None]] = []
            try:
                batch.append(sink.get(timeout=interval))
                # A burst (one line per SQL statement) is stored COALESCE seconds at a time:
                # one commit per line would cost more than the migration itself.
                deadline = last_commit + COALESCE
                while len(batch) < MAX_BATCH:
                    wait = deadline - time.monotonic()
                    batch.append(sink.get(timeout=wait) if wait > 0 else sink.get_nowait())
            except queue_module.Empty:
                pass
            open_streams -= sum(1 for _, line in batch if line is None)
            self._take(batch)
            self._collect_live()
            if not batch:
                self.record.flush()  # lines kept while the store did not answer
            last_commit = time.monotonic()
            now = time.monotonic()
            if now - last_beat >= self.rt.settings.job_heartbeat:
                last_beat = now
                self._beat(proc, now)
            self._enforce_cancel(proc)
        for reader in readers:
            reader.join()
        proc.wait()
        for stream in streams.values():
            stream.close()

    def _beat(self, proc: subprocess.Popen[str], now: float) -> None:
        """Renew the lease while the worker proves it is alive (it sends a beat at least
        every second, from a thread of its own); a worker silent for a whole lease is
        frozen or stuck: it is stopped. Another owner now: the worker is stopped too."""
        silent = now - self._heard
        # Before its first word the worker is starting (imports on a busy machine).
        limit = (
            self.rt.settings.job_lease if self._heard_any else max(self.rt.settings.job_lease, 60.0)
        )
        if proc.poll() is None and silent > limit:
            self.cancel_soon(
                f"the worker sent nothing for {silent:.0f}s (frozen or stuck): stopping it"
            )
        elif self.record.heartbeat():
            self.cancel_soon("cancelled on request")
        if self.record.lost is not None:
            self.cancel_soon(f"another process owns the job now ({self.record.lost})")

    def _take(self, batch: list[tuple[str, str | None]]) -> None:
        lines: list[queue.NewLine] = []
        changes: dict[str, Any] = {}
        for stream, raw in batch:
            if raw is None:
                continue
            if stream != "control":
                # Bytes the job's code wrote to a file descriptor itself: text, never a message.
                level = "warning" if stream == "stderr" else "info"
                lines.append(queue.NewLine(raw.rstrip("\n"), level, stream))
                continue
            self._heard = time.monotonic()
            self._heard_any = True
            message = self.live.observe(decode(raw))
            self._absorb(message, changes)
            line = log_line(message)
            if line is not None:
                lines.append(queue.NewLine(*line))
        self._progress(changes)
        if lines or changes:
            self._store(lines, **changes)

    def _progress(self, changes: dict[str, Any]) -> None:
        """Steps done, written at most every PROGRESS_EVERY seconds: also when no line came
        since (the step after a few quick ones may run for minutes)."""
        now = time.monotonic()
        if self._steps_done != self._steps_stored and now - self._progress_at >= PROGRESS_EVERY:
            self._progress_at = now
            self._steps_stored = self._steps_done
            changes["steps_done"] = self._steps_done

    def _absorb(self, message: Message, changes: dict[str, Any]) -> None:
        data = message.data
        if message.kind == "backend":
            self._backend_pid = int(data["pid"]) if data.get("pid") else None
        elif message.kind == "step" and data.get("event") == "finished":
            self._steps_done = int(data.get("step") or self._steps_done + 1)
            if isinstance(data.get("heads"), list):
                self._heads_after[self._steps_done] = ",".join(map(str, data["heads"])) or "base"
        elif message.kind == "backup" and data.get("backup_id"):
            changes["backup_id"] = int(data["backup_id"])
        elif message.kind == "result":
            self._result = {"status": message.text, **data}

    def _store(self, lines: Sequence[queue.NewLine], **changes: Any) -> None:
        self.record.add(lines, **changes)

    def _collect_live(self, *, final: bool = False) -> None:
        lines, changes = self.live.collect(final=final)
        if "live" in changes:
            self._live_version += 1
            changes["live_version"] = self._live_version
        if lines or changes:
            self._store(lines, **changes)

    # Cancelling.

    def _enforce_cancel(self, proc: subprocess.Popen[str]) -> None:
        if not self._cancel.is_set() or proc.poll() is not None:
            return
        now = time.monotonic()
        if self._cancelled_at is None:
            self._cancelled_at = now
            self._store([queue.NewLine(f"cancelling: {self.cancel_reason}", "warning", "runner")])
            self._cancel_backend()
            self._signal(proc, signal.SIGTERM)
        elif now - self._cancelled_at >= self.rt.settings.job_cancel_grace:
            self._store(
                [queue.NewLine("the worker did not stop in time: killing it", "warning", "runner")]
            )
            self._signal(proc, signal.SIGKILL)

    def _cancel_backend(self) -> None:
        """Cancel the worker's running statement first, so it can unwind cleanly."""
        url = self.rt.settings.database_url
        if not self._backend_pid or not migrations.database.is_postgresql(url):
            return
        engine = migrations.new_engine(url)
        try:
            with engine.connect() as connection:
                connection.execute(text("SELECT pg_cancel_backend(:p)"), {"p": self._backend_pid})
        except Exception as exc:  # the SIGTERM that follows still stops the worker
            self._store([queue.NewLine(f"could not cancel the query: {exc}", "warning", "runner")])
        finally:
            engine.dispose()

    @staticmethod
    def _signal(proc: subprocess.Popen[str], signum: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signum)

    # The end.

    def _finish(
        self,
        status: JobStatus,
        error: str | None,
        returncode: int | None,
        elapsed: float = 0.0,
    ) -> Job:
        job = self._current()
        where = outcome.where_now(self.rt.settings, job, self._result)
        steps = outcome.steps_applied(
            self._heads_after, where, job.revision_before, self._steps_done
        )
        summary = f"job {status.value} in {elapsed:.1f}s; the database is at {where.said}"
        if error:
            summary += f": {error}"
        level = "info" if status is JobStatus.SUCCEEDED else "error"
        self._store([queue.NewLine(summary, level, "runner")], steps_done=steps)
        result = self._result or {}
        # A job that ran its plan waits for the plan's script; one that ended early does not
        # hold its end (a shutdown's cancel) for it.
        patience = RENDER_TIMEOUT if status is JobStatus.SUCCEEDED else 2.0
        fingerprint = self._script.result(patience) if self._script else None
        deadline = time.monotonic() + max(self.rt.settings.job_lease, 10.0)
        while True:
            try:
                if not self.record.flush():
                    raise NotOwner(self.record.lost or "") if self.record.lost else OSError()
                finished = queue.finish(
                    self.rt,
                    self.job_id,
                    status,
                    revision_after=where.revision,
                    error=error
                    if where.unknown is None
                    else f"{error or status.value}; "
                    f"the database's revision is unknown: {where.unknown}",
                    exit_code=returncode,
                    sql_fingerprint=fingerprint,
                    backup_id=result.get("backup_id"),
                    owner=self.owner,
                    steps_done=steps,
                )
                break
            except NotOwner:
                return self._current()
            except (OSError, DBAPIError):
                # The store does not answer: try again for a while, then leave the end to
                # recovery (which reads the same target).
                if time.monotonic() >= deadline:
                    log.error(
                        "job %s: its end could not be recorded: the store does not answer",
                        self.job_id,
                        extra={"job_id": self.job_id},
                    )
                    return job
                time.sleep(1.0)
        if self.publish is not None:
            self.publish(self.job_id, [], status.value)
        return finished


def run_in_foreground(
    runtime: Runtime,
    request: queue.JobRequest,
    actor: audit.Actor,
    *,
    echo: Callable[[str], None] = print,
    echo_levels: Collection[str] | None = None,
) -> Job:
    """Submit a job and supervise it here (CLI, entrypoint): Ctrl-C or SIGTERM cancels it.

    ``echo_levels`` limits the lines echoed (the job's stored log always has them all).
    """
    job = queue.submit(runtime, request, actor)
    supervisor = Supervisor(runtime, job.id, echo=echo, echo_levels=echo_levels)

    def interrupt(signum: int, frame: object) -> None:
        supervisor.cancel_soon(f"interrupted by {signal.Signals(signum).name}")

    previous = {}
    if threading.current_thread() is threading.main_thread():
        previous = {
            signum: signal.signal(signum, interrupt) for signum in (signal.SIGINT, signal.SIGTERM)
        }
    try:
        return supervisor.run()
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
