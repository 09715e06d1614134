"""The migration lock: two runs on one target never overlap.

PostgreSQL: a session-level ``pg_try_advisory_lock`` on a dedicated connection, polled until
a deadline. Never a blocking ``pg_advisory_lock``: ``CREATE INDEX CONCURRENTLY`` waits for
every transaction that could see the table, including a session blocked on the lock, and the
two would wait for each other forever. SQLite: an exclusive ``flock`` on a file beside the
database. Whoever holds the lock is named in the error (the holder's application_name says
which job, replica or plain ``alembic`` run it is).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Connection, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from admin.errors import Conflict, Unavailable, describe
from admin.migrations import database as databases
from admin.urls import mask_url

# The advisory lock key (per database); plain `alembic` runs through env.py take it too.
LOCK_KEY = 0x41504558_4D494752  # "APEXMIGR"
_POLL = 0.1


class LockHeld(Conflict):
    """Another run holds the migration lock on this target."""

    title = "Migration lock held"


def describe_owner(label: str) -> str:
    """What a lock holder calls itself: fits PostgreSQL's 63-byte application_name."""
    return f"{label} {os.getpid()}@{socket.gethostname()}"[:63]


def _holder(connection: Connection) -> str:
    row = connection.execute(
        text(
            "SELECT a.pid, a.application_name, a.usename, a.client_addr, a.backend_start "
            "FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
            "WHERE l.locktype = 'advisory' AND l.granted AND l.database = "
            "(SELECT oid FROM pg_database WHERE datname = current_database()) "
            "AND l.classid = :hi AND l.objid = :lo AND l.objsubid = 1"
        ),
        {"hi": (LOCK_KEY >> 32) & 0xFFFFFFFF, "lo": LOCK_KEY & 0xFFFFFFFF},
    ).first()
    if row is None:
        return "another session (it has just let go; try again)"
    name = row.application_name or "an unnamed session"
    since = row.backend_start.strftime("%Y-%m-%d %H:%M:%S %Z") if row.backend_start else "?"
    where = f" from {row.client_addr}" if row.client_addr else ""
    return f"{name!r} (backend pid {row.pid}, user {row.usename}{where}, connected {since})"


@contextmanager
def _postgresql_lock(url: str, wait: float, owner: str) -> Iterator[None]:
    # The target's connect timeout and keepalives: a dead link is noticed, not waited on.
    engine = databases.new_engine(url, application_name=owner, autocommit=True)
    try:
        try:
            connection = engine.connect()
            _acquire(connection, url, wait)
        except SQLAlchemyError as exc:
            raise Unavailable(
                f"could not take the migration lock on {mask_url(url)}: {describe(exc)}"
            ) from exc
        try:
            yield
        finally:
            # Errors of the block propagate as they are; only the unlock is ours.
            with contextlib.suppress(SQLAlchemyError):
                connection.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": LOCK_KEY})
            connection.close()
    finally:
        engine.dispose()


def _acquire(connection: Connection, url: str, wait: float) -> None:
    deadline = time.monotonic() + wait
    while not connection.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": LOCK_KEY}).scalar():
        if time.monotonic() >= deadline:
            holder = _holder(connection)
            connection.close()
            raise LockHeld(
                f"another migration is running on {make_url(url).database}: the lock is held "
                f"by {holder}; waited {wait:g}s"
            )
        time.sleep(_POLL)


def _sqlite_lock_path(database: str) -> Path:
    return Path(os.path.realpath(Path(database).expanduser()) + ".migrate-lock")


@contextmanager
def _sqlite_lock(database: str, wait: float, owner: str) -> Iterator[None]:
    # Beside the file's real path: every spelling of one database (a symlink, a relative
    # path) takes the same lock.
    path = _sqlite_lock_path(database)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as handle:
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    handle.seek(0)
                    holder = handle.read().strip() or "another process"
                    raise LockHeld(
                        f"another migration is running on {database}: the lock is held by "
                        f"{holder!r}; waited {wait:g}s"
                    ) from None
                time.sleep(_POLL)
        try:
            handle.seek(0)
            handle.truncate()
            handle.write(owner)
            handle.flush()
            yield
        finally:
            handle.seek(0)
            handle.truncate()
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextmanager
def migration_lock(url: str, *, wait: float, owner: str) -> Iterator[None]:
    """Hold the target's migration lock for the duration of the block, or raise LockHeld."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "postgresql":
        with _postgresql_lock(url, wait, owner):
            yield
    elif parsed.database and parsed.database != ":memory:":
        with _sqlite_lock(parsed.database, wait, owner):
            yield
    else:
        yield


def held_by(url: str, label: str) -> bool:
    """Whether a session whose name starts with ``label`` is on the target now (PostgreSQL:
    its application_name in pg_stat_activity, the lock's connection among them; SQLite: the
    migration lock file, held and naming it). Raises Unavailable when the target cannot be
    asked: then nothing can be concluded."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "postgresql":
        engine = databases.new_engine(url)
        try:
            with engine.connect() as connection:
                pattern = label.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
                found = connection.execute(
                    text(
                        "SELECT count(*) FROM pg_stat_activity "
                        "WHERE application_name LIKE :pattern AND datname = current_database()"
                    ),
                    {"pattern": pattern + "%"},
                ).scalar()
            return bool(found)
        except SQLAlchemyError as exc:
            raise Unavailable(f"could not ask the target who is on it: {describe(exc)}") from exc
        finally:
            engine.dispose()
    if not parsed.database or parsed.database == ":memory:":
        return False
    path = _sqlite_lock_path(parsed.database)
    if not path.exists():
        return False
    with open(path, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            return handle.read().startswith(label)
        fcntl.flock(handle, fcntl.LOCK_UN)
        return False
