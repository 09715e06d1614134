"""Engines and sessions for the store (and plain engines for the target)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import NullPool

from admin import files

SQLITE_BUSY_TIMEOUT_MS = 30_000


def ensure_sqlite_parent(url: str) -> None:
    """Create the directory of a file-backed SQLite database (var/ on a fresh clone; 0700)."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        files.make_dirs(Path(parsed.database).expanduser().parent)


@event.listens_for(Engine, "do_connect")
def _private_sqlite_file(dialect: Any, _record: Any, cargs: Any, cparams: Any) -> None:
    """A SQLite database this process is about to create (the store, the demo target, from
    any engine: the panel's, Alembic's) is created 0600 first, whatever the umask; SQLite
    then opens the empty file as a new database, as it would have created it."""
    if dialect.name == "sqlite":
        path = files.sqlite_file_to_create(cargs, cparams)
        if path is not None:
            files.create_private_empty(path)


def _sqlite_pragmas(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.close()


def _sqlite_serialized_writes(engine: Engine) -> None:
    """WAL, a busy timeout, and BEGIN IMMEDIATE for every transaction.

    A deferred SQLite transaction that reads and then writes can fail at once with
    SQLITE_BUSY when another process wrote in between; taking the write lock at BEGIN
    makes concurrent writers (two CLI runs, the web process and a worker) wait in turn.
    This is also what serializes appends to the audit hash chain on SQLite.
    """

    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def make_store_engine(url: str, *, reads_only: bool = False, **kwargs: Any) -> Engine:
    """An engine for the store; on SQLite with serialized writers.

    ``reads_only`` gives SQLite plain deferred transactions, for readers that must not
    queue behind writers (live logs, page reads); on PostgreSQL it changes nothing.
    """
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        ensure_sqlite_parent(url)
        engine = create_engine(url, poolclass=NullPool, **kwargs)
        if reads_only:
            _sqlite_pragmas(engine)
        else:
            _sqlite_serialized_writes(engine)
        return engine
    kwargs.setdefault("pool_pre_ping", True)
    kwargs.setdefault("pool_size", 10)
    kwargs.setdefault("max_overflow", 20)
    return create_engine(url, **kwargs)


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def transaction(factory: sessionmaker[Session]) -> Iterator[Session]:
    """A session whose work commits together, or not at all."""
    with factory() as session, session.begin():
        yield session
