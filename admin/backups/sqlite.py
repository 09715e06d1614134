"""SQLite backups: an online copy with SQLite's backup API, checked with integrity_check.

Restoring over a SQLite target also goes through the backup API rather than a rename:
connections that have the file open (the CRM, the panel) then see the restored data, where
after a rename they would go on reading and writing the old, unlinked file; and a -wal file
left beside the target can never be replayed onto pages it was not written for. SQLite makes
the copy one write transaction, so a crash half-way leaves the old content, not a mix.
"""

from __future__ import annotations

import re
import shutil
import sqlite3
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from admin.backups import files
from admin.backups.conninfo import Target
from admin.backups.durations import seconds
from admin.backups.errors import (
    BackupCancelled,
    BackupFailed,
    RestoreFailed,
    VerificationFailed,
)
from admin.backups.results import BackupFile, BackupFormat, RestoreMode, RestoreResult
from admin.errors import Conflict, InvalidInput

_MAGIC = b"SQLite format 3\x00"
_BUSY = (5, 6)  # SQLITE_BUSY, SQLITE_LOCKED: the backup step waits and retries
_FILE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,200}")
TOOL = f"SQLite {sqlite3.sqlite_version} online backup API"


class _Stopped(Exception):
    """Raised inside the backup's progress callback: SQLite then abandons the copy."""


class _Busy(Exception):
    """The database stayed locked past the lock-wait timeout."""


def take(
    target: Target,
    backup_dir: Path,
    *,
    lock_wait_timeout: str,
    on_line: Callable[[str], None],
    should_stop: Callable[[], bool] | None,
) -> BackupFile:
    """Copy a SQLite target into a new file of BACKUP_DIR; see admin.backups.take."""
    source = target.sqlite_path
    if not source.is_file():
        raise BackupFailed(f"backup of {target.display} failed: {source} does not exist")
    wait = seconds(lock_wait_timeout)
    created_at = datetime.now(UTC)
    started = time.monotonic()
    if (reason := files.check_backup_dir(backup_dir)) is not None:
        raise BackupFailed(reason)
    files.ensure_backup_dir(backup_dir)
    final = backup_dir / files.backup_name(source.name, BackupFormat.SQLITE, created_at)
    on_line(f"backing up {source} with the {TOOL} into {final.name}")
    with files.staged(final) as temp:
        try:
            _copy(source, temp, wait, should_stop, single_file=True)
        except _Stopped:
            raise BackupCancelled(
                f"backup of {target.display} cancelled; no file was kept"
            ) from None
        except _Busy:
            raise BackupFailed(
                f"backup of {target.display} failed: the database stayed locked longer than "
                f"BACKUP_LOCK_WAIT_TIMEOUT={lock_wait_timeout}"
            ) from None
        except sqlite3.Error as exc:
            raise BackupFailed(f"backup of {target.display} failed: {exc}") from None
        try:
            detail = check(temp)
        except VerificationFailed as exc:
            raise BackupFailed(f"backup of {target.display} failed: the copy {exc}") from None
        on_line(f"copy checked: {detail}")
        size = temp.stat().st_size
        sha256 = files.sha256_of(temp)
    on_line(f"backup written: {final.name}, {files.human_size(size)}, sha256 {sha256[:16]}…")
    return BackupFile(
        file_name=final.name,
        path=final,
        format=BackupFormat.SQLITE,
        size_bytes=size,
        sha256=sha256,
        duration_ms=int((time.monotonic() - started) * 1000),
        database_name=source.name,
        server_version=f"SQLite {sqlite3.sqlite_version}",
        tool_version=TOOL,
        created_at=created_at,
    )


def _copy(
    source: Path,
    destination: Path,
    wait: float,
    should_stop: Callable[[], bool] | None,
    *,
    single_file: bool,
) -> None:
    """Copy ``source`` into ``destination`` in one step (a consistent snapshot, no restarts)."""
    started = time.monotonic()

    def progress(status: int, remaining: int, total: int) -> None:
        if should_stop is not None and should_stop():
            raise _Stopped
        if status in _BUSY and wait > 0 and time.monotonic() - started > wait:
            raise _Busy

    # Read-only: a backup never creates, checkpoints or otherwise writes the source.
    src = sqlite3.connect(source.resolve().as_uri() + "?mode=ro", uri=True, timeout=wait or 5.0)
    try:
        dst = sqlite3.connect(destination, timeout=wait or 5.0)
        try:
            src.backup(dst, pages=-1, progress=progress)
            if single_file:
                # The copy inherits a WAL source's header; a backup must be one file.
                dst.execute("PRAGMA journal_mode=DELETE")
        finally:
            dst.close()
    finally:
        src.close()


def check(path: Path) -> str:
    """Prove a SQLite file complete and sound; what was checked, or VerificationFailed."""
    size = path.stat().st_size
    with path.open("rb") as fh:
        header = fh.read(100)
    if len(header) < 100 or not header.startswith(_MAGIC):
        raise VerificationFailed(f"{path.name} is not a SQLite database file")
    page_size = int.from_bytes(header[16:18], "big")
    page_size = 65536 if page_size == 1 else page_size
    pages = int.from_bytes(header[28:32], "big")
    # The header's page count is valid when its version-valid-for equals the change counter.
    if header[92:96] == header[24:28] and size < pages * page_size:
        raise VerificationFailed(
            f"{path.name} is truncated: its header counts {pages} pages of {page_size} bytes "
            f"({pages * page_size} bytes) but the file has {size}"
        )
    try:
        connection = sqlite3.connect(path.resolve().as_uri() + "?mode=ro", uri=True)
        try:
            rows = connection.execute("PRAGMA integrity_check").fetchall()
        finally:
            connection.close()
    except sqlite3.Error as exc:
        raise VerificationFailed(f"{path.name} is damaged: {exc}") from None
    found = [str(row[0]) for row in rows]
    if found != ["ok"]:
        raise VerificationFailed(f"{path.name} failed integrity_check: {'; '.join(found[:5])}")
    return f"integrity_check ok, {pages} pages of {page_size} bytes"


def restore(
    path: Path,
    target: Target,
    *,
    mode: RestoreMode,
    new_database: str | None,
    lock_wait_timeout: str,
    on_line: Callable[[str], None],
    should_stop: Callable[[], bool] | None,
) -> RestoreResult:
    """Restore a SQLite backup over the target or into a new file beside it."""
    started = time.monotonic()
    on_line(f"checking {path.name}: {check(path)}")
    current = target.sqlite_path
    if mode is RestoreMode.REPLACE:
        destination = current
        on_line(f"restoring {path.name} over {destination} with the {TOOL}")
        try:
            _copy(path, destination, seconds(lock_wait_timeout), should_stop, single_file=False)
        except _Stopped:
            raise RestoreFailed(f"restore into {destination} cancelled; it is as it was") from None
        except _Busy:
            raise RestoreFailed(
                f"restore into {destination} failed: the database stayed locked longer than "
                f"{lock_wait_timeout}; it is as it was"
            ) from None
        except sqlite3.Error as exc:
            raise RestoreFailed(f"restore into {destination} failed: {exc}") from None
    else:
        name = check_file_name(new_database or _new_file_name(current, datetime.now(UTC)))
        destination = current.parent / name
        if destination.exists():
            raise Conflict(f"{destination} already exists: choose another name")
        on_line(f"restoring {path.name} into the new file {destination}")
        with files.staged(destination) as temp:
            shutil.copyfile(path, temp)
            try:
                check(temp)
            except VerificationFailed as exc:
                raise RestoreFailed(f"restore into {destination} failed: {exc}") from None
    duration_ms = int((time.monotonic() - started) * 1000)
    on_line(f"restored {path.name} into {destination} in {duration_ms / 1000:.1f}s")
    return RestoreResult(
        mode=mode,
        format=BackupFormat.SQLITE,
        database_name=str(destination),
        target_display=f"sqlite:///{destination}",
        created=mode is RestoreMode.NEW,
        duration_ms=duration_ms,
        tool_version=TOOL,
    )


def check_file_name(name: str) -> str:
    """``name`` if it can name a new database file beside the target; InvalidInput if not."""
    if not _FILE_NAME.fullmatch(name):
        raise InvalidInput(
            f"{name[:80]!r} cannot name a new database file: use letters, digits, _ . or -"
        )
    return name


def _new_file_name(current: Path, when: datetime) -> str:
    stamp = when.astimezone(UTC).strftime("%Y%m%d_%H%M%S")
    suffix = current.suffix or ".sqlite3"
    return f"{current.stem}_restored_{stamp}{suffix}"
