"""Backup, verify and restore jobs, as the worker runs them (``admin.jobs.worker`` registers
these handlers and the gate).

Each handler writes its Backup row in the store (``records``) with the job's requester as
the actor, tells the supervisor the backup's id (a ``backup`` message: jobs.backup_id), and
passes every line of pg_dump / pg_restore / psql on to the job's log. While a program runs,
SIGTERM (a cancel) only asks it to stop, so its partial file is removed before the worker
unwinds; the worker's own SIGTERM handler then ends the job as cancelled.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import TYPE_CHECKING

from admin import audit, backups, migrations
from admin.backups import records, retention
from admin.backups.conninfo import parse_target
from admin.backups.errors import BackupFailed
from admin.backups.results import BackupFile, RestoreMode, RestoreResult
from admin.config import Settings
from admin.errors import AdminError, InvalidInput
from admin.jobs.protocol import Emitter, Message, heads_text
from admin.jobs.queue import requester
from admin.store.models import Backup, BackupStatus, JobKind, Source

if TYPE_CHECKING:
    from admin.jobs.worker import Context

SUCCEEDED = 0  # the worker's exit code for a job that succeeded


class StopFlag:
    """``should_stop`` for the library: set by SIGTERM while a program runs."""

    def __init__(self) -> None:
        self.requested = False

    def __call__(self) -> bool:
        return self.requested


@contextmanager
def sigterm_stops() -> Iterator[StopFlag]:
    """Inside the block SIGTERM sets the flag instead of raising at an arbitrary point.

    On leaving, a SIGTERM that arrived is handed to the handler that was there before (the
    worker's, which raises Cancelled), so the job still ends as cancelled, but only after
    the library has stopped its program and removed what it was writing.
    """
    flag = StopFlag()
    if threading.current_thread() is not threading.main_thread():
        yield flag  # signals reach only the main thread; nothing to install
        return

    def on_sigterm(signum: int, frame: object) -> None:
        flag.requested = True

    previous = signal.signal(signal.SIGTERM, on_sigterm)
    try:
        yield flag
    finally:
        signal.signal(signal.SIGTERM, previous)
        if flag.requested and callable(previous):
            previous(signal.SIGTERM, None)


def sink(out: Emitter) -> Callable[[str], None]:
    """The library's lines as job log lines, at a level a reader can filter on."""

    def on_line(line: str) -> None:
        lowered = line.lower()
        if line.startswith("progress:"):
            out.send(Message("progress", line, "info"))
        elif "error:" in lowered or "fatal:" in lowered:
            out.log(line, "error")
        elif "warning:" in lowered:
            out.log(line, "warning")
        else:
            out.log(line)

    return on_line


def read_revision(settings: Settings, url: str | None = None) -> str:
    """The Alembic revision(s) a database is at ('base' when none is applied)."""
    project = migrations.open_project(settings.alembic_config, settings.cache_dir)
    _, heads = migrations.read_current(project, url or settings.database_url)
    return heads_text(heads)


def _revision_or_none(ctx: Context, url: str | None = None) -> str | None:
    try:
        return read_revision(ctx.settings, url)
    except AdminError as exc:
        ctx.out.log(f"warning: the database's revision cannot be read: {exc}", "warning")
        return None


# The reason recorded on the backup a restore over the target takes first.
SAFETY_REASON = "before-restore"


def _announce(ctx: Context, backup_id: int, text: str) -> None:
    ctx.out.send(Message("backup", text, "info", {"backup_id": backup_id}))


def take_and_verify(ctx: Context, *, reason: str, fmt: str) -> tuple[int, str | None]:
    """Take a backup of the target and read it back in full; (backup id, revision).

    The caller holds the migration lock, so the revision read here is the one the dump
    has. Any failure marks the row failed and is raised (a BackupError says why); a
    cancelled backup keeps no file at all. Retention runs after a verified backup.
    """
    settings, out = ctx.settings, ctx.out
    actor = requester(ctx.job)
    backup_format = records.format_for(settings.database_url, fmt)
    records.fail_abandoned(ctx.runtime, audit.Actor("system", None, Source(ctx.job.source)))
    revision = _revision_or_none(ctx)
    backup_id = records.start(
        ctx.runtime, ctx.job, reason=reason, fmt=backup_format, revision=revision, actor=actor
    )
    _announce(
        ctx,
        backup_id,
        f"backup {backup_id} ({reason}) of {settings.target_url_masked} at revision "
        f"{revision or 'unknown'}",
    )
    on_line = sink(out)
    taken: BackupFile | None = None
    try:
        with sigterm_stops() as stop:
            taken = backups.take(
                settings.database_url,
                settings.backup_dir,
                fmt=backup_format,
                lock_wait_timeout=settings.backup_lock_wait_timeout,
                pg_bin_dir=settings.pg_bin_dir,
                on_line=on_line,
                should_stop=stop,
            )
            check = backups.verify(
                taken.path,
                taken.format,
                pg_bin_dir=settings.pg_bin_dir,
                on_line=on_line,
                expected_sha256=taken.sha256,
                should_stop=stop,
            )
    except BaseException as exc:
        _record_failure(ctx, backup_id, exc, taken)
        raise
    records.verified(ctx.runtime, backup_id, check, actor, job_id=ctx.job.id, taken=taken)
    out.log(
        f"backup {backup_id} verified: {taken.file_name}, "
        f"{backups.files.human_size(taken.size_bytes)}, taken in {taken.duration_ms / 1000:.1f}s, "
        f"read back in {check.duration_ms / 1000:.1f}s"
    )
    try:
        retention.prune(ctx.runtime, actor, job_id=ctx.job.id, on_line=on_line)
    except (AdminError, OSError) as exc:
        out.log(f"warning: retention did not run: {exc}", "warning")
    return backup_id, revision


def _record_failure(
    ctx: Context, backup_id: int, exc: BaseException, taken: BackupFile | None
) -> None:
    """Mark the row failed; a cancelled backup's finished file is removed as well."""
    cancelled = not isinstance(exc, Exception) or isinstance(exc, backups.BackupCancelled)
    removed = False
    if cancelled and taken is not None:
        removed = backups.delete_backup_file(ctx.settings.backup_dir, taken.file_name)
    error = "cancelled on request; no file was kept" if cancelled else str(exc)
    if not isinstance(exc, AdminError) and not cancelled:
        error = f"{type(exc).__name__}: {exc}"
    records.failed(
        ctx.runtime,
        backup_id,
        error,
        requester(ctx.job),
        job_id=ctx.job.id,
        taken=taken,
        file_removed=removed,
        found_sha256=exc.found if isinstance(exc, backups.ChecksumMismatch) else None,
    )
    if not cancelled:
        ctx.out.log(f"backup {backup_id} is marked failed: it never counts", "warning")


def _lock(ctx: Context) -> AbstractContextManager[None]:
    settings = ctx.settings
    ctx.out.log(f"taking the migration lock on {settings.target_url_masked}")
    return migrations.migration_lock(
        settings.database_url, wait=settings.migration_lock_wait, owner=ctx.lock_owner
    )


def run_backup(ctx: Context) -> int:
    """A backup job: under the migration lock (no migration moves the revision meanwhile)."""
    options = ctx.job.options or {}
    reason = str(options.get("reason") or "manual")
    fmt = str(options.get("format") or ctx.settings.backup_format)
    with _lock(ctx):
        ctx.out.log("lock taken")
        backup_id, revision = take_and_verify(ctx, reason=reason, fmt=fmt)
    ctx.out.result("succeeded", revision_after=revision, backup_id=backup_id)
    return SUCCEEDED


def _load(ctx: Context) -> Backup:
    options = ctx.job.options or {}
    backup_id = records.parse_id(options.get("backup_id", ""))
    _announce(ctx, backup_id, f"backup {backup_id}")
    with ctx.runtime.reads() as session:
        backup = records.get(session, backup_id)
        session.expunge(backup)
    return backup


def run_verify(ctx: Context) -> int:
    """Read a backup back in full again; a backup that fails is marked failed."""
    settings, out = ctx.settings, ctx.out
    backup = _load(ctx)
    actor = requester(ctx.job)
    if backup.status == BackupStatus.DELETED.value or not backup.file_name:
        raise InvalidInput(f"backup {backup.id} has no file to verify ({backup.status})")
    path = backups.safe_path(settings.backup_dir, backup.file_name, must_exist=False)
    out.log(f"verifying backup {backup.id} ({backup.file_name}) again")
    with sigterm_stops() as stop:
        try:
            check = backups.verify(
                path,
                backup.format,
                pg_bin_dir=settings.pg_bin_dir,
                on_line=sink(out),
                expected_sha256=backup.sha256,
                should_stop=stop,
            )
        except backups.VerificationFailed as exc:
            if not stop():  # a cancelled check is no verdict on the file
                _mark_failed(ctx, backup.id, exc)
            raise
    records.verified(ctx.runtime, backup.id, check, actor, job_id=ctx.job.id)
    out.log(f"backup {backup.id} verified again in {check.duration_ms / 1000:.1f}s")
    out.result("succeeded", backup_id=backup.id)
    return SUCCEEDED


def _mark_failed(ctx: Context, backup_id: int, exc: backups.VerificationFailed) -> None:
    """A check of a recorded backup failed: it no longer counts (a changed file says so)."""
    found = exc.found if isinstance(exc, backups.ChecksumMismatch) else None
    records.failed(
        ctx.runtime, backup_id, str(exc), requester(ctx.job), job_id=ctx.job.id, found_sha256=found
    )
    why = "its file no longer matches its checksum" if found else "it no longer counts"
    ctx.out.log(f"backup {backup_id} is marked failed: {why}", "error")


def restored_url(settings: Settings, result: RestoreResult) -> str:
    """The URL of the database a restore went into (the target itself for replace)."""
    if result.mode is RestoreMode.REPLACE:
        return settings.database_url
    target = parse_target(settings.database_url)
    if target.is_sqlite:
        return f"sqlite:///{result.database_name}"
    return target.url.set(database=result.database_name).render_as_string(hide_password=False)


def run_restore(ctx: Context) -> int:
    """Restore a verified backup into a new database (default) or over the target."""
    settings, out = ctx.settings, ctx.out
    options = ctx.job.options or {}
    mode = RestoreMode.parse(str(options.get("mode") or "new"))
    new_database = options.get("new_database") or None
    backup = _load(ctx)
    actor = requester(ctx.job)
    before = _revision_or_none(ctx)
    result: RestoreResult | None = None
    after: str | None = None
    try:
        problem = restorable(settings, backup)
        if problem is not None:
            raise InvalidInput(problem)
        assert backup.file_name is not None
        path = backups.safe_path(settings.backup_dir, backup.file_name)
        out.log(
            f"restoring backup {backup.id} ({backup.file_name}, revision "
            f"{backup.revision or 'unknown'}) {'over' if mode is RestoreMode.REPLACE else 'beside'}"
            f" {settings.target_url_masked}, which is at {before or 'an unknown revision'}"
        )
        # Replacing the target: no migration (panel or plain alembic) may run meanwhile, and
        # the target as it is now is backed up first (one click back from a wrong restore).
        with _lock(ctx) if mode is RestoreMode.REPLACE else nullcontext():
            if mode is RestoreMode.REPLACE:
                _safety_backup(ctx)
            with sigterm_stops() as stop:
                result = backups.restore(
                    path,
                    backup.format,
                    settings.database_url,
                    mode=mode,
                    new_database=str(new_database) if new_database else None,
                    pg_bin_dir=settings.pg_bin_dir,
                    on_line=sink(out),
                    should_stop=stop,
                    expected_sha256=backup.sha256,
                    lock_timeout=settings.backup_lock_wait_timeout,
                )
        after = _revision_or_none(ctx, restored_url(settings, result))
    except backups.ChecksumMismatch as exc:
        # Caught before anything was restored: the backup must not stay listed verified.
        _mark_failed(ctx, backup.id, exc)
        _restore_finished(ctx, backup, mode, result, before, after, actor, error=str(exc))
        raise
    except BaseException as exc:
        error = str(exc) if isinstance(exc, Exception) else "cancelled on request"
        _restore_finished(ctx, backup, mode, result, before, after, actor, error=error)
        raise
    _restore_finished(ctx, backup, mode, result, before, after, actor, error=None)
    where = (
        f"the target {settings.target_url_masked}"
        if mode is RestoreMode.REPLACE
        else f"the new database {result.database_name} ({result.target_display})"
    )
    out.log(f"restore finished: {where} is at revision {after or 'unknown'}")
    target_after = after if mode is RestoreMode.REPLACE else before
    out.result("succeeded", revision_after=target_after, backup_id=backup.id)
    return SUCCEEDED


def _safety_backup(ctx: Context) -> int:
    """Back the target up as it is now, before a restore replaces it; a failure stops the
    restore before it touches anything."""
    ctx.out.log(
        "safety backup: taking and verifying a backup of the target as it is now, before the "
        "restore replaces it"
    )
    try:
        backup_id, _ = take_and_verify(ctx, reason=SAFETY_REASON, fmt=ctx.settings.backup_format)
    except AdminError as exc:
        raise BackupFailed(
            f"the safety backup failed: {exc} (the restore was not started: the target is "
            "untouched)"
        ) from None
    ctx.out.log(
        f"safety backup {backup_id} verified: restore it to undo this restore; now restoring"
    )
    return backup_id


def restorable(settings: Settings, backup: Backup) -> str | None:
    """Why this backup cannot be restored into this target, or None."""
    if backup.status != BackupStatus.VERIFIED.value:
        return (
            f"backup {backup.id} is {backup.status}, not verified: only a verified backup is "
            "restored (verify it again first)"
        )
    if not backup.file_name:
        return f"backup {backup.id} has no file"
    if backup.target_key != migrations.target_key(settings.database_url):
        return (
            f"backup {backup.id} is of {backup.target_display}, not of the target "
            f"{settings.target_url_masked}"
        )
    return None


def _restore_finished(
    ctx: Context,
    backup: Backup,
    mode: RestoreMode,
    result: RestoreResult | None,
    before: str | None,
    after: str | None,
    actor: audit.Actor,
    *,
    error: str | None,
) -> None:
    with ctx.runtime.transaction() as session:
        audit.record(
            session,
            audit.RestoreFinished(
                backup_id=backup.id,
                job_id=ctx.job.id,
                mode=mode.value,
                database_name=result.database_name if result else None,
                revision_before=before,
                revision_after=after,
                leftover_tables=list(result.leftover_tables) if result else [],
                error=error,
                outcome=audit.Outcome.FAILURE if error else audit.Outcome.SUCCESS,
            ),
            actor,
            revision=after,
        )


HANDLERS: dict[JobKind, Callable[[Context], int]] = {
    JobKind.BACKUP: run_backup,
    JobKind.VERIFY: run_verify,
    JobKind.RESTORE: run_restore,
}
