"""Backup files in BACKUP_DIR: their names, safe lookup, and writing them all or nothing."""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import secrets
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

from admin.backups.results import BackupFormat
from admin.errors import NotFound

_EXTENSIONS = {
    BackupFormat.CUSTOM: ".dump",
    BackupFormat.PLAIN: ".sql.gz",
    BackupFormat.SQLITE: ".sqlite3",
}
# Only names this module makes: <database>-<UTC time>-<random>.<ext>, nothing else.
_NAME = re.compile(r"[A-Za-z0-9_]{1,48}-\d{8}T\d{6}Z-[0-9a-f]{8}(\.dump|\.sql\.gz|\.sqlite3)")
# In-progress files start with a dot, so they never match _NAME nor show in a listing.
_PARTIAL_PREFIX = ".partial-"
_CHUNK = 1 << 20


def backup_name(database_name: str, fmt: BackupFormat, when: datetime) -> str:
    """A new file name for a backup of ``database_name`` taken at ``when``."""
    stem = re.sub(r"[^A-Za-z0-9_]+", "_", Path(database_name).stem).strip("_")[:48] or "db"
    stamp = when.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    return f"{stem}-{stamp}-{secrets.token_hex(4)}{_EXTENSIONS[fmt]}"


def format_of(file_name: str) -> BackupFormat:
    """The format of a backup file, from the extension its name was given."""
    match = _NAME.fullmatch(file_name)
    if match is None:
        raise NotFound(f"{_shown(file_name)} is not the name of a backup file")
    return next(fmt for fmt, ext in _EXTENSIONS.items() if ext == match.group(1))


def is_backup_name(file_name: str) -> bool:
    return _NAME.fullmatch(file_name) is not None


def safe_path(backup_dir: Path, file_name: str, *, must_exist: bool = True) -> Path:
    """The path of a backup file named by a request; NotFound for any other name.

    Only names this module produces are accepted, so separators, ``..``, absolute paths
    and hidden in-progress files are refused before the file system is touched; a symlink
    planted in BACKUP_DIR that points elsewhere is refused too.
    """
    if not isinstance(file_name, str) or not is_backup_name(file_name):
        raise NotFound(f"no backup file named {_shown(str(file_name))}")
    path = backup_dir / file_name
    if must_exist:
        if not path.is_file():
            raise NotFound(f"backup file {file_name} is not in {backup_dir}")
        if path.resolve().parent != backup_dir.resolve():
            raise NotFound(f"backup file {file_name} is not in {backup_dir}")
    return path


def list_backup_files(backup_dir: Path) -> list[Path]:
    """Finished backup files in BACKUP_DIR, oldest name first (names start with the time)."""
    if not backup_dir.is_dir():
        return []
    return sorted(p for p in backup_dir.iterdir() if is_backup_name(p.name) and p.is_file())


def delete_backup_file(backup_dir: Path, file_name: str) -> bool:
    """Remove a backup file; False when it was already gone."""
    path = safe_path(backup_dir, file_name, must_exist=False)
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    _fsync_dir(backup_dir)
    return True


def remove_partials(backup_dir: Path) -> list[str]:
    """Delete in-progress files a killed worker left behind; call only when no job runs."""
    if not backup_dir.is_dir():
        return []
    removed = []
    for path in backup_dir.iterdir():
        if path.name.startswith(_PARTIAL_PREFIX) and path.is_file():
            path.unlink(missing_ok=True)
            removed.append(path.name)
    return removed


def check_backup_dir(backup_dir: Path) -> str | None:
    """Why backups cannot be written to ``backup_dir``, or None when they can.

    Writes and removes a probe file rather than trusting ``os.access``, which answers
    yes for root and knows nothing of read-only mounts.
    """
    if backup_dir.exists() and not backup_dir.is_dir():
        return f"BACKUP_DIR {backup_dir} is not a directory"
    probe_dir = backup_dir
    while not probe_dir.exists():
        if probe_dir.parent == probe_dir:
            return f"BACKUP_DIR {backup_dir} cannot be created"
        probe_dir = probe_dir.parent
    if not probe_dir.is_dir():
        return f"BACKUP_DIR {backup_dir} cannot be created: {probe_dir} is not a directory"
    probe = probe_dir / f"{_PARTIAL_PREFIX}probe-{secrets.token_hex(4)}"
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.close(fd)
        probe.unlink()
    except OSError as exc:
        where = (
            "is not writable" if probe_dir == backup_dir else f"cannot be created in {probe_dir}"
        )
        return f"BACKUP_DIR {backup_dir} {where}: {exc.strerror or exc}"
    return None


def ensure_backup_dir(backup_dir: Path) -> None:
    """Create BACKUP_DIR (mode 0700: dumps hold every row of the database) if missing."""
    backup_dir.mkdir(mode=0o700, parents=True, exist_ok=True)


@contextlib.contextmanager
def staged(final: Path) -> Iterator[Path]:
    """A temporary file beside ``final`` (mode 0600) that becomes ``final`` only on success.

    On leaving normally the temporary file is fsynced and renamed, then the directory is
    fsynced so the rename survives a crash. On any exception, KeyboardInterrupt included,
    it is removed with whatever SQLite put beside it: no partial file ever carries a
    backup's name.
    """
    temp = final.with_name(f"{_PARTIAL_PREFIX}{final.name}")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.close(fd)
    try:
        yield temp
        os.chmod(temp, 0o600)  # in case the writer recreated the file
        fsync_file(temp)
        if final.exists():
            raise FileExistsError(f"{final} appeared while it was being written")
        os.rename(temp, final)
        _fsync_dir(final.parent)
    except BaseException:
        for suffix in ("", "-journal", "-wal", "-shm"):
            temp.with_name(temp.name + suffix).unlink(missing_ok=True)
        raise


def fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def human_size(size: float) -> str:
    """1536 -> '1.5 KiB': for progress lines people read."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TiB"  # pragma: no cover - the loop always returns


def _shown(name: str) -> str:
    """A requested name as it may appear in a message: quoted and cut short."""
    return repr(name[:80] + ("..." if len(name) > 80 else ""))
