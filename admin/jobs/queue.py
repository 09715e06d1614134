"""Job records in the store: submit, follow, finish, cancel, recover (each change audited)."""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, NoReturn

from sqlalchemy import Connection, func, insert, select, update
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.orm import Session

from admin import audit, migrations
from admin.analysis import applied as applied_files
from admin.analysis import gate as safety_gate
from admin.errors import AdminError, Conflict, InvalidInput, NotFound
from admin.jobs.protocol import heads_text
from admin.runtime import Runtime
from admin.store.models import (
    ACTIVE_JOB_STATUSES,
    Job,
    JobKind,
    JobLine,
    JobStatus,
    Source,
    utcnow,
)

MIGRATION_KINDS = (JobKind.UPGRADE, JobKind.DOWNGRADE)


@dataclass(frozen=True)
class JobRequest:
    """What someone asks for: kind, target revision, and the plan they were shown."""

    kind: JobKind
    target_revision: str | None = None
    plan_fingerprint: str | None = None
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class NewLine:
    """A log line about to be stored (the supervisor numbers them)."""

    text: str
    level: str = "info"
    stream: str = "stdout"


def requester(job: Job) -> audit.Actor:
    """The person (or process) a job acts for, for its audit events."""
    return audit.Actor(job.requested_by, job.requested_role, Source(job.source), job.client_addr)


def project_of(rt: Runtime) -> migrations.Project:
    return migrations.open_project(rt.settings.alembic_config)


def _refuse(rt: Runtime, request: JobRequest, actor: audit.Actor, error: AdminError) -> NoReturn:
    """Audit a refused submission (in its own transaction) and raise the error."""
    with rt.transaction() as session:
        audit.record(
            session,
            audit.JobRefused(
                kind=request.kind.value,
                target_revision=request.target_revision,
                reason=str(error),
            ),
            actor,
        )
    error.audited = True
    raise error


def _plan(rt: Runtime, request: JobRequest) -> tuple[migrations.Plan | None, tuple[str, ...]]:
    """The plan a migration job will run, checked against the one the requester saw."""
    project = project_of(rt)
    url = rt.settings.database_url
    _, current = migrations.read_current(project, url)
    if request.kind is JobKind.STAMP:
        target = migrations.check_target(request.target_revision or "")
        if target not in ("head", "heads", "base") and "@" not in target:
            project.graph(max_age=0).get(target)
        return None, current
    direction = (
        migrations.Direction.UPGRADE
        if request.kind is JobKind.UPGRADE
        else migrations.Direction.DOWNGRADE
    )
    plan = migrations.make_plan(
        project, direction, request.target_revision or "", current, max_age=0
    )
    if request.plan_fingerprint is not None and request.plan_fingerprint != plan.fingerprint:
        raise Conflict(
            "the plan changed since it was shown (new revision files were deployed, a file "
            "was edited, or the database moved): review the new plan before applying it",
            title="Plan changed",
        )
    if plan.is_empty:
        raise InvalidInput(
            f"nothing to {direction.value}: the database is already at {heads_text(current)}"
        )
    safety_gate.check_plan(rt, project, plan)
    return plan, current


def submit(rt: Runtime, request: JobRequest, actor: audit.Actor) -> Job:
    """Record a job as queued (with its audit event), or refuse it with a clear reason.

    Refused: a plan that no longer matches what was shown (409), another active job on
    this target (409, enforced by the store's partial unique index), a bad target (4xx).
    """
    settings = rt.settings
    plan: migrations.Plan | None = None
    current: tuple[str, ...] = ()
    try:
        if request.kind in MIGRATION_KINDS or request.kind is JobKind.STAMP:
            plan, current = _plan(rt, request)
    except AdminError as error:
        _refuse(rt, request, actor, error)

    key = migrations.target_key(settings.database_url)
    try:
        with rt.transaction() as session:
            job = Job(
                kind=request.kind.value,
                status=JobStatus.QUEUED.value,
                target_key=key,
                target_display=settings.target_url_masked,
                target_revision=request.target_revision,
                plan=plan.revision_ids if plan else None,
                plan_fingerprint=plan.fingerprint if plan else None,
                revision_before=heads_text(current)
                if request.kind in MIGRATION_KINDS or request.kind is JobKind.STAMP
                else None,
                options=request.options or None,
                steps_total=len(plan.steps) if plan else 0,
                steps_done=0,
                requested_by=actor.name,
                requested_role=actor.role,
                source=actor.source.value,
                client_addr=actor.client_addr,
                created_at=utcnow(),
            )
            session.add(job)
            session.flush()
            audit.record(
                session,
                audit.JobQueued(
                    job_id=job.id,
                    kind=job.kind,
                    target_revision=job.target_revision,
                    plan=list(job.plan or []),
                    plan_fingerprint=job.plan_fingerprint,
                    revision_before=job.revision_before,
                ),
                actor,
                revision=job.target_revision,
            )
    except IntegrityError:
        _refuse(rt, request, actor, _busy(rt, key))
    return job


def _busy(rt: Runtime, key: str) -> Conflict:
    with rt.reads() as session:
        running = session.scalar(
            select(Job).where(Job.target_key == key, Job.status.in_(ACTIVE_JOB_STATUSES))
        )
    if running is None:
        return Conflict("another job was just started on this database: try again")
    return Conflict(
        f"job {running.id} ({running.kind} to {running.target_revision or '-'}, started by "
        f"{running.requested_by} via {running.source}) is {running.status} on this database: "
        "wait for it to finish or cancel it",
        title="Another job is running",
    )


# Reading.


def get(session: Session, job_id: int) -> Job:
    job = session.get(Job, job_id)
    if job is None:
        raise NotFound(f"there is no job {job_id}")
    return job


def active(session: Session, target: str) -> Job | None:
    return session.scalar(
        select(Job).where(Job.target_key == target, Job.status.in_(ACTIVE_JOB_STATUSES))
    )


def recent(
    session: Session,
    *,
    status: str | None = None,
    kind: str | None = None,
    user: str | None = None,
    before: int | None = None,
    limit: int = 50,
) -> list[Job]:
    query = select(Job).order_by(Job.id.desc()).limit(limit)
    if status:
        query = query.where(Job.status == status)
    if kind:
        query = query.where(Job.kind == kind)
    if user:
        query = query.where(Job.requested_by == user)
    if before:
        query = query.where(Job.id < before)
    return list(session.scalars(query))


def lines(session: Session, job_id: int, after: int = 0, limit: int = 1000) -> list[JobLine]:
    return list(
        session.scalars(
            select(JobLine)
            .where(JobLine.job_id == job_id, JobLine.seq > after)
            .order_by(JobLine.seq)
            .limit(limit)
        )
    )


def last_seq(session: Session, job_id: int) -> int:
    return session.scalar(select(func.max(JobLine.seq)).where(JobLine.job_id == job_id)) or 0


# Changes made by the supervisor.


def mark_started(rt: Runtime, job_id: int, pid: int) -> Job:
    with rt.transaction() as session:
        job = get(session, job_id)
        now = utcnow()
        job.status = JobStatus.RUNNING.value
        job.started_at = now
        job.heartbeat_at = now
        job.worker_pid = pid
        job.worker_host = socket.gethostname()
        audit.record(
            session, audit.JobStarted(job_id=job.id, kind=job.kind, worker_pid=pid), requester(job)
        )
    return job


class LineWriter:
    """Stores a job's log lines (and job column changes), one commit per batch.

    The supervisor's hot path: a batch every COALESCE seconds while lines keep coming. One
    store connection serves the whole job, so a batch is its INSERT and COMMIT alone: no
    pool checkout with its ping, no ORM session. On PostgreSQL its commits don't wait for
    the WAL flush (the job's final status, committed by ``finish`` with a wait, makes every
    earlier line durable too); the connection is discarded at ``close``, never pooled, so no
    other work inherits that. A connection lost between batches (the store restarted) is
    replaced once.
    """

    def __init__(self, rt: Runtime, job_id: int) -> None:
        self.rt = rt
        self.job_id = job_id
        self._connection: Connection | None = None

    def append(self, first_seq: int, new: Sequence[NewLine], **changes: Any) -> None:
        """Lines numbered from ``first_seq`` and ``changes`` to the job's row, together."""
        now = utcnow()
        rows = [
            {
                "job_id": self.job_id,
                "seq": first_seq + i,
                "created_at": now,
                "stream": line.stream,
                "level": line.level,
                "text": line.text,
            }
            for i, line in enumerate(new)
        ]
        for attempt in (1, 2):
            connection = self._connect()
            try:
                with connection.begin():
                    if rows:
                        connection.execute(insert(JobLine), rows)
                    if changes:
                        connection.execute(
                            update(Job).where(Job.id == self.job_id).values(**changes)
                        )
                return
            except DBAPIError as exc:
                self.close()
                if attempt == 2 or not exc.connection_invalidated:
                    raise

    def close(self) -> None:
        if self._connection is not None:
            self._connection.invalidate()
            self._connection.close()
            self._connection = None

    def _connect(self) -> Connection:
        if self._connection is None:
            connection = self.rt.store_engine.connect()
            if connection.dialect.name == "postgresql":
                connection.exec_driver_sql("SET synchronous_commit = off")
                connection.commit()
            self._connection = connection
        return self._connection


def heartbeat(rt: Runtime, job_id: int) -> bool:
    """Renew the job's lease; True when someone asked to cancel it."""
    with rt.transaction() as session:
        session.execute(update(Job).where(Job.id == job_id).values(heartbeat_at=utcnow()))
        requested = session.scalar(select(Job.cancel_requested_at).where(Job.id == job_id))
    return requested is not None


def finish(
    rt: Runtime,
    job_id: int,
    status: JobStatus,
    *,
    revision_after: str | None,
    error: str | None,
    exit_code: int | None,
    sql_fingerprint: str | None = None,
    backup_id: int | None = None,
) -> Job:
    with rt.transaction() as session:
        job = get(session, job_id)
        job.status = status.value
        job.finished_at = utcnow()
        job.revision_after = revision_after
        job.error = error
        job.exit_code = exit_code
        job.sql_fingerprint = sql_fingerprint or job.sql_fingerprint
        if backup_id is not None:
            job.backup_id = backup_id
        applied_files.record_job(session, rt.settings, job)
        audit.record(
            session,
            audit.JobFinished(
                job_id=job.id,
                kind=job.kind,
                status=job.status,
                revision_before=job.revision_before,
                revision_after=revision_after,
                plan_fingerprint=job.plan_fingerprint,
                sql_fingerprint=job.sql_fingerprint,
                backup_id=job.backup_id,
                error=error,
                outcome=audit.Outcome.SUCCESS
                if status is JobStatus.SUCCEEDED
                else audit.Outcome.FAILURE,
            ),
            requester(job),
            revision=revision_after,
        )
    return job


def request_cancel(rt: Runtime, job_id: int, actor: audit.Actor) -> Job:
    """Ask for a job to stop (the supervisor that runs it acts on it)."""
    with rt.transaction() as session:
        job = get(session, job_id)
        if not JobStatus(job.status).active:
            raise Conflict(f"job {job.id} has already {job.status}: there is nothing to cancel")
        if job.cancel_requested_at is None:
            job.cancel_requested_at = utcnow()
            job.cancel_requested_by = actor.name
            audit.record(session, audit.JobCancelRequested(job_id=job.id, kind=job.kind), actor)
    return job


# Recovery.


def _pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def recover(
    rt: Runtime,
    *,
    supervised: Callable[[int], bool] = lambda job_id: False,
    revision_now: Callable[[], str | None] | None = None,
) -> list[int]:
    """Mark jobs whose worker is gone as interrupted; returns their ids.

    Gone: on this host, a worker pid that no longer exists (and no supervisor here holds
    the job); anywhere, a heartbeat older than JOB_LEASE (another replica died).
    """
    lease = timedelta(seconds=rt.settings.job_lease)
    host = socket.gethostname()
    now = utcnow()
    with rt.reads() as session:
        candidates = list(session.scalars(select(Job).where(Job.status.in_(ACTIVE_JOB_STATUSES))))

    def is_gone(job: Job) -> bool:
        if supervised(job.id) or not JobStatus(job.status).active:
            return False
        seen = job.heartbeat_at or job.created_at
        local_dead = job.worker_host == host and not _pid_alive(job.worker_pid)
        return (job.status == JobStatus.RUNNING.value and local_dead) or now - seen > lease

    gone = [job for job in candidates if is_gone(job)]
    interrupted: list[int] = []
    for job in gone:
        revision = revision_now() if revision_now else None
        with rt.transaction() as session:
            fresh = get(session, job.id)
            # Looked at again under the write: its supervisor may have just renewed it.
            if not is_gone(fresh):
                continue
            reason = (
                f"worker {fresh.worker_pid} on {fresh.worker_host} is gone"
                if fresh.worker_pid
                else "the job never started"
            )
            fresh.status = JobStatus.INTERRUPTED.value
            fresh.finished_at = utcnow()
            fresh.revision_after = revision
            fresh.error = f"interrupted: {reason}"
            seq = last_seq(session, fresh.id) + 1
            session.add(
                JobLine(
                    job_id=fresh.id,
                    seq=seq,
                    created_at=utcnow(),
                    stream="runner",
                    level="error",
                    text=f"interrupted: {reason}; the database is at {revision or 'unknown'}",
                )
            )
            audit.record(
                session,
                audit.JobInterrupted(
                    job_id=fresh.id, kind=fresh.kind, revision_after=revision, reason=reason
                ),
                audit.Actor("system", None, Source(fresh.source)),
                revision=revision,
            )
        interrupted.append(job.id)
    return interrupted
