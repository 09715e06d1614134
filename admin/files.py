"""Files the panel creates: private to the OS user that runs it, whatever the umask.

The runtime directory (``VAR_DIR``) is 0700; what the panel writes there (the secret key,
the first admin's one-time password) and the SQLite databases it creates (the store with
its password hashes and audit trail, the demo target) are 0600. SQLite creates its
``-wal`` and ``-shm`` files with the mode of the database file, so they follow.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

PRIVATE_DIR = 0o700
PRIVATE_FILE = 0o600


def make_dirs(path: Path) -> None:
    """Create ``path`` and its missing parents, each new one 0700 (existing ones are kept)."""
    missing: list[Path] = []
    current = path
    while not current.exists():
        missing.append(current)
        if current.parent == current:
            break
        current = current.parent
    for directory in reversed(missing):
        try:
            directory.mkdir(mode=PRIVATE_DIR)
        except FileExistsError:
            continue  # another process made it meanwhile
        os.chmod(directory, PRIVATE_DIR)


def private_dir(path: Path) -> Path:
    """The panel's own directory: created if missing, and 0700 in any case."""
    make_dirs(path)
    os.chmod(path, PRIVATE_DIR)
    return path


def write_private(path: Path, data: bytes) -> None:
    """Write a new file that only this OS user can read (fails if it exists)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE)
    with os.fdopen(fd, "wb") as handle:
        os.fchmod(handle.fileno(), PRIVATE_FILE)
        handle.write(data)


def create_private_empty(path: Path) -> bool:
    """Create an empty 0600 file unless one exists; True when this call created it."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE)
    except (FileExistsError, FileNotFoundError, NotADirectoryError):
        return False
    try:
        os.fchmod(fd, PRIVATE_FILE)
    finally:
        os.close(fd)
    return True


def tighten(path: Path) -> None:
    """Make an existing file of this OS user 0600 (a store created by an older version)."""
    try:
        info = path.stat()
        if info.st_uid == os.getuid() and info.st_mode & 0o077:
            os.chmod(path, PRIVATE_FILE)
    except OSError:
        return


def sqlite_file_to_create(
    cargs: tuple[Any, ...] | list[Any], cparams: dict[str, Any]
) -> Path | None:
    """The file a pysqlite connect is about to create, or None (it exists, is in memory, or
    is opened as a URI, whose ``mode=`` may forbid creating it)."""
    database = cargs[0] if cargs else cparams.get("database")
    if not isinstance(database, str) or cparams.get("uri") or database in ("", ":memory:"):
        return None
    path = Path(database)
    return None if path.exists() else path
