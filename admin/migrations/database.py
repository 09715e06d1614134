"""Connections to the target database, what it is, and what to say when there is none.

Every connection to a PostgreSQL target (the panel's reads, the CLI's, the workers' runs and
locks) is made with the options of ``configure``: a connect timeout, TCP keepalives and a
TCP user timeout (settings ``TARGET_*``), so a dead link is noticed instead of waited on.
``engine_for`` is the pool that reads for pages go through (see ``admin.migrations.reads``).
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlalchemy.pool import NullPool

from admin.errors import AdminError, Unavailable, describe
from admin.urls import mask_url

if TYPE_CHECKING:
    from admin.config import Settings


@dataclass(frozen=True)
class ConnectOptions:
    """How this process connects to targets (the TARGET_* settings; defaults are theirs)."""

    connect_timeout: int = 5
    keepalives_idle: int = 10
    keepalives_interval: int = 5
    keepalives_count: int = 3
    tcp_user_timeout: int = 30
    read_timeout: float = 2.0
    read_pool: int = 4

    @classmethod
    def from_settings(cls, settings: Settings) -> ConnectOptions:
        return cls(
            connect_timeout=settings.target_connect_timeout,
            keepalives_idle=settings.target_keepalives_idle,
            keepalives_interval=settings.target_keepalives_interval,
            keepalives_count=settings.target_keepalives_count,
            tcp_user_timeout=settings.target_tcp_user_timeout,
            read_timeout=settings.target_read_timeout,
            read_pool=settings.target_read_pool,
        )

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def libpq(self) -> dict[str, object]:
        """psycopg2's connect arguments for these options."""
        return {
            "connect_timeout": self.connect_timeout,
            "keepalives": 1,
            "keepalives_idle": self.keepalives_idle,
            "keepalives_interval": self.keepalives_interval,
            "keepalives_count": self.keepalives_count,
            "tcp_user_timeout": self.tcp_user_timeout * 1000,
        }


_options = ConnectOptions()
_engines: dict[str, Engine] = {}
_engines_lock = threading.Lock()
_identities: dict[str, str] = {}
_identity_failures: dict[str, tuple[float, str]] = {}
# Seconds a failure to identify a target is repeated before the server is asked again.
_RETRY_IDENTITY = 5.0


def configure(options: ConnectOptions | Settings) -> None:
    """Use ``options`` for every target connection this process makes from now on."""
    global _options
    if not isinstance(options, ConnectOptions):
        options = ConnectOptions.from_settings(options)
    if options == _options:
        return
    _options = options
    dispose_engines()  # pooled connections were made with the old options


def options() -> ConnectOptions:
    return _options


class TargetMissing(Unavailable):
    """The target database does not exist (the seed's "database does not exist")."""

    title = "Database missing"


def masked(url: str | URL) -> str:
    """The URL as it may be shown (``admin.urls.mask_url``: every secret masked)."""
    return mask_url(url)


def is_postgresql(url: str) -> bool:
    return make_url(url).get_backend_name() == "postgresql"


def sqlite_path(url: str) -> Path | None:
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    return Path(parsed.database)


def target_key(url: str) -> str:
    """The target as its URL spells it, whatever user or password reaches it (backup rows)."""
    parsed = make_url(url)
    path = sqlite_path(url)
    if path is not None:
        where = f"sqlite:{path.resolve()}"
    else:
        where = f"{parsed.get_backend_name()}:{parsed.host}:{parsed.port or 5432}/{parsed.database}"
    return hashlib.sha256(where.encode()).hexdigest()


def identity_key(url: str) -> str:
    """The one-active-job key: a digest of ``target_identity`` (raises like it)."""
    return hashlib.sha256(target_identity(url).encode()).hexdigest()


def target_identity(url: str) -> str:
    """What the target is, as its server says; cached per URL for the life of the process.

    PostgreSQL: the cluster's system identifier and the database's name
    (``postgresql:7716383158427703446/crm``), so every host name, address, port or proxy
    that reaches one database gives one identity. ``pg_control_system()`` is readable by
    any role on PostgreSQL 15; where it was revoked, the server's port and the database's
    oid stand in. A database that does not exist yet is named on its server (asked through
    the ``postgres`` database). SQLite: the file's real path (symlinks, relative paths and
    ``~`` resolved). Raises Unavailable, in one line, when the server cannot be asked.
    """
    path = sqlite_path(url)
    if path is not None:
        return f"sqlite:{os.path.realpath(path.expanduser())}"
    if not is_postgresql(url):
        return f"{make_url(url).get_backend_name()}:{make_url(url).database}"
    known = _identities.get(url)
    if known is not None:
        return known
    failed = _identity_failures.get(url)
    if failed is not None and time.monotonic() - failed[0] < _RETRY_IDENTITY:
        raise Unavailable(failed[1])  # pages ask often: a dead server costs one wait
    try:
        known = _ask_identity(url)
    except AdminError as exc:
        _identity_failures[url] = (time.monotonic(), str(exc))
        raise
    _identities[url] = known
    return known


_SYSTEM_IDENTITY = "SELECT system_identifier::text, current_database() FROM pg_control_system()"
# Without pg_control_system (EXECUTE revoked): weaker, but the same for every spelling.
_FALLBACK_IDENTITY = (
    "SELECT 'port=' || current_setting('port') || ',oid=' || d.oid::text, d.datname "
    "FROM pg_database d WHERE d.datname = current_database()"
)


def _ask_identity(url: str) -> str:
    try:
        try:
            server, database = _ask(url)
        except DBAPIError as exc:
            if not _database_missing(exc):
                raise
            server, _ = _ask(_maintenance_url(url))
            database = make_url(url).database or ""
    except SQLAlchemyError as exc:
        raise Unavailable(
            f"cannot tell which database the target {masked(url)} is: {describe(exc)}"
        ) from exc
    return f"postgresql:{server}/{database}"


def _ask(url: str) -> tuple[str, str]:
    from admin.migrations import watchdog  # here: watchdog is a leaf, this module is not

    seconds = _options.read_timeout + 1
    engine = new_engine(url, autocommit=True)
    try:
        with engine.connect() as connection:
            raw = connection.connection.dbapi_connection
            with watchdog.deadline(raw, seconds) as guard:
                try:
                    try:
                        row = connection.execute(text(_SYSTEM_IDENTITY)).one()
                    except DBAPIError as exc:
                        if getattr(exc.orig, "pgcode", None) != "42501":
                            raise
                        row = connection.execute(text(_FALLBACK_IDENTITY)).one()
                except DBAPIError as exc:
                    if guard is not None and guard.fired:
                        raise Unavailable(
                            f"the target {masked(url)} did not answer within {seconds:g}s"
                        ) from exc
                    raise
            return str(row[0]), str(row[1])
    finally:
        engine.dispose()


def _database_missing(exc: BaseException) -> bool:
    code = getattr(getattr(exc, "orig", None), "pgcode", None)
    detail = describe(exc)
    return code == "3D000" or ("does not exist" in detail and "database" in detail)


def engine_for(url: str) -> Engine:
    """The pool that reads of the target for pages go through, one per URL and process.

    ``TARGET_READ_POOL`` connections and no overflow; waiting for one longer than
    ``TARGET_READ_TIMEOUT`` (and a half) fails (``admin.migrations.reads`` says so). Each
    connection has that timeout as its ``lock_timeout`` and ``statement_timeout``: a locked
    version table or a slow server costs a page seconds, not the length of the lock.
    Connections are in autocommit: the reads need no transaction, and psycopg2 would
    otherwise spend a round trip on BEGIN and another on the ROLLBACK at check-in.
    No pre-ping: ``reads.run`` retries once on a connection the server dropped, within
    its deadline (a ping outside it could hang on a black-holed link).
    """
    with _engines_lock:
        engine = _engines.get(url)
        if engine is None:
            engine = _read_engine(url, _options)
            _engines[url] = engine
        return engine


def _read_engine(url: str, opts: ConnectOptions) -> Engine:
    if not is_postgresql(url):
        # sqlite3's busy timeout: how long a read waits for a writer's lock.
        return create_engine(url, poolclass=NullPool, connect_args={"timeout": opts.read_timeout})
    engine = create_engine(
        url,
        pool_size=opts.read_pool,
        max_overflow=0,
        # A little past the reads' own timeout: a waiter is woken by a read that gave up on
        # a lock (and answers with what it found) before giving up itself.
        pool_timeout=opts.read_timeout + 0.5,
        isolation_level="AUTOCOMMIT",
        connect_args={**opts.libpq(), "application_name": "apex-schema-admin reads"},
    )
    limit = f"{max(1, round(opts.read_timeout * 1000))}ms"

    @event.listens_for(engine, "connect")
    def _limits(dbapi_connection: Any, _record: Any) -> None:
        autocommit = dbapi_connection.autocommit
        dbapi_connection.autocommit = True
        with dbapi_connection.cursor() as cursor:
            cursor.execute(
                "SELECT set_config('lock_timeout', %s, false), "
                "set_config('statement_timeout', %s, false)",
                (limit, limit),
            )
        dbapi_connection.autocommit = autocommit

    return engine


def new_engine(
    url: str, *, application_name: str | None = None, autocommit: bool = False
) -> Engine:
    """An engine on the target (no pool) with this process's connect timeout and keepalives."""
    if is_postgresql(url):
        connect_args = _options.libpq()
        if application_name:
            connect_args["application_name"] = application_name[:63]
        options: dict[str, object] = {"isolation_level": "AUTOCOMMIT"} if autocommit else {}
        return create_engine(url, poolclass=NullPool, connect_args=connect_args, **options)
    return create_engine(url, poolclass=NullPool)


def dispose_engines() -> None:
    with _engines_lock:
        for engine in _engines.values():
            engine.dispose()
        _engines.clear()


def unreachable(url: str, exc: BaseException) -> AdminError:
    """The one clear message for a target that cannot be reached."""
    detail = describe(exc)
    if _database_missing(exc):
        return TargetMissing(
            f"the database {make_url(url).database!r} does not exist on "
            f"{masked(url)}: create it with `schema-admin init-db` (make init-db)"
        )
    return Unavailable(f"cannot reach the target {masked(url)}: {detail}")


def check_exists(url: str) -> None:
    """Raise TargetMissing for a SQLite file that is not there (connecting would create it)."""
    path = sqlite_path(url)
    if path is not None and not path.exists():
        raise TargetMissing(
            f"the SQLite database {path} does not exist yet: create it with "
            "`schema-admin init-db` (make init-db) or apply the migrations"
        )


def database_exists(url: str) -> bool:
    path = sqlite_path(url)
    if path is not None:
        return path.exists()
    if not is_postgresql(url):
        return True
    name = make_url(url).database
    engine = new_engine(_maintenance_url(url))
    try:
        with engine.connect() as connection:
            found = connection.execute(
                text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name}
            ).first()
        return found is not None
    except SQLAlchemyError as exc:
        raise unreachable(url, exc) from exc
    finally:
        engine.dispose()


def _maintenance_url(url: str) -> str:
    return make_url(url).set(database="postgres").render_as_string(hide_password=False)


def database_name(url: str) -> str:
    """The database's name in ``url`` (a SQLite target: its file path)."""
    return make_url(url).database or url


def create_database(url: str) -> bool:
    """Create the target database when it is missing; True when it was created."""
    if database_exists(url):
        return False
    path = sqlite_path(url)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, poolclass=NullPool)
        with engine.connect() as connection:
            connection.execute(text("PRAGMA journal_mode = WAL"))
        engine.dispose()
        return True
    name = make_url(url).database or ""
    owner = make_url(url).username
    engine = create_engine(_maintenance_url(url), isolation_level="AUTOCOMMIT", poolclass=NullPool)
    try:
        with engine.connect() as connection:
            quoted = connection.dialect.identifier_preparer.quote(name)
            connection.execute(text(f"CREATE DATABASE {quoted}"))
            if owner:
                owner_q = connection.dialect.identifier_preparer.quote(owner)
                connection.execute(text(f"ALTER DATABASE {quoted} OWNER TO {owner_q}"))
    except DBAPIError as exc:
        if getattr(exc.orig, "pgcode", None) == "42P04":  # created meanwhile by another process
            return False
        raise Unavailable(
            f"could not create the database {name!r} on {masked(url)}: {describe(exc)}"
        ) from exc
    finally:
        engine.dispose()
    return True
