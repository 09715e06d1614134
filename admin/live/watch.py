"""The supervisor's side of the live view: samples to the job's row, changes to its log.

One ``JobWatch`` per running job, owned by its supervisor (``admin.jobs.supervisor``): the
sampler thread hands it samples; the supervisor's loop collects, at its own pace, what to
store (``collect``: the live view for ``jobs.live``, summary lines for the log) and passes
each worker message through ``observe``, which completes lock errors and lock retries with
the blocker the samples saw, and keeps the step table (duration, rows, lock wait).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field, replace
from typing import Any

from admin import migrations
from admin.jobs.protocol import Message
from admin.jobs.queue import NewLine
from admin.live import figures, naming
from admin.live.sampler import Sample, Sampler, worth_showing

# Seconds between two writes of the step table while a job runs (a long plan's table is
# large: it is written whole, so not at every step).
STEP_STATS_EVERY = 5.0
# A wait counts as the one a lock error ended if it was seen this recently.
RECENT_WAIT = 3.0


@dataclass
class Wait:
    """One wait of the job's backend for a lock, as the samples saw it."""

    waiting: dict[str, Any]
    started: float
    seconds: float = 0.0
    seen: float = 0.0
    blockers: dict[int, dict[str, Any]] = field(default_factory=dict)
    step: int = 0

    @property
    def key(self) -> tuple[Any, ...]:
        w = self.waiting
        return (w.get("locktype"), w.get("mode"), w.get("relation"))

    def summary(self) -> str:
        return naming.waited(self.waiting, self.seconds, list(self.blockers.values()))


class JobWatch:
    """The live view of one job, and what it adds to the job's log and row."""

    def __init__(self, url: str, job_id: int, pid_of: Any, *, every: float = 1.0) -> None:
        self.enabled = migrations.database.is_postgresql(url)
        self.sampler = Sampler(
            url, pid_of, self._sampled, name=f"schema-admin live view job {job_id}", every=every
        )
        self._lock = threading.Lock()
        self._latest: Sample | None = None
        self._fresh = False
        self._shown = False
        self.wait: Wait | None = None
        self.last_wait: Wait | None = None
        self._queued_peak = (0, 0.0)
        self._phase: tuple[Any, ...] | None = None
        self._lines: list[NewLine] = []
        # The step table.
        self.step = 0
        self.steps: list[dict[str, Any]] = []
        self._stats_dirty = False
        self._stats_at = 0.0
        self._waited: dict[int, float] = {}
        self._waits: list[float] = []
        self.lock_retries = 0

    # The sampler's thread.

    def start(self) -> None:
        if self.enabled:
            self.sampler.start()

    def stop(self) -> None:
        if self.enabled:
            self.sampler.stop()

    def _sampled(self, sample: Sample | None) -> None:
        with self._lock:
            self._latest = sample
            self._fresh = True
            self._summarise(sample)

    # Summaries (with the lock held).

    def _summarise(self, sample: Sample | None) -> None:
        now = time.monotonic()
        waiting = (sample or {}).get("waiting")
        if self.wait is not None and (waiting is None or _key(waiting) != self.wait.key):
            self._end_wait()
        if waiting is not None and sample is not None:
            if self.wait is None:
                self.wait = Wait(dict(waiting), now, step=self.step)
            self.wait.seconds = max(self.wait.seconds, float(waiting.get("seconds") or 0.0))
            self.wait.seen = now
            fresh = False
            for b in sample.get("blockers") or []:
                fresh = fresh or b.get("pid") not in self.wait.blockers
                self.wait.blockers[b.get("pid")] = dict(b)
            if fresh:
                items = list(self.wait.blockers.values())
                self._line(
                    f"waiting for {naming.lock_target(waiting)}, {naming.blockers(items)}",
                    "warning",
                )
        queued = (sample or {}).get("queued") or {}
        count, oldest = int(queued.get("count") or 0), float(queued.get("oldest_seconds") or 0)
        peak, longest = self._queued_peak
        if count and not peak:
            self._line(
                f"{count} session(s) queue behind the job's backend (the oldest for "
                f"{naming.duration(oldest)}): they wait for a lock it holds or waits for",
                "warning",
            )
        if count:
            self._queued_peak = (max(peak, count), max(longest, oldest))
        elif peak:
            self._line(
                f"the sessions queued behind the job are through: up to {peak} waited, the "
                f"longest {naming.duration(longest)}",
                "info",
            )
            self._queued_peak = (0, 0.0)
        progress = (sample or {}).get("progress")
        phase = (progress.get("command"), progress.get("phase")) if progress else None
        if phase is not None and phase != self._phase and progress is not None:
            on = f" on {progress['relation']}" if progress.get("relation") else ""
            self._line(f"{progress.get('command')}{on}: {progress.get('phase')}", "info")
        self._phase = phase

    def _end_wait(self) -> None:
        wait = self.wait
        if wait is None:
            return
        self.wait = None
        self.last_wait = wait
        self._line(wait.summary(), "warning")
        self._add_lock_wait(wait)

    def _add_lock_wait(self, wait: Wait) -> None:
        self._waited[wait.step] = self._waited.get(wait.step, 0.0) + wait.seconds
        self._waits.append(wait.seconds)
        for row in self.steps:
            if row["step"] == wait.step:
                row["lock_wait"] = round(self._waited[wait.step], 3)
                self._stats_dirty = True

    def _line(self, text: str, level: str) -> None:
        self._lines.append(NewLine(text, level, "live"))

    # The supervisor's loop.

    def collect(self, *, final: bool = False) -> tuple[list[NewLine], dict[str, Any]]:
        """Lines to append and changes to the job's row since the last call."""
        changes: dict[str, Any] = {}
        with self._lock:
            if final:
                self._end_wait()
                self._summarise(None)
                self._latest, self._fresh = None, True
            if self._fresh:
                self._fresh = False
                show = worth_showing(self._latest)
                if show or self._shown:
                    changes["live"] = self._latest if show else None
                self._shown = show
            lines, self._lines = self._lines, []
            now = time.monotonic()
            if self._stats_dirty and (final or now - self._stats_at >= STEP_STATS_EVERY):
                self._stats_dirty = False
                self._stats_at = now
                changes["step_stats"] = [dict(row) for row in self.steps]
            if final:
                changes["step_metrics"] = figures.of_job(
                    (float(row["duration"]) for row in self.steps), self._waits, self.lock_retries
                )
        return lines, changes

    # Worker messages.

    def observe(self, message: Message) -> Message:
        """``message`` as the log and the record should keep it: a lock timeout or a lock
        retry names the wait and the blocker the samples saw; steps fill the step table."""
        data = message.data
        if message.kind == "step":
            self._step(data)
        elif message.kind == "retry":
            self.lock_retries += 1
            return replace(message, text=f"{message.text}; {self._wait_said()}")
        elif data.get("sqlstate") == naming.LOCK_TIMEOUT:
            error = "[SQLSTATE 55P03] " + self._lock_error(data)
            if message.kind == "result":
                return replace(message, data={**data, "error": error})
            return replace(message, text=f"error {error}")
        return message

    def _recent_wait(self) -> Wait | None:
        with self._lock:
            wait = self.wait or self.last_wait
            if wait is None or time.monotonic() - wait.seen > RECENT_WAIT:
                return None
            return wait

    def _wait_said(self) -> str:
        wait = self._recent_wait()
        if wait is None:
            return "the live view saw no blocker"
        return f"it waited for {naming.lock_target(wait.waiting)}, " + naming.blockers(
            list(wait.blockers.values())
        )

    def _lock_error(self, data: dict[str, Any]) -> str:
        wait = self._recent_wait()
        return naming.lock_timeout_error(
            data.get("lock_timeout"),
            data.get("statement"),
            wait.waiting if wait else None,
            list(wait.blockers.values()) if wait else [],
        )

    def _step(self, data: dict[str, Any]) -> None:
        step = int(data.get("step") or 0)
        with self._lock:
            if data.get("event") == "started":
                self.step = step
                return
            row = {
                "step": step,
                "revision": data.get("revision"),
                "label": data.get("label"),
                "duration": round(float(data.get("duration") or 0.0), 3),
                "rows": data.get("rows"),
                "lock_wait": round(self._waited.get(step, 0.0), 3),
            }
            if self.steps and self.steps[-1]["step"] == step:
                self.steps.pop()
            self.steps.append(row)
            self._stats_dirty = True


def _key(waiting: dict[str, Any]) -> tuple[Any, ...]:
    return (waiting.get("locktype"), waiting.get("mode"), waiting.get("relation"))
