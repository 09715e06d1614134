"""Connections to the target database, and what to say when there is none."""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path

from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlalchemy.pool import NullPool

from admin.errors import AdminError, Unavailable, describe

CONNECT_TIMEOUT = 5
_engines: dict[str, Engine] = {}
_engines_lock = threading.Lock()


class TargetMissing(Unavailable):
    """The target database does not exist (the seed's "database does not exist")."""

    title = "Database missing"


def masked(url: str | URL) -> str:
    return (make_url(url) if isinstance(url, str) else url).render_as_string(hide_password=True)


def is_postgresql(url: str) -> bool:
    return make_url(url).get_backend_name() == "postgresql"


def sqlite_path(url: str) -> Path | None:
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    return Path(parsed.database)


def target_key(url: str) -> str:
    """Who the target is, whatever user or password reaches it: one active job per key."""
    parsed = make_url(url)
    path = sqlite_path(url)
    if path is not None:
        where = f"sqlite:{path.resolve()}"
    else:
        where = f"{parsed.get_backend_name()}:{parsed.host}:{parsed.port or 5432}/{parsed.database}"
    return hashlib.sha256(where.encode()).hexdigest()


def engine_for(url: str) -> Engine:
    """A pooled engine per target URL, shared by the process (status on every page).

    Its connections are in autocommit: the reads made through it need no transaction, and
    psycopg2 would otherwise spend a round trip on BEGIN and another on the ROLLBACK when the
    connection goes back to the pool (5 round trips per status instead of 3).
    """
    with _engines_lock:
        engine = _engines.get(url)
        if engine is None:
            engine = new_engine(url, pooled=True, autocommit=True)
            _engines[url] = engine
        return engine


def new_engine(
    url: str,
    *,
    pooled: bool = False,
    application_name: str | None = None,
    autocommit: bool = False,
) -> Engine:
    """An engine on the target that fails fast when the server does not answer."""
    if is_postgresql(url):
        connect_args: dict[str, object] = {"connect_timeout": CONNECT_TIMEOUT}
        if application_name:
            connect_args["application_name"] = application_name[:63]
        options: dict[str, object] = {"isolation_level": "AUTOCOMMIT"} if autocommit else {}
        if pooled:
            return create_engine(
                url,
                pool_size=2,
                max_overflow=4,
                pool_pre_ping=True,
                connect_args=connect_args,
                **options,
            )
        return create_engine(url, poolclass=NullPool, connect_args=connect_args, **options)
    return create_engine(url, poolclass=NullPool)


def dispose_engines() -> None:
    with _engines_lock:
        for engine in _engines.values():
            engine.dispose()
        _engines.clear()


def unreachable(url: str, exc: BaseException) -> AdminError:
    """The one clear message for a target that cannot be reached."""
    code = getattr(getattr(exc, "orig", None), "pgcode", None)
    detail = describe(exc)
    if code == "3D000" or "does not exist" in detail and "database" in detail:
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
