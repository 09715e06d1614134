"""What the pages show of a job: derived values, the facts of its kind, its quick actions.

A migration shows its plan, steps and revisions; a backup its file, size, checksum and
verification; a restore its source backup, destination and safety backup; a stamp where it
moved the record from and to. Quick actions (*Roll back this job*, *Retry*) only ever open
a preview or a form: nothing here starts a job.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

from sqlalchemy.orm import Session

from admin import audit_query, migrations
from admin.backups import files, records
from admin.config import Settings
from admin.errors import AdminError
from admin.jobs import queue
from admin.runtime import Runtime
from admin.store.models import Backup, Job, JobKind, JobStatus, utcnow

MIGRATION_KINDS = (JobKind.UPGRADE, JobKind.DOWNGRADE)
MIGRATIONS = tuple(kind.value for kind in MIGRATION_KINDS)
BACKUP_KINDS = (JobKind.BACKUP.value, JobKind.VERIFY.value, JobKind.RESTORE.value)
# Jobs on the dashboard.
RECENT = 5


def duration_text(seconds: float | None) -> str:
    if seconds is None:
        return ""
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"


def revision_list(text: str | None) -> list[str]:
    """``a,b`` as stored in revision_before / revision_after; base (or nothing) is []."""
    if not text or text == "base":
        return []
    return [part for part in text.split(",") if part]


def preview_url(direction: str, target: str) -> str:
    return "/preview?" + urlencode({"direction": direction, "target": target})


@dataclass(frozen=True)
class QuickAction:
    """A link to the preview (or form) that does what its label says, after a review."""

    id: str
    label: str
    href: str
    note: str


def _rollback(job: Job) -> QuickAction | None:
    """The way back from a succeeded upgrade or downgrade: a preview of the reverse."""
    if job.kind not in MIGRATIONS or job.status != JobStatus.SUCCEEDED.value:
        return None
    before = revision_list(job.revision_before)
    if job.revision_before is None or len(before) > 1 or job.revision_before == job.revision_after:
        return None  # several heads before: no single revision to go back to
    target = before[0] if before else "base"
    direction = "downgrade" if job.kind == JobKind.UPGRADE.value else "upgrade"
    return QuickAction(
        "rollback-job",
        "Roll back this job",
        preview_url(direction, target),
        f"preview the {direction} back to {target}",
    )


def _retry(job: Job) -> QuickAction | None:
    """A failed or interrupted job asked again, through its preview or its form."""
    if job.status not in (JobStatus.FAILED.value, JobStatus.INTERRUPTED.value):
        return None
    options = job.options or {}
    if job.kind in MIGRATIONS and job.target_revision:
        href = preview_url(job.kind, job.target_revision)
        note = "preview it again from where the database stands now"
    elif job.kind == JobKind.BACKUP.value:
        href, note = "/backups#take-backup", "take a backup from the backups page"
    elif job.kind in (JobKind.RESTORE.value, JobKind.VERIFY.value) and options.get("backup_id"):
        anchor = "#restore" if job.kind == JobKind.RESTORE.value else ""
        href, note = f"/backups/{options['backup_id']}{anchor}", "from the backup's page"
    else:
        return None
    return QuickAction("retry-job", "Retry", href, note)


def quick_actions(job: Job) -> list[QuickAction]:
    return [action for action in (_rollback(job), _retry(job)) if action is not None]


@dataclass(frozen=True)
class JobView:
    """A job with the values its pages derive from it."""

    job: Job
    active: bool
    duration: str
    percent: int
    revisions_before: list[str]
    revisions_after: list[str]
    summary: str
    actions: list[QuickAction]

    @property
    def is_migration(self) -> bool:
        return self.job.kind in MIGRATIONS

    @property
    def moves_revision(self) -> bool:
        """Its revisions before/after are the target's (migrations, stamps, a restore over
        the target); a backup or a restore into a new database leaves the target as it was."""
        if self.job.kind == JobKind.RESTORE.value:
            return (self.job.options or {}).get("mode") == "replace"
        return self.job.kind in (*MIGRATIONS, JobKind.STAMP.value)

    @classmethod
    def of(cls, job: Job, now: datetime | None = None) -> JobView:
        active = JobStatus(job.status).active
        end = job.finished_at or (now or utcnow())
        seconds = (end - job.started_at).total_seconds() if job.started_at else None
        total = job.steps_total or 0
        percent = int(100 * job.steps_done / total) if total else (0 if active else 100)
        return cls(
            job=job,
            active=active,
            duration=duration_text(seconds),
            percent=max(0, min(100, percent)),
            revisions_before=revision_list(job.revision_before),
            revisions_after=revision_list(job.revision_after),
            summary=queue.describe(job),
            actions=[] if active else quick_actions(job),
        )


@dataclass(frozen=True)
class BackupFacts:
    """The backup a backup, verify or restore job is about, as its job page shows it."""

    backup: Backup
    size: str


@dataclass(frozen=True)
class RestoreFacts:
    """Where a restore went: the mode, the database it made (and its revision)."""

    mode: str
    requested_name: str | None
    database_name: str | None
    database_revision: str | None
    leftover_tables: list[str]
    safety_backup_id: int | None
    # The target's revision(s) before a restore over it (None until it has ended).
    target_before: list[str] | None


@dataclass(frozen=True)
class KindFacts:
    backup: BackupFacts | None = None
    restore: RestoreFacts | None = None


def _backup_facts(session: Session, backup_id: int | None) -> BackupFacts | None:
    if backup_id is None:
        return None
    backup = session.get(Backup, backup_id)
    if backup is None:
        return None
    size = files.human_size(backup.size_bytes) if backup.size_bytes is not None else ""
    return BackupFacts(backup, size)


def _restore_facts(session: Session, job: Job, source: int | None) -> RestoreFacts:
    options: dict[str, Any] = job.options or {}
    finished = audit_query.job_event(session, job.id, "restore-finished")
    details: dict[str, Any] = finished.details if finished is not None else {}
    safety = options.get("safety_backup_id")
    if safety is None and job.backup_id is not None and job.backup_id != source:
        safety = job.backup_id
    return RestoreFacts(
        mode=str(options.get("mode") or "new"),
        requested_name=options.get("new_database") or None,
        database_name=details.get("database_name"),
        database_revision=details.get("revision_after"),
        leftover_tables=list(details.get("leftover_tables") or []),
        safety_backup_id=int(safety) if safety is not None else None,
        target_before=revision_list(details["revision_before"])
        if details.get("revision_before")
        else None,
    )


def kind_facts(session: Session, job: Job) -> KindFacts:
    """What a job's kind adds to its page, read from the store."""
    if job.kind not in BACKUP_KINDS:
        return KindFacts()
    options = job.options or {}
    if job.kind == JobKind.BACKUP.value:
        return KindFacts(backup=_backup_facts(session, job.backup_id))
    source = records.parse_id(options["backup_id"]) if options.get("backup_id") else None
    restore = _restore_facts(session, job, source) if job.kind == JobKind.RESTORE.value else None
    return KindFacts(backup=_backup_facts(session, source), restore=restore)


def target_jobs_key(settings: Settings) -> str | None:
    """The key the panel's target's jobs are stored under (its one-active-job slot: the
    target's identity, as its server tells it), the one place pages look it up (the banner,
    the dashboard's running job and last migration); None while the server cannot say."""
    try:
        return migrations.identity_key(settings.database_url)
    except AdminError:
        return None


def recent_views(runtime: Runtime, limit: int = RECENT) -> list[JobView]:
    """The newest jobs (the dashboard's recent jobs)."""
    with runtime.reads() as session:
        jobs = queue.recent(session, limit=limit)
    now = utcnow()
    return [JobView.of(job, now) for job in jobs]
