"""Retention: keep the last BACKUP_KEEP_LAST verified backups and/or those of the last
BACKUP_KEEP_DAYS days; prune the rest (files removed, rows marked deleted, one audit event).

A backup is kept when any rule keeps it: it is among the newest N verified ones, or it
is younger than D days, or it protected an upgrade or downgrade of the last D days (the
evidence of a migration stays restorable as long as the migration is recent), or an active
job reads it. A failed backup never counts towards N; its file is kept only by age. With
both settings 0 nothing is pruned. Only this target's backups are considered, and only
files the store knows: anything else in BACKUP_DIR is left alone.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from admin import audit
from admin.backups import records
from admin.backups.files import delete_backup_file
from admin.config import Settings
from admin.errors import AdminError
from admin.migrations import target_key
from admin.runtime import Runtime
from admin.store.models import Backup, BackupStatus, Job, utcnow


@dataclass(frozen=True)
class Pruned:
    """What a prune removed (or, for a dry run, would remove)."""

    backup_ids: tuple[int, ...]
    file_names: tuple[str, ...]
    dry_run: bool = False

    def __bool__(self) -> bool:
        return bool(self.backup_ids)


def policy(settings: Settings) -> str:
    """The rule in words, for pages and logs."""
    rules = []
    if settings.backup_keep_last:
        rules.append(f"the last {settings.backup_keep_last} verified backups")
    if settings.backup_keep_days:
        rules.append(f"backups of the last {settings.backup_keep_days} days")
    if not rules:
        return "every backup is kept (BACKUP_KEEP_LAST=0 and BACKUP_KEEP_DAYS=0)"
    return "kept: " + " and ".join(rules) + ", and any backup that protected a recent migration"


def doomed(session: Session, settings: Settings, now: datetime | None = None) -> list[Backup]:
    """The backups the rules no longer keep, newest first."""
    keep_last, keep_days = settings.backup_keep_last, settings.backup_keep_days
    if not keep_last and not keep_days:
        return []
    now = now or utcnow()
    cutoff = now - timedelta(days=keep_days) if keep_days else None
    candidates = session.scalars(
        select(Backup)
        .where(
            Backup.target_key == target_key(settings.database_url),
            Backup.status.in_((BackupStatus.VERIFIED.value, BackupStatus.FAILED.value)),
            Backup.file_name.is_not(None),
        )
        .order_by(Backup.id.desc())
    ).all()
    protected: set[int] = set()
    if cutoff is not None:
        protected = {
            backup_id
            for backup_id in session.scalars(
                select(Job.backup_id).where(
                    Job.kind.in_(records.MIGRATION_KINDS),
                    Job.backup_id.is_not(None),
                    Job.created_at >= cutoff,
                )
            )
            if backup_id is not None
        }
    busy = {records.backup_of_job(job) for job in records.active_jobs(session)}
    verified_seen = 0
    result = []
    for backup in candidates:
        keep = backup.id in protected or backup.id in busy
        if backup.status == BackupStatus.VERIFIED.value:
            verified_seen += 1
            keep = keep or (keep_last > 0 and verified_seen <= keep_last)
        if cutoff is not None and backup.created_at >= cutoff:
            keep = True
        if not keep:
            result.append(backup)
    return result


def prune(
    rt: Runtime,
    actor: audit.Actor,
    *,
    job_id: int | None = None,
    dry_run: bool = False,
    on_line: Callable[[str], None] = lambda line: None,
) -> Pruned:
    """Apply the rules: rows marked deleted with one BackupsPruned event, then files removed.

    The store is changed first: a file left behind by a failed unlink is harmless, a row
    that still counts a removed file would not be.
    """
    settings = rt.settings
    with rt.transaction() as session:
        gone = doomed(session, settings)
        found = Pruned(
            tuple(b.id for b in gone), tuple(b.file_name or "" for b in gone), dry_run=dry_run
        )
        if dry_run or not gone:
            return found  # nothing was changed: the empty transaction commits nothing
        now = utcnow()
        for backup in gone:
            backup.status = BackupStatus.DELETED.value
            backup.deleted_at = now
        audit.record(
            session,
            audit.BackupsPruned(
                backup_ids=list(found.backup_ids),
                file_names=list(found.file_names),
                keep_last=settings.backup_keep_last,
                keep_days=settings.backup_keep_days,
                job_id=job_id,
            ),
            actor,
        )
    for name in found.file_names:
        try:
            delete_backup_file(settings.backup_dir, name)
        except (OSError, AdminError) as exc:
            on_line(f"warning: could not remove {name}: {exc}")
    on_line(
        f"retention: pruned {len(found.backup_ids)} old backup(s) "
        f"({', '.join(found.file_names)}); {policy(settings)}"
    )
    return found
