"""What people ask of backups (the panel's pages and the CLI): jobs to request, downloads,
deletions, and start-up housekeeping. Checks and refusals live here, not in the routes.

Backups, verifications and restores run as jobs (``admin.backups.handlers`` in a worker);
this module only builds and checks their requests. Refusals decided here are audited here.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from admin import audit
from admin.backups import records
from admin.backups.conninfo import parse_target
from admin.backups.files import check_backup_dir, delete_backup_file, remove_partials, safe_path
from admin.backups.handlers import restorable
from admin.backups.restores import check_database_name
from admin.backups.results import BackupFormat, RestoreMode
from admin.backups.sqlite import check_file_name
from admin.config import Settings
from admin.errors import AdminError, Conflict, InvalidInput, NotFound, PermissionDenied
from admin.jobs.queue import JobRequest
from admin.runtime import Runtime
from admin.store.models import Backup, BackupStatus, JobKind, Role

log = logging.getLogger(__name__)

# Reasons a person (or a scheduler) may give; "before-migrate" is the gate's own.
REQUESTABLE_REASONS = ("manual", "scheduled")


def refused(
    rt: Runtime, actor: audit.Actor, error: AdminError, *, request: str, backup_id: int | None
) -> None:
    """Audit a refused backup / verify / delete request (in its own transaction)."""
    with rt.transaction() as session:
        audit.record(
            session,
            audit.BackupRefused(backup_id=backup_id, request=request, reason=str(error)[:1000]),
            actor,
        )


def backup_request(settings: Settings, *, fmt: str | None, reason: str = "manual") -> JobRequest:
    """A backup job's request: the format (default BACKUP_FORMAT) and why."""
    reason = (reason or "manual").strip().lower()
    if reason not in REQUESTABLE_REASONS:
        raise InvalidInput(
            f"unknown reason {reason[:40]!r}: expected {' or '.join(REQUESTABLE_REASONS)}"
        )
    chosen = BackupFormat.parse(fmt or settings.backup_format)
    if chosen is BackupFormat.SQLITE and not parse_target(settings.database_url).is_sqlite:
        raise InvalidInput("the target is PostgreSQL: choose the custom or plain format")
    return JobRequest(JobKind.BACKUP, options={"format": chosen.value, "reason": reason})


def checked_backup_request(
    rt: Runtime, actor: audit.Actor, *, fmt: str | None, reason: str = "manual"
) -> JobRequest:
    """``backup_request``, with a refusal audited."""
    try:
        return backup_request(rt.settings, fmt=fmt, reason=reason)
    except InvalidInput as error:
        refused(rt, actor, error, request="backup", backup_id=None)
        raise


def verify_request(rt: Runtime, backup_id: int) -> JobRequest:
    """A job that reads a backup back in full again."""
    with rt.reads() as session:
        backup = records.get(session, backup_id)
    if backup.status in (BackupStatus.DELETED.value, BackupStatus.RUNNING.value):
        raise Conflict(f"backup {backup.id} is {backup.status}: there is nothing to verify")
    if not backup.file_name:
        raise Conflict(f"backup {backup.id} has no file: it failed before one was written")
    return JobRequest(JobKind.VERIFY, options={"backup_id": backup.id})


@dataclass(frozen=True)
class RestoreAsk:
    """A restore as a form or the command line asks for it."""

    backup_id: int
    mode: str = RestoreMode.NEW.value
    new_database: str | None = None
    confirm: str = ""


def confirmation_name(settings: Settings) -> str:
    """What a person types to confirm a restore: the target database's name."""
    return records.database_label(settings.database_url)


def restore_request(rt: Runtime, ask: RestoreAsk, actor: audit.Actor) -> JobRequest:
    """A restore job's request, once the backup, the mode and the confirmation are right.

    Production: only admins may restore from the panel (a command-line actor has shell
    access to the host and no panel role). Refusals are audited (RestoreRefused).
    """
    settings = rt.settings
    if settings.is_production and actor.role is not None and actor.role != Role.ADMIN.value:
        raise PermissionDenied(
            "In production only an admin may restore a backup; you have the "
            f"{actor.role} role. Ask an admin.",
            title="Not allowed for your role",
        )
    try:
        mode = RestoreMode.parse(ask.mode)
        with rt.reads() as session:
            backup = records.get(session, ask.backup_id)
        if (problem := restorable(settings, backup)) is not None:
            raise InvalidInput(problem)
        assert backup.file_name is not None
        safe_path(settings.backup_dir, backup.file_name)
        new_database = (ask.new_database or "").strip() or None
        if new_database is not None:
            if mode is RestoreMode.REPLACE:
                raise InvalidInput("a new database name goes with a restore into a new database")
            if parse_target(settings.database_url).is_sqlite:
                check_file_name(new_database)
            else:
                check_database_name(new_database)
        expected = confirmation_name(settings)
        if ask.confirm.strip() != expected:
            raise InvalidInput(
                f"type the target database's name, {expected}, exactly to confirm the restore"
                + (f" (you typed {ask.confirm.strip()[:80]!r})" if ask.confirm.strip() else "")
            )
    except (InvalidInput, NotFound) as error:
        _refused(rt, ask, actor, error)
        raise
    return JobRequest(
        JobKind.RESTORE,
        options={"backup_id": backup.id, "mode": mode.value, "new_database": new_database},
    )


def _refused(rt: Runtime, ask: RestoreAsk, actor: audit.Actor, error: AdminError) -> None:
    with rt.transaction() as session:
        audit.record(
            session,
            audit.RestoreRefused(backup_id=ask.backup_id, mode=ask.mode[:16], reason=str(error)),
            actor,
        )


def open_download(rt: Runtime, backup_id: int, actor: audit.Actor) -> tuple[Path, str]:
    """The file of a backup for a download (audited); NotFound when there is none."""
    with rt.transaction() as session:
        backup = records.get(session, backup_id)
        if backup.status in (BackupStatus.DELETED.value, BackupStatus.RUNNING.value):
            raise NotFound(f"backup {backup.id} is {backup.status}: there is no file to download")
        if not backup.file_name:
            raise NotFound(f"backup {backup.id} has no file")
        path = safe_path(rt.settings.backup_dir, backup.file_name)
        size = path.stat().st_size
        audit.record(
            session,
            audit.BackupDownloaded(
                backup_id=backup.id, file_name=backup.file_name, size_bytes=size
            ),
            actor,
            revision=backup.revision,
        )
    return path, backup.file_name


def delete(rt: Runtime, backup_id: int, actor: audit.Actor, *, confirmed: bool) -> Backup:
    """Delete a backup's file; its row stays as history (status deleted).

    ``confirmed``: the person ticked (or typed) that the file goes for good; without it the
    request is refused with a 400 and audited.
    """
    settings = rt.settings
    if not confirmed:
        error = InvalidInput(
            f"tick the box to confirm that backup {backup_id}'s file is to be deleted for good"
        )
        refused(rt, actor, error, request="delete", backup_id=backup_id)
        raise error
    with rt.transaction() as session:
        backup = records.get(session, backup_id)
        if backup.status == BackupStatus.DELETED.value:
            raise Conflict(f"backup {backup.id} was already deleted")
        if backup.status == BackupStatus.RUNNING.value:
            raise Conflict(f"backup {backup.id} is still being taken: cancel its job first")
        if (job := records.in_use(session, backup.id)) is not None:
            raise Conflict(
                f"job {job.id} ({job.kind}) is using backup {backup.id}: wait for it to finish"
            )
        path = records.path_of(settings, backup)
        exists = path is not None and path.is_file()
        records.mark_deleted(session, backup, actor, file_removed=exists)
    if backup.file_name and exists:
        delete_backup_file(settings.backup_dir, backup.file_name)
    return backup


def prepare(rt: Runtime, actor: audit.Actor) -> str | None:
    """Start-up housekeeping; returns why BACKUP_DIR is unusable (logged), or None.

    Partial files a killed worker left are removed only when no job is active anywhere
    (another replica may be writing one into a shared BACKUP_DIR); backup rows left
    'running' by a job that has ended are marked failed.
    """
    backup_dir = rt.settings.backup_dir
    problem = check_backup_dir(backup_dir)
    if problem is not None:
        log.warning("backups cannot be taken: %s", problem)
    try:
        with rt.reads() as session:
            busy = bool(records.active_jobs(session))
        if not busy and (removed := remove_partials(backup_dir)):
            log.warning(
                "removed %d partial backup file(s) a stopped job left in %s: %s",
                len(removed),
                backup_dir,
                ", ".join(removed),
            )
        records.fail_abandoned(rt, actor)
    except (OSError, AdminError) as exc:
        log.warning("backup housekeeping at start-up failed: %s", exc)
    return problem


def dir_problem(settings: Settings) -> str | None:
    """Why backups cannot be written now (shown on the backups page), or None."""
    return check_backup_dir(settings.backup_dir)
