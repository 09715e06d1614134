"""Backups of the target: take, verify and restore, for PostgreSQL and SQLite.

A service without web or store: jobs call these functions in a worker process, pass each
log line on through ``on_line`` and record the returned facts. Settings (BACKUP_DIR,
BACKUP_FORMAT, BACKUP_LOCK_WAIT_TIMEOUT, PG_BIN_DIR) arrive as arguments. Every failure is
a BackupError (an AdminError) whose message masks passwords; nothing half-written is left
under a backup's name.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from admin.backups import dumps, durations, files, restores, sqlite
from admin.backups.conninfo import parse_target
from admin.backups.errors import (
    BackupCancelled,
    BackupError,
    BackupFailed,
    ChecksumMismatch,
    RestoreFailed,
    ToolMissing,
    VerificationFailed,
)
from admin.backups.files import (
    check_backup_dir,
    delete_backup_file,
    format_of,
    list_backup_files,
    remove_partials,
    safe_path,
)
from admin.backups.results import (
    BackupFile,
    BackupFormat,
    RestoreMode,
    RestoreResult,
    Verification,
)
from admin.backups.tools import Tool
from admin.backups.tools import find as find_tool
from admin.errors import InvalidInput

__all__ = [
    "BackupCancelled",
    "BackupError",
    "BackupFailed",
    "BackupFile",
    "BackupFormat",
    "ChecksumMismatch",
    "RestoreFailed",
    "RestoreMode",
    "RestoreResult",
    "Tool",
    "ToolMissing",
    "Verification",
    "VerificationFailed",
    "check_backup_dir",
    "delete_backup_file",
    "find_tool",
    "format_of",
    "list_backup_files",
    "remove_partials",
    "restore",
    "safe_path",
    "take",
    "verify",
]

LineSink = Callable[[str], None]
StopFlag = Callable[[], bool]
_SQLITE_RESTORE_WAIT = "30s"


def take(
    target_url: str,
    backup_dir: Path,
    *,
    fmt: BackupFormat | str,
    lock_wait_timeout: str,
    pg_bin_dir: Path | None,
    on_line: LineSink,
    should_stop: StopFlag | None = None,
) -> BackupFile:
    """Back the target up into a new file of ``backup_dir`` (created 0700 if missing).

    PostgreSQL: pg_dump in ``fmt`` (custom, or plain SQL gzip-compressed). SQLite: an online
    copy checked with integrity_check (``fmt`` is then ignored: BACKUP_FORMAT is pg_dump's).
    Raises BackupFailed (BackupCancelled when ``should_stop`` said so), ToolMissing, or
    InvalidInput for a bad URL or format.
    """
    target = parse_target(target_url)
    backup_format = BackupFormat.parse(fmt)
    lock_wait_timeout = durations.checked(lock_wait_timeout)
    if not target.is_sqlite and backup_format is BackupFormat.SQLITE:
        raise InvalidInput(f"{target.display} is PostgreSQL: use the custom or plain format")
    try:
        if target.is_sqlite:
            return sqlite.take(
                target,
                backup_dir,
                lock_wait_timeout=lock_wait_timeout,
                on_line=on_line,
                should_stop=should_stop,
            )
        return dumps.take(
            target,
            backup_dir,
            fmt=backup_format,
            lock_wait_timeout=lock_wait_timeout,
            pg_bin_dir=pg_bin_dir,
            on_line=on_line,
            should_stop=should_stop,
        )
    except OSError as exc:
        raise BackupFailed(f"backup of {target.display} failed: {_os_error(exc)}") from None


def verify(
    path: Path,
    fmt: BackupFormat | str | None,
    *,
    pg_bin_dir: Path | None,
    on_line: LineSink,
    expected_sha256: str | None = None,
    should_stop: StopFlag | None = None,
) -> Verification:
    """Read a backup file in full and prove it complete; VerificationFailed says why not.

    custom: pg_restore --list (the table of contents), then pg_restore -f /dev/null (all
    data). plain: the whole gzip stream, pg_dump's first and last lines. sqlite: header and
    integrity_check. ``expected_sha256`` (recorded at backup time) is compared first.
    ``fmt`` None: taken from the file's name.
    """
    started = time.monotonic()
    backup_format = BackupFormat.parse(fmt) if fmt is not None else format_of(path.name)
    if not path.is_file():
        raise VerificationFailed(f"{path.name} is missing from {path.parent}")
    try:
        size = path.stat().st_size
        sha256 = _check_sha256(path, expected_sha256)
        on_line(f"verifying {path.name} ({backup_format}, {files.human_size(size)})")
        if backup_format is BackupFormat.SQLITE:
            detail = sqlite.check(path)
            header = dumps.Header()
        else:
            header, detail = dumps.verify(
                path, backup_format, pg_bin_dir=pg_bin_dir, on_line=on_line, should_stop=should_stop
            )
    except OSError as exc:
        raise VerificationFailed(f"{path.name} cannot be read: {_os_error(exc)}") from None
    on_line(f"verified: {detail}")
    return Verification(
        file_name=path.name,
        format=backup_format,
        size_bytes=size,
        sha256=sha256,
        duration_ms=int((time.monotonic() - started) * 1000),
        detail=detail,
        database_name=header.database_name,
        server_version=header.server_version,
        tool_version=header.tool_version,
        toc_entries=header.toc_entries,
    )


def restore(
    path: Path,
    fmt: BackupFormat | str | None,
    target_url: str,
    *,
    mode: RestoreMode | str,
    new_database: str | None,
    pg_bin_dir: Path | None,
    on_line: LineSink,
    should_stop: StopFlag | None = None,
    expected_sha256: str | None = None,
    lock_timeout: str | None = None,
    jobs: int = 1,
) -> RestoreResult:
    """Restore a backup into a new database (the safe default) or over the target.

    new: a database named ``new_database`` (or the target's name and the time) is created
    and filled; an existing name is refused (Conflict); on failure it is dropped again.
    replace: pg_restore --clean --if-exists --single-transaction (custom) or psql
    ON_ERROR_STOP=1 --single-transaction (plain): all or nothing. SQLite: a new file beside
    the target, or the target's content replaced in one SQLite transaction.
    ``lock_timeout`` bounds waits for locks other sessions hold (PostgreSQL: a lock watch
    cancels the restore and names the holder, since every archive resets lock_timeout to 0;
    None = wait. SQLite: default 30s). ``jobs`` > 1: a custom-format restore into a new
    database runs pg_restore --jobs (in parallel, so not in one transaction: a failure
    drops the new database all the same).
    Raises RestoreFailed, VerificationFailed, ToolMissing, Conflict, InvalidInput.
    """
    target = parse_target(target_url)
    backup_format = BackupFormat.parse(fmt) if fmt is not None else format_of(path.name)
    restore_mode = RestoreMode.parse(mode)
    lock_timeout = durations.checked(lock_timeout) if lock_timeout is not None else None
    if not path.is_file():
        raise RestoreFailed(f"{path.name} is missing from {path.parent}")
    if expected_sha256 is not None:
        _check_sha256(path, expected_sha256)
    if target.is_sqlite != (backup_format is BackupFormat.SQLITE):
        kind = "SQLite" if target.is_sqlite else "PostgreSQL"
        raise InvalidInput(f"{path.name} is a {backup_format} backup; {target.display} is {kind}")
    try:
        if target.is_sqlite:
            return sqlite.restore(
                path,
                target,
                mode=restore_mode,
                new_database=new_database,
                lock_wait_timeout=lock_timeout or _SQLITE_RESTORE_WAIT,
                on_line=on_line,
                should_stop=should_stop,
            )
        return restores.restore(
            path,
            backup_format,
            target,
            mode=restore_mode,
            new_database=new_database,
            pg_bin_dir=pg_bin_dir,
            on_line=on_line,
            should_stop=should_stop,
            lock_timeout=lock_timeout,
            jobs=jobs,
        )
    except OSError as exc:
        raise RestoreFailed(f"restore of {path.name} failed: {_os_error(exc)}") from None


def _check_sha256(path: Path, expected: str | None) -> str:
    actual = files.sha256_of(path)
    if expected is not None and actual != expected.strip().lower():
        raise ChecksumMismatch(
            f"{path.name} has changed since it was taken: its sha256 is {actual[:16]}…, "
            f"the backup recorded {expected[:16]}…",
            found=actual,
        )
    return actual


def _os_error(exc: OSError) -> str:
    """An OS error as a person reads it: 'No space left on device: /var/backups/...'."""
    if exc.strerror and exc.filename:
        return f"{exc.strerror}: {exc.filename}"
    return exc.strerror or str(exc)
