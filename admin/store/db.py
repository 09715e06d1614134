"""Engines and sessions for the store (and plain engines for the target)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, ExceptionContext, make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import NullPool

from admin import files
from admin.errors import Unavailable, describe
from admin.urls import mask_url

SQLITE_BUSY_TIMEOUT_MS = 30_000
# Seconds to establish a connection to a PostgreSQL store.
STORE_CONNECT_TIMEOUT = 10


class StoreUnavailable(Unavailable, SQLAlchemyError):
    """The store cannot be connected to: a 503 (one line in the CLI) that names it.

    Also a SQLAlchemyError, so code that already copes with a failing store (readiness,
    metrics, the runner's threads) keeps doing so; ``orig`` is the driver's own error.
    """

    title = "Store unavailable"

    def __init__(self, message: str, orig: BaseException | None = None) -> None:
        super().__init__(message)
        self.orig = orig


def _store_down(engine: Engine) -> None:
    """Failures to connect to the store become StoreUnavailable, saying what to do."""
    url = engine.url

    @event.listens_for(engine, "handle_error")
    def _translate(context: ExceptionContext) -> None:
        # Only new connections: a pre-ping's failure is the pool's to handle (it reconnects),
        # and a statement's own error keeps its type for the code that retries it.
        if context.connection is not None or context.is_pre_ping:
            return
        error = context.original_exception
        raise StoreUnavailable(_store_message(url, error), error)


def _store_message(url: URL, error: BaseException) -> str:
    detail = describe(error)
    if url.get_backend_name() == "postgresql" and (
        f'database "{url.database}" does not exist' in detail
    ):
        return missing_store(url)
    return f"the store {mask_url(url)} does not answer: {detail}"


def missing_store(url: str | URL) -> str:
    """The one line for a PostgreSQL store whose database does not exist: how to create it."""
    url = make_url(url)
    host = f"-h {url.host} -p {url.port or 5432} " if url.host else ""
    user = f"-U {url.username} " if url.username else ""
    return (
        f"the store database {url.database!r} does not exist on "
        f"{mask_url(url)}: create it (createdb {host}{user}"
        f"{url.database}), or start with `schema-admin entrypoint` and INIT_DB=true"
    )


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
        _store_down(engine)
        return engine
    kwargs.setdefault("pool_pre_ping", True)
    kwargs.setdefault("pool_size", 10)
    kwargs.setdefault("max_overflow", 20)
    # A store that never answers the start-up is "down" too, not a request that hangs.
    kwargs.setdefault("connect_args", {"connect_timeout": STORE_CONNECT_TIMEOUT})
    engine = create_engine(url, **kwargs)
    _store_down(engine)
    return engine


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def transaction(factory: sessionmaker[Session]) -> Iterator[Session]:
    """A session whose work commits together, or not at all."""
    with factory() as session, session.begin():
        yield session
