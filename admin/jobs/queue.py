"""Job records in the store: submit, follow, finish, cancel, recover (each change audited)."""

from __future__ import annotations

import socket
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, NoReturn

from sqlalchemy import Connection, func, insert, select, update
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.orm import Session

from admin import audit, migrations
from admin.analysis import applied as applied_files
from admin.analysis import gate as safety_gate
from admin.errors import AdminError, Conflict, InvalidInput, NotFound
from admin.jobs import ownership, wakeup
from admin.jobs.ownership import NotOwner, Owner
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
# Kinds that run a plan from where the target stands (a rehearsal: on a copy of it).
PLANNED_KINDS = (*MIGRATION_KINDS, JobKind.STAMP, JobKind.REHEARSAL)


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
    return migrations.open_project(rt.settings.alembic_config, rt.settings.cache_dir)


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
    # A target no revision can be is refused before anything is read.
    target = migrations.check_target(request.target_revision or "")
    project = project_of(rt)
    url = rt.settings.database_url
    _, current = migrations.read_current(project, url)
    if request.kind is JobKind.STAMP:
        if target not in ("head", "heads", "base") and "@" not in target:
            project.graph(max_age=0).get(target)
        return None, current
    direction = (
        migrations.Direction.DOWNGRADE
        if request.kind is JobKind.DOWNGRADE
        else migrations.Direction.UPGRADE
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
    # A busy target is refused first: before the revision files are read, and before a
    # plan made while the other job moves the database could pass for a changed one.
    try:
        key = migrations.identity_key(settings.database_url)
        check_free(rt)
    except AdminError as refused:  # busy, or a target that cannot say what it is
        _refuse(rt, request, actor, refused)
    rehearsal_id: int | None = None
    try:
        if request.kind in PLANNED_KINDS:
            plan, current = _plan(rt, request)
        if request.kind is JobKind.UPGRADE and plan is not None:
            from admin.rehearsal.gate import clearing  # REQUIRE_REHEARSAL

            rehearsal_id = clearing(rt, project_of(rt), plan, actor.source)
    except AdminError as error:
        _refuse(rt, request, actor, error)
    options = dict(request.options)
    if rehearsal_id is not None:
        options["rehearsal_id"] = rehearsal_id

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
                revision_before=heads_text(current) if request.kind in PLANNED_KINDS else None,
                options=options or None,
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
                    rehearsal_id=rehearsal_id,
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
    return _busy_error(running)


def check_free(rt: Runtime) -> None:
    """Conflict naming the job that is active on this target, if one is."""
    with rt.reads() as session:
        running = active(session, migrations.identity_key(rt.settings.database_url))
    if running is not None:
        raise _busy_error(running)


def _busy_error(running: Job) -> Conflict:
    return Conflict(
        f"job {running.id} ({describe(running)}, started by {running.requested_by} via "
        f"{running.source}) is {running.status} on this database: wait for it to finish or "
        "cancel it",
        title="Another job is running",
    )


def describe(job: Job) -> str:
    """What a job does in a few words, by kind: ``upgrade to head``, ``backup``,
    ``restore of backup 3 into a new database`` (pages, refusals, the CLI)."""
    options = job.options or {}
    if job.kind == JobKind.BACKUP.value:
        return "backup"  # its format is the backup's own (a SQLite target is copied)
    if job.kind == JobKind.VERIFY.value:
        return f"verification of backup {options.get('backup_id', '?')}"
    if job.kind == JobKind.RESTORE.value:
        where = "over the target" if options.get("mode") == "replace" else "into a new database"
        return f"restore of backup {options.get('backup_id', '?')} {where}"
    if job.kind == JobKind.REHEARSAL.value:
        return f"rehearsal of the upgrade to {job.target_revision or 'heads'} on a copy"
    return f"{job.kind} to {job.target_revision or 'heads'}"


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


def latest(session: Session, target: str, kinds: Sequence[JobKind]) -> Job | None:
    """The newest job of one of ``kinds`` on a target (the dashboard's last migration)."""
    return session.scalar(
        select(Job)
        .where(Job.target_key == target, Job.kind.in_([kind.value for kind in kinds]))
        .order_by(Job.id.desc())
        .limit(1)
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


def matching_seqs(session: Session, job_id: int, text: str, limit: int) -> list[int]:
    """The numbers of the first ``limit`` lines that contain ``text``, whatever its case
    (on SQLite, ASCII letters only)."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return list(
        session.scalars(
            select(JobLine.seq)
            .where(JobLine.job_id == job_id, JobLine.text.ilike(f"%{escaped}%", escape="\\"))
            .order_by(JobLine.seq)
            .limit(limit)
        )
    )


def last_seq(session: Session, job_id: int) -> int:
    return session.scalar(select(func.max(JobLine.seq)).where(JobLine.job_id == job_id)) or 0


# Changes made by the supervisor.


def claim(rt: Runtime, job_id: int, owner: Owner) -> None:
    """``owner`` (a supervisor about to start the worker) takes the queued job."""
    with rt.transaction() as session:
        job = get(session, job_id)
        if job.owner is not None or job.status != JobStatus.QUEUED.value:
            raise NotOwner(
                f"job {job_id} is {job.status} and owned by {ownership.describe(job.owner)}: "
                "it is not started twice"
            )
        job.owner = str(owner)
        job.heartbeat_at = utcnow()


def mark_started(rt: Runtime, job_id: int, pid: int, owner: Owner) -> Job:
    with rt.transaction() as session:
        ownership.check(session.connection(), job_id, owner)
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

    def __init__(self, rt: Runtime, job_id: int, owner: Owner) -> None:
        self.rt = rt
        self.job_id = job_id
        self.owner = owner
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
                    # Only the job's owner writes: a former one finds another name here.
                    ownership.check(connection, self.job_id, self.owner)
                    if rows:
                        connection.execute(insert(JobLine), rows)
                        wakeup.announce(connection, self.job_id, first_seq + len(rows) - 1)
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


def heartbeat(rt: Runtime, job_id: int, owner: Owner) -> bool:
    """Renew the job's lease (NotOwner when another process owns it now); True when
    someone asked to cancel it."""
    with rt.transaction() as session:
        renewed = session.execute(
            update(Job)
            .where(Job.id == job_id, Job.owner == str(owner), Job.status.in_(ACTIVE_JOB_STATUSES))
            .values(heartbeat_at=utcnow())
        )
        if renewed.rowcount != 1:  # type: ignore[attr-defined]
            ownership.check(session.connection(), job_id, owner)
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
    owner: Owner | None = None,
    steps_done: int | None = None,
) -> Job:
    """Record the job's end (its owner only, when ``owner`` is given) and audit it."""
    with rt.transaction() as session:
        if owner is not None:
            ownership.check(session.connection(), job_id, owner)
        job = get(session, job_id)
        if steps_done is not None:
            job.steps_done = steps_done
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
