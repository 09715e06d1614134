"""Backup rows in the store: started, verified, failed, deleted; every change audited.

The worker writes these (a backup job, a migration's backup gate, a verify job), with the
job's requester as the actor, in the same transaction as the audit event; the supervisor
learns the backup's id from the worker's ``backup`` message and keeps it in jobs.backup_id.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from admin import audit
from admin.backups.conninfo import parse_target
from admin.backups.results import BackupFile, BackupFormat, Verification
from admin.config import Settings
from admin.errors import NotFound
from admin.migrations import target_key
from admin.runtime import Runtime
from admin.store.models import (
    ACTIVE_JOB_STATUSES,
    Backup,
    BackupStatus,
    Job,
    JobKind,
    utcnow,
)

REASONS = ("manual", "before-migrate", "before-restore", "scheduled", "before-rehearsal")
MIGRATION_KINDS = (JobKind.UPGRADE.value, JobKind.DOWNGRADE.value)
_MAX_ID = 2**63 - 1


def parse_id(value: object) -> int:
    """A backup id from a URL or a command line; NotFound for anything that cannot be one."""
    text = str(value).strip()
    if not text.isascii() or not text.isdigit() or len(text) > 19 or int(text) > _MAX_ID:
        raise NotFound(f"there is no backup {text[:40]!r}")
    return int(text)


def database_label(url: str) -> str:
    """The target's database as people name it: the PostgreSQL database, or the SQLite file."""
    target = parse_target(url)
    if target.is_sqlite:
        return target.sqlite_path.name
    return target.database


def format_for(url: str, fmt: str) -> BackupFormat:
    """The format a backup of ``url`` is written in (SQLite targets are always copied)."""
    return BackupFormat.SQLITE if parse_target(url).is_sqlite else BackupFormat.parse(fmt)


# Reading.


def get(session: Session, backup_id: int) -> Backup:
    backup = session.get(Backup, backup_id)
    if backup is None:
        raise NotFound(f"there is no backup {backup_id}")
    return backup


def for_target(session: Session, settings: Settings, *, limit: int = 200) -> list[Backup]:
    """This target's backups, newest first (deleted ones included: they are history)."""
    key = target_key(settings.database_url)
    query = select(Backup).where(Backup.target_key == key).order_by(Backup.id.desc()).limit(limit)
    return list(session.scalars(query))


def last_verified(session: Session, settings: Settings) -> Backup | None:
    key = target_key(settings.database_url)
    return session.scalar(
        select(Backup)
        .where(Backup.target_key == key, Backup.status == BackupStatus.VERIFIED.value)
        .order_by(Backup.id.desc())
        .limit(1)
    )


def jobs_of(session: Session, backup_id: int) -> list[Job]:
    """Jobs about this backup: the one that took it, migrations it protected, restores."""
    query = select(Job).where(Job.backup_id == backup_id).order_by(Job.id.desc()).limit(100)
    return list(session.scalars(query))


def active_jobs(session: Session) -> list[Job]:
    return list(session.scalars(select(Job).where(Job.status.in_(ACTIVE_JOB_STATUSES))))


def backup_of_job(job: Job) -> int | None:
    """The backup a job works on: its backup_id, or the one named in its options."""
    if job.backup_id is not None:
        return job.backup_id
    value = (job.options or {}).get("backup_id")
    return int(value) if isinstance(value, int | str) and str(value).isdigit() else None


def in_use(session: Session, backup_id: int) -> Job | None:
    """An active job that reads or writes this backup's file, if any."""
    for job in active_jobs(session):
        if backup_of_job(job) == backup_id:
            return job
    return None


def path_of(settings: Settings, backup: Backup) -> Path | None:
    return settings.backup_dir / backup.file_name if backup.file_name else None


# Changes (the worker's).


def start(
    rt: Runtime,
    job: Job,
    *,
    reason: str,
    fmt: BackupFormat,
    revision: str | None,
    actor: audit.Actor,
) -> int:
    """A backup row in status running; its id."""
    settings = rt.settings
    target = parse_target(settings.database_url)
    with rt.transaction() as session:
        backup = Backup(
            job_id=job.id,
            target_key=target_key(settings.database_url),
            target_display=settings.target_url_masked,
            dialect="sqlite" if target.is_sqlite else "postgresql",
            database_name=database_label(settings.database_url),
            format=fmt.value,
            revision=revision,
            reason=reason,
            status=BackupStatus.RUNNING.value,
            created_by=actor.name,
            created_at=utcnow(),
        )
        session.add(backup)
        session.flush()
        audit.record(
            session,
            audit.BackupStarted(
                backup_id=backup.id,
                job_id=job.id,
                reason=reason,
                format=fmt.value,
                revision=revision,
            ),
            actor,
            revision=revision,
        )
        return backup.id


def _facts(backup: Backup, taken: BackupFile | None) -> None:
    if taken is None:
        return
    backup.file_name = taken.file_name
    backup.format = taken.format.value
    backup.size_bytes = taken.size_bytes
    backup.sha256 = taken.sha256
    backup.duration_ms = taken.duration_ms
    backup.server_version = (taken.server_version or "")[:100] or None
    backup.tool_version = taken.tool_version[:100]


def verified(
    rt: Runtime,
    backup_id: int,
    check: Verification,
    actor: audit.Actor,
    *,
    job_id: int | None,
    taken: BackupFile | None = None,
) -> Backup:
    """The backup read back in full: status verified (again, for a verify job)."""
    with rt.transaction() as session:
        backup = get(session, backup_id)
        again = taken is None
        _facts(backup, taken)
        backup.status = BackupStatus.VERIFIED.value
        backup.error = None
        backup.found_sha256 = None
        backup.verify_ms = check.duration_ms
        backup.verified_at = utcnow()
        backup.server_version = backup.server_version or check.server_version
        backup.tool_version = backup.tool_version or check.tool_version
        audit.record(
            session,
            audit.BackupVerified(
                backup_id=backup.id,
                job_id=job_id,
                file_name=check.file_name,
                size_bytes=check.size_bytes,
                sha256=check.sha256,
                verify_ms=check.duration_ms,
                detail=check.detail,
                again=again,
            ),
            actor,
            revision=backup.revision,
        )
        return backup


def failed(
    rt: Runtime,
    backup_id: int,
    error: str,
    actor: audit.Actor,
    *,
    job_id: int | None,
    taken: BackupFile | None = None,
    file_removed: bool = False,
    found_sha256: str | None = None,
) -> None:
    """The backup is not usable: status failed (it never counts for the gate again).

    ``found_sha256``: the file no longer matches its checksum (listed as such everywhere).
    """
    with rt.transaction() as session:
        backup = get(session, backup_id)
        _facts(backup, taken)
        if file_removed:
            backup.file_name = None
        backup.status = BackupStatus.FAILED.value
        backup.error = error[:4000]
        if found_sha256 is not None:
            backup.found_sha256 = found_sha256
        audit.record(
            session,
            audit.BackupFailed(
                backup_id=backup.id, job_id=job_id, file_name=backup.file_name, error=error[:1000]
            ),
            actor,
            revision=backup.revision,
        )


def fail_abandoned(rt: Runtime, actor: audit.Actor) -> list[int]:
    """Mark backups still 'running' whose job has ended (a killed worker) as failed."""
    with rt.reads() as session:
        running = list(
            session.scalars(select(Backup).where(Backup.status == BackupStatus.RUNNING.value))
        )
        active = {job.id for job in active_jobs(session)}
    abandoned = [b for b in running if b.job_id is None or b.job_id not in active]
    for backup in abandoned:
        failed(
            rt,
            backup.id,
            "interrupted: its job ended before the backup was finished",
            actor,
            job_id=backup.job_id,
        )
    return [b.id for b in abandoned]


def mark_deleted(
    session: Session, backup: Backup, actor: audit.Actor, *, file_removed: bool
) -> None:
    """Record a deletion (the caller removes the file once this is committed)."""
    backup.status = BackupStatus.DELETED.value
    backup.deleted_at = utcnow()
    audit.record(
        session,
        audit.BackupDeleted(
            backup_id=backup.id, file_name=backup.file_name, file_removed=file_removed
        ),
        actor,
        revision=backup.revision,
    )


def file_changed(backup: Backup) -> bool:
    """A check found the backup's file different from the one that was taken."""
    return backup.found_sha256 is not None and backup.found_sha256 != backup.sha256


def ids(backups: Sequence[Backup]) -> list[int]:
    return [b.id for b in backups]
