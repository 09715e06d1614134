"""The store's schema version: upgrade it, read it, compare it with the head.

The store keeps its own Alembic revisions inside the package, with their own version
table, so the panel's schema never mixes with the target's.
"""

from __future__ import annotations

import fcntl
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import SQLAlchemyError

from admin.errors import Unavailable, describe
from admin.store.db import StoreUnavailable, ensure_sqlite_parent
from admin.urls import mask_url

VERSION_TABLE = "admin_alembic_version"
MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
# pg_advisory_lock key for store upgrades: several replicas may start at once.
_STORE_UPGRADE_LOCK = 0x5C4E_A0A1

log = logging.getLogger(__name__)


def _config(connection: Connection | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def head_revision() -> str:
    head = ScriptDirectory.from_config(_config()).get_current_head()
    assert head is not None, "the store has no revisions"
    return head


def current_revision(connection: Connection) -> str | None:
    context = MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE})
    return context.get_current_revision()


def is_current(engine: Engine) -> bool:
    with engine.connect() as connection:
        return current_revision(connection) == head_revision()


@contextmanager
def _upgrade_lock(engine: Engine, connection: Connection) -> Iterator[None]:
    """Serialize store upgrades across processes: an advisory lock or a lock file."""
    if engine.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_lock(:k)"), {"k": _STORE_UPGRADE_LOCK})
        connection.commit()
        try:
            yield
        finally:
            connection.rollback()
            connection.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": _STORE_UPGRADE_LOCK})
            connection.commit()
        return
    database = engine.url.database
    if not database or database == ":memory:":
        yield
        return
    lock_path = Path(database + ".upgrade-lock")
    with open(lock_path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def upgrade(engine: Engine, revision: str = "head") -> tuple[str | None, str | None]:
    """Bring the store to ``revision``; returns the revisions before and after."""
    ensure_sqlite_parent(engine.url.render_as_string(hide_password=False))
    try:
        with engine.connect() as connection, _upgrade_lock(engine, connection):
            before = current_revision(connection)
            connection.commit()
            command.upgrade(_config(connection), revision)
            connection.commit()
            after = current_revision(connection)
            connection.commit()
    except StoreUnavailable:
        raise  # already one line that says what to do
    except SQLAlchemyError as exc:
        where = mask_url(engine.url)
        raise Unavailable(f"the store {where} could not be upgraded: {describe(exc)}") from exc
    if before != after:
        log.info("store schema upgraded from %s to %s", before or "empty", after)
    return before, after
