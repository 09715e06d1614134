"""The scratch database a rehearsal runs in: named, checked for room, filled from a verified
backup, and dropped.

PostgreSQL: a new database on the target's server (or on REHEARSAL_DATABASE_URL's), filled
with pg_restore --jobs (parallel); SQLite: a copy of the backup file beside the target.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.pool import NullPool

from admin import backups
from admin.backups.conninfo import parse_target
from admin.backups.results import BackupFormat
from admin.errors import AdminError, describe

# Room asked for beyond the copy's own size: WAL, sorts, the indexes the plan builds.
HEADROOM = 1.2
HEADROOM_BYTES = 64 * 1024 * 1024
LOCAL_HOSTS = ("", "localhost", "127.0.0.1", "::1")


class RehearsalError(AdminError):
    """A rehearsal cannot go on (no room, no backup, a copy at the wrong revision)."""

    status = 409
    title = "Rehearsal refused"


@dataclass(frozen=True)
class Scratch:
    """Where the copy lives: its URL (with password) and how people see it."""

    url: str
    name: str
    display: str
    is_sqlite: bool


def server_url(target_url: str, rehearsal_url: str | None) -> str:
    """The server the scratch database is made on: REHEARSAL_DATABASE_URL's, or the target's."""
    if rehearsal_url and not parse_target(target_url).is_sqlite:
        return rehearsal_url
    return target_url


def scratch_name(target_url: str, job_id: int) -> str:
    """``<target database>_rehearsal_<job>`` (SQLite: a file name beside the target)."""
    target = parse_target(target_url)
    suffix = f"_rehearsal_{job_id}"
    if target.is_sqlite:
        stem = target.sqlite_path.stem or "db"
        return f"{re.sub(r'[^A-Za-z0-9_]+', '_', stem)[:120]}{suffix}.sqlite3"
    stem = re.sub(r"[^A-Za-z0-9_]+", "_", target.database).strip("_") or "db"
    if stem[0].isdigit():
        stem = f"db_{stem}"
    return stem[: 63 - len(suffix)] + suffix


def scratch_for(server: str, name: str) -> Scratch:
    target = parse_target(server)
    if target.is_sqlite:
        path = target.sqlite_path.parent / name
        return Scratch(f"sqlite:///{path}", str(path), f"sqlite:///{path}", True)
    into = target.with_database(name)
    return Scratch(into.url.render_as_string(hide_password=False), name, into.display, False)


def _admin_engine(url: str) -> Engine:
    return create_engine(url, isolation_level="AUTOCOMMIT", poolclass=NullPool)


def size_of(target_url: str) -> int:
    """The target's size in bytes (pg_database_size, or the SQLite file's)."""
    target = parse_target(target_url)
    if target.is_sqlite:
        return target.sqlite_path.stat().st_size
    engine = _admin_engine(target_url)
    try:
        with engine.connect() as connection:
            return int(
                connection.execute(text("SELECT pg_database_size(current_database())")).scalar_one()
            )
    finally:
        engine.dispose()


def free_bytes(server: str) -> tuple[int | None, str]:
    """Free bytes where the scratch copy would be written, and where that is (None: cannot
    be known from here, with why)."""
    target = parse_target(server)
    if target.is_sqlite:
        directory = target.sqlite_path.resolve().parent
        return shutil.disk_usage(directory).free, str(directory)
    host = target.url.host or ""
    if host not in LOCAL_HOSTS and not host.startswith("/"):
        return None, f"the server {host} is not on this machine"
    engine = _admin_engine(server)
    try:
        with engine.connect() as connection:
            directory = connection.execute(text("SHOW data_directory")).scalar_one()
    except SQLAlchemyError as exc:
        return None, f"the server's data directory cannot be read ({describe(exc)})"
    finally:
        engine.dispose()
    try:
        return shutil.disk_usage(directory).free, str(directory)
    except OSError as exc:
        return None, f"{directory} cannot be examined ({exc.strerror or exc})"


def check_room(needed: int, server: str, on_line: Callable[[str], None]) -> None:
    """Refuse (RehearsalError) when the copy would not fit; say so when it cannot be known."""
    free, where = free_bytes(server)
    asked = int(needed * HEADROOM) + HEADROOM_BYTES
    if free is None:
        on_line(f"warning: free disk space not checked: {where}")
        return
    if free < asked:
        raise RehearsalError(
            f"not enough free disk for the scratch copy: {_size(asked)} needed "
            f"(the target's {_size(needed)} and headroom), {_size(free)} free in {where}"
        )
    on_line(f"free disk: {_size(free)} in {where}, {_size(asked)} needed")


def restore(
    backup_path: Path,
    fmt: str,
    server: str,
    name: str,
    *,
    pg_bin_dir: Path | None,
    on_line: Callable[[str], None],
    should_stop: Callable[[], bool] | None,
    expected_sha256: str | None,
    jobs: int | None = None,
) -> Scratch:
    """Fill a new scratch database from a verified backup; on failure nothing is left."""
    parallel = jobs or max(2, min(8, os.cpu_count() or 2))
    result = backups.restore(
        backup_path,
        BackupFormat.parse(fmt),
        server,
        mode=backups.RestoreMode.NEW,
        new_database=name,
        pg_bin_dir=pg_bin_dir,
        on_line=on_line,
        should_stop=should_stop,
        expected_sha256=expected_sha256,
        jobs=parallel,
    )
    return scratch_for(
        server,
        Path(result.database_name).name
        if result.format is BackupFormat.SQLITE
        else result.database_name,
    )


def drop(scratch: Scratch, server: str, on_line: Callable[[str], None]) -> bool:
    """Drop the scratch database (or delete its file); True when it is gone."""
    if scratch.is_sqlite:
        path = Path(make_url(scratch.url).database or "")
        # The file, its journals, and the migration lock file the runs on it left.
        for suffix in ("", "-wal", "-shm", "-journal", ".migrate-lock"):
            path.with_name(path.name + suffix).unlink(missing_ok=True)
        on_line(f"deleted the scratch file {path}")
        return not path.exists()
    engine = _admin_engine(server)
    try:
        with engine.connect() as connection:
            quoted = connection.dialect.identifier_preparer.quote(scratch.name)
            version = connection.dialect.server_version_info or (0,)
            force = " WITH (FORCE)" if version >= (13,) else ""  # a session left behind
            connection.execute(text(f"DROP DATABASE IF EXISTS {quoted}{force}"))
            gone = not connection.execute(
                text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": scratch.name}
            ).first()
    except SQLAlchemyError as exc:
        on_line(
            f"warning: the scratch database {scratch.name} could not be dropped: {describe(exc)}"
        )
        return False
    finally:
        engine.dispose()
    on_line(f"dropped the scratch database {scratch.name}")
    return gone


def _size(value: int) -> str:
    return backups.files.human_size(value)
