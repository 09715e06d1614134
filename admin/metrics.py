"""Prometheus metrics, read from the store and the target at scrape time.

Nothing is counted in memory: every replica reads the same store and so reports the same
job counts, durations, backups and sign-in failures. Each app gets its own registry
(``make_registry``), so test apps and replicas never share collectors.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, ProcessCollector
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString
from sqlalchemy import ColumnElement, case, func, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from admin import __version__, migrations
from admin.entrypoint import degraded_now
from admin.errors import AdminError
from admin.live import figures
from admin.runtime import Runtime
from admin.store.models import AuditEvent, Backup, BackupStatus, Job, JobKind, JobStatus

PREFIX = "schema_admin"
# Seconds: a quick stamp, a few revisions, a big backfill, an hour-long index build.
DURATION_BUCKETS = (1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0)
FINISHED = tuple(s.value for s in JobStatus if not s.active)


def _duration(dialect: str) -> ColumnElement[Any]:
    if dialect == "postgresql":
        return func.extract("epoch", Job.finished_at - Job.started_at)
    return (func.julianday(Job.finished_at) - func.julianday(Job.started_at)) * 86400.0


class StoreCollector(Collector):
    """The panel's state as metrics (see README, "Operations endpoints")."""

    def __init__(
        self, runtime: Callable[[], Runtime], open_streams: Callable[[], int] = lambda: 0
    ) -> None:
        self.runtime = runtime
        self.open_streams = open_streams

    def describe(self) -> Iterable[Metric]:
        return []  # no collect() at registration: that would query the store

    def collect(self) -> Iterator[Metric]:
        rt = self.runtime()
        settings = rt.settings
        info = GaugeMetricFamily(
            f"{PREFIX}_info", "Version and environment.", labels=["version", "environment"]
        )
        info.add_metric([__version__, settings.environment.value], 1)
        yield info
        yield from self._store(rt)
        yield from self._target(rt)
        streams = GaugeMetricFamily(
            f"{PREFIX}_sse_open_streams", "Live-log streams open on this process."
        )
        streams.add_metric([], self.open_streams())
        yield streams

    # The store.

    def _store(self, rt: Runtime) -> Iterator[Metric]:
        up = GaugeMetricFamily(f"{PREFIX}_store_up", "1 when the store answered this scrape.")
        try:
            with rt.reads() as session:
                found = self._read_store(rt, session)
        except SQLAlchemyError:
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield from found

    def _read_store(self, rt: Runtime, session: Session) -> list[Metric]:
        counts = {
            (kind, status): count
            for kind, status, count in session.execute(
                select(Job.kind, Job.status, func.count()).group_by(Job.kind, Job.status)
            )
        }
        jobs = GaugeMetricFamily(
            f"{PREFIX}_jobs", "Jobs in the store by kind and status.", labels=["kind", "status"]
        )
        kinds = {k.value for k in JobKind} | {kind for kind, _ in counts}
        for kind in sorted(kinds):
            for status in JobStatus:
                jobs.add_metric([kind, status.value], counts.get((kind, status.value), 0))
        return [
            jobs,
            self._durations(rt, session),
            self._backup_age(rt, session),
            self._login_failures(session),
            *self._step_figures(session),
        ]

    def _step_figures(self, session: Session) -> list[Metric]:
        """Step durations, lock waits and lock retries, summed over the jobs' figures
        (admin.live.figures: each job's, written at its end)."""
        steps: dict[str, Any] | None = None
        waits: dict[str, Any] | None = None
        retries = 0
        for (found,) in session.execute(
            select(Job.step_metrics).where(Job.step_metrics.is_not(None))
        ):
            steps = figures.add(steps, found, "steps", len(figures.STEP_BUCKETS))
            waits = figures.add(waits, found, "lock_waits", len(figures.LOCK_WAIT_BUCKETS))
            retries += int(found.get("lock_retries") or 0)
        step_histogram = HistogramMetricFamily(
            f"{PREFIX}_step_duration_seconds", "Run time of migration steps (revisions)."
        )
        wait_histogram = HistogramMetricFamily(
            f"{PREFIX}_lock_wait_seconds",
            "Waits of a job's backend for a lock, as the live view sampled them.",
        )
        for histogram, total, bounds in (
            (step_histogram, steps, figures.STEP_BUCKETS),
            (wait_histogram, waits, figures.LOCK_WAIT_BUCKETS),
        ):
            total = total or {"buckets": [0] * len(bounds), "count": 0, "sum": 0.0}
            points, running = [], 0
            for bound, count in zip(bounds, total["buckets"], strict=True):
                running += count
                points.append((floatToGoString(bound), float(running)))
            points.append(("+Inf", float(total["count"])))
            histogram.add_metric([], points, sum_value=float(total["sum"]))
        counter = CounterMetricFamily(
            f"{PREFIX}_lock_retries",
            "Attempts of a revision's transaction retried after a lock timeout (LOCK_RETRIES).",
        )
        counter.add_metric([], retries)
        return [step_histogram, wait_histogram, counter]

    def _durations(self, rt: Runtime, session: Session) -> Metric:
        duration = _duration(rt.read_engine.dialect.name)
        buckets = [func.sum(case((duration <= b, 1), else_=0)) for b in DURATION_BUCKETS]
        found = session.execute(
            select(Job.kind, func.count(), func.coalesce(func.sum(duration), 0.0), *buckets)
            .where(
                Job.status.in_(FINISHED),
                Job.started_at.is_not(None),
                Job.finished_at.is_not(None),
            )
            .group_by(Job.kind)
        ).all()
        histogram = HistogramMetricFamily(
            f"{PREFIX}_job_duration_seconds",
            "Run time of finished jobs (worker start to outcome), by kind.",
            labels=["kind"],
        )
        rows: list[tuple[Any, ...]] = [tuple(row) for row in found]
        seen = {row[0] for row in rows}
        empty = (0, 0.0, *(0 for _ in DURATION_BUCKETS))
        rows += [(kind.value, *empty) for kind in JobKind if kind.value not in seen]
        for kind, count, total, *cumulative in sorted(rows, key=lambda row: str(row[0])):
            points = [
                (floatToGoString(bound), float(n or 0))
                for bound, n in zip(DURATION_BUCKETS, cumulative, strict=True)
            ]
            points.append(("+Inf", float(count)))
            histogram.add_metric([kind], points, sum_value=float(total or 0.0))
        return histogram

    def _backup_age(self, rt: Runtime, session: Session) -> Metric:
        key = migrations.target_key(rt.settings.database_url)
        last = session.scalar(
            select(func.max(Backup.verified_at)).where(
                Backup.status == BackupStatus.VERIFIED.value, Backup.target_key == key
            )
        )
        age = GaugeMetricFamily(
            f"{PREFIX}_last_verified_backup_age_seconds",
            "Seconds since the target's last verified backup (+Inf: none yet).",
        )
        if last is None:
            age.add_metric([], math.inf)
        else:
            age.add_metric([], max(0.0, time.time() - last.timestamp()))
        return age

    def _login_failures(self, session: Session) -> Metric:
        failed = session.scalar(
            select(func.count()).select_from(AuditEvent).where(AuditEvent.action == "login-failed")
        )
        counter = CounterMetricFamily(
            f"{PREFIX}_login_failures", "Failed sign-ins (from the audit trail)."
        )
        counter.add_metric([], failed or 0)
        return counter

    # The target.

    def _target(self, rt: Runtime) -> Iterator[Metric]:
        up = GaugeMetricFamily(f"{PREFIX}_target_up", "1 when the target answered this scrape.")
        try:
            project = migrations.open_project(rt.settings.alembic_config, rt.settings.cache_dir)
            status = migrations.read_status(project, rt.settings.database_url)
        except AdminError:
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1 if status.reachable else 0)
        yield up
        state = GaugeMetricFamily(
            f"{PREFIX}_target_state",
            "1 for the target's current state against the revision files.",
            labels=["state"],
        )
        for each in migrations.State:
            state.add_metric([each.value], 1 if each is status.state else 0)
        yield state
        at_head = GaugeMetricFamily(
            f"{PREFIX}_target_at_head", "1 when the target is at the head revision(s)."
        )
        at_head.add_metric([], 1 if status.state is migrations.State.UP_TO_DATE else 0)
        yield at_head
        pending = GaugeMetricFamily(
            f"{PREFIX}_pending_revisions", "Revisions not yet applied to the target."
        )
        pending.add_metric([], len(status.pending))
        yield pending
        degraded = GaugeMetricFamily(
            f"{PREFIX}_degraded",
            "1 when this instance started without its start-up migration and the target "
            "is still not at head.",
        )
        degraded.add_metric([], 1 if degraded_now(rt.settings, status.state) else 0)
        yield degraded


def make_registry(
    runtime: Callable[[], Runtime], open_streams: Callable[[], int] = lambda: 0
) -> CollectorRegistry:
    """A registry of its own for one app: the store collector and this process's numbers."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StoreCollector(runtime, open_streams))
    ProcessCollector(registry=registry)
    return registry
