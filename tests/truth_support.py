"""What the fault tests (tests/test_truth_*.py) share: a target at its first revision, a
call that must not stay blocked, an API token on a live server."""

from __future__ import annotations

import threading
from typing import Any

from helpers import TEST_SECRET_KEY, LiveServer
from sqlalchemy import create_engine, text

from admin import audit, migrations
from admin.auth import tokens
from admin.config import Settings
from admin.runtime import Runtime
from admin.store.models import Source


def at_first_revision(url: str, revision: str = "aaa111") -> None:
    """A version table at ``revision`` (the project's files are not run: quicker)."""
    engine = create_engine(url)
    try:
        with engine.begin() as connection:
            connection.execute(text("DROP TABLE IF EXISTS alembic_version"))
            connection.execute(
                text("CREATE TABLE alembic_version (version_num varchar(32) PRIMARY KEY)")
            )
            connection.execute(text("INSERT INTO alembic_version VALUES (:r)"), {"r": revision})
    finally:
        engine.dispose()


def in_thread(call: Any, *args: Any) -> Any:
    """``call(*args)`` in a thread: its result, or the test fails if it is still blocked
    (what the panel did before: wait for the lock's end or for TCP to give up)."""
    result: list[Any] = []
    worker = threading.Thread(target=lambda: result.append(call(*args)), daemon=True)
    worker.start()
    worker.join(30)
    assert not worker.is_alive(), f"{getattr(call, '__name__', call)} is still blocked"
    return result[0]


def bearer(server: LiveServer, username: str) -> str:
    """A new API token for ``username`` in ``server``'s store."""
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        admin_database_url=server.store_url,
        database_url="sqlite://",
        secret_key=TEST_SECRET_KEY,
        var_dir=server.root / "var",
    )
    runtime = Runtime.open(settings)
    try:
        with runtime.transaction() as session:
            created = tokens.create(
                session,
                settings,
                audit.Actor("tests", None, Source.CLI),
                name="truth",
                username=username,
            )
            return created.secret
    finally:
        runtime.close()
        migrations.configure(migrations.ConnectOptions())  # Runtime.open set this process's
