"""Recovery: ending the record of a job nothing runs any more, and only then.

A job counts as gone when every proof of life fails:

- its owner: on this host, its process exists (a supervisor killed with the panel does
  not); elsewhere, its heartbeat is younger than JOB_LEASE;
- its worker: on this host, its process exists (and is a worker);
- the target: no session of the job's worker is on it (its application_name, which the
  migration lock's connection and the worker's own carry), asked on the job's target only.

A worker whose supervisor died takes the job over and records its own end
(``admin.jobs.orphan``): while it runs it is alive by the last two proofs, so recovery
leaves it alone. Declaring a job gone is a takeover (compare-and-set on its owner) in the
same transaction as the interrupted state, its last log line and its audit event; the
revision it records is read from the job's own target, or is said to be unknown, and why.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from admin import audit, migrations
from admin.errors import AdminError
from admin.jobs import ownership, queue
from admin.jobs.ownership import Owner
from admin.jobs.protocol import heads_text
from admin.runtime import Runtime
from admin.store.models import ACTIVE_JOB_STATUSES, Job, JobLine, JobStatus, Source, utcnow

log = logging.getLogger(__name__)


def pid_alive(pid: int | None, marker: str | None = None) -> bool:
    """A process with this pid exists here (and, when /proc tells, runs ``marker``)."""
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    if marker is None:
        return True
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
    except OSError:
        return True
    return marker.encode() in cmdline


def worker_label(job_id: int) -> str:
    """How a job's sessions on the target start their application_name."""
    return f"schema-admin job {job_id} ("


def _owner_alive(job: Job, lease: timedelta) -> str | None:
    owner = Owner.parse(job.owner)
    if owner is not None and owner.here:
        if owner.alive():
            return f"its owner, process {owner.pid} here, is alive"
        return None
    seen = job.heartbeat_at or job.created_at
    if utcnow() - seen <= lease:
        return "its heartbeat is recent"
    return None


def _worker_alive(rt: Runtime, job: Job, lease: timedelta) -> str | None:
    if job.worker_pid and job.worker_host == ownership.this_host():
        if pid_alive(job.worker_pid, "admin.jobs.worker"):
            return f"its worker, process {job.worker_pid} here, is alive"
        return None
    if not job.worker_pid:
        return None
    relation = target_of(rt, job)
    if relation == "unknown":
        return "the target cannot be asked which database it is, nor whether its worker is there"
    if relation == "other":
        # Another panel's target: only its lease, ten times over, ends it from here.
        seen = job.heartbeat_at or job.created_at
        if utcnow() - seen <= lease * 10:
            return "it runs on another target, whose panel is the one to end it"
        return None
    try:
        if migrations.lock.held_by(rt.settings.database_url, worker_label(job.id)):
            return "its worker is still on the target"
    except AdminError as exc:
        # The target does not answer: nothing proves the worker gone either.
        return f"the target cannot be asked whether its worker is there ({exc})"
    return None


def target_of(rt: Runtime, job: Job) -> str:
    """Whether the job's target is this process's ("ours"), another one ("other"), or
    cannot be told now ("unknown": the server does not say which database it is)."""
    try:
        ours = migrations.identity_key(rt.settings.database_url)
    except AdminError:
        return "unknown"
    return "ours" if job.target_key == ours else "other"


def revision_of(rt: Runtime, job: Job) -> tuple[str | None, str | None]:
    """(revision, None) read from the job's target, or (None, why it is unknown)."""
    relation = target_of(rt, job)
    if relation != "ours":
        return None, (
            "this panel manages another database than the job's target"
            if relation == "other"
            else "the target does not answer"
        )
    try:
        project = migrations.open_project(rt.settings.alembic_config, rt.settings.cache_dir)
        return heads_text(migrations.read_current(project, rt.settings.database_url)[1]), None
    except AdminError as exc:
        return None, f"the target cannot be read: {exc}"


def _why_alive(rt: Runtime, job: Job, lease: timedelta) -> str | None:
    if job.status == JobStatus.QUEUED.value and job.owner is None:
        return None if utcnow() - job.created_at > lease else "it was queued just now"
    return _owner_alive(job, lease) or _worker_alive(rt, job, lease)


def recover(rt: Runtime, *, supervised: Callable[[int], bool] = lambda job_id: False) -> list[int]:
    """Declare interrupted every active job nothing runs any more; returns their ids."""
    lease = timedelta(seconds=rt.settings.job_lease)
    with rt.reads() as session:
        candidates = list(session.scalars(select(Job).where(Job.status.in_(ACTIVE_JOB_STATUSES))))
    ended: list[int] = []
    for job in candidates:
        if supervised(job.id) or _why_alive(rt, job, lease) is not None:
            continue
        if _interrupt(rt, job, lease):
            ended.append(job.id)
    return ended


class _Renewed(Exception):
    """The job's heartbeat moved while recovery looked: its owner is alive after all."""


def _interrupt(rt: Runtime, job: Job, lease: timedelta) -> bool:
    revision, unknown = revision_of(rt, job)
    me = Owner.new("recovery")
    try:
        with rt.transaction() as session:
            return _end(session, job, me, revision, unknown)
    except _Renewed:
        return False


def _end(session: Session, job: Job, me: Owner, revision: str | None, unknown: str | None) -> bool:
    # Under the write (the row locked): its owner may have changed or renewed it meanwhile.
    if not ownership.take_over(session.connection(), job.id, job.owner, me):
        return False
    fresh = queue.get(session, job.id)
    session.refresh(fresh)
    if fresh.heartbeat_at != job.heartbeat_at:
        raise _Renewed()
    if fresh.worker_pid:
        reason = (
            f"worker {fresh.worker_pid} on {fresh.worker_host} is gone, and so is "
            f"{ownership.describe(job.owner)} that supervised it"
        )
    else:
        reason = "it never started (the process that queued it is gone)"
    where = revision or f"unknown ({unknown})"
    fresh.status = JobStatus.INTERRUPTED.value
    fresh.finished_at = utcnow()
    fresh.revision_after = revision
    fresh.error = f"interrupted: {reason}"
    session.add(
        JobLine(
            job_id=fresh.id,
            seq=queue.last_seq(session, fresh.id) + 1,
            created_at=utcnow(),
            stream="runner",
            level="error",
            text=f"interrupted: {reason}; the database is at {where}",
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
    log.warning("job %s was interrupted: %s", job.id, reason, extra={"job_id": job.id})
    return True
