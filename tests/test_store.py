"""The store's schema: revisions apply on SQLite and PostgreSQL, again and at once."""

from __future__ import annotations

import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from sqlalchemy import inspect, text
from sqlalchemy.exc import IntegrityError

from admin.store import schema
from admin.store.db import make_store_engine
from admin.store.models import Base, Job, utcnow

TABLES = {
    "users",
    "user_sessions",
    "api_tokens",
    "login_failures",
    "jobs",
    "job_lines",
    "backups",
    "audit_events",
    schema.VERSION_TABLE,
}


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.sqlite3'}"
    return request.getfixturevalue("pg_databases").create("store")


def test_upgrade_creates_every_table_and_is_idempotent(store_url: str) -> None:
    engine = make_store_engine(store_url)
    try:
        assert schema.upgrade(engine) == (None, schema.head_revision())
        assert set(inspect(engine).get_table_names()) >= TABLES
        assert schema.upgrade(engine) == (schema.head_revision(), schema.head_revision())
        assert schema.is_current(engine)
    finally:
        engine.dispose()


def test_models_match_the_revisions(store_url: str) -> None:
    """Autogenerate finds nothing to do: the hand-written revisions equal the models."""
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    engine = make_store_engine(store_url)
    try:
        schema.upgrade(engine)
        with engine.connect() as connection:
            context = MigrationContext.configure(
                connection, opts={"version_table": schema.VERSION_TABLE}
            )
            diff = compare_metadata(context, Base.metadata)
        assert diff == []
    finally:
        engine.dispose()


def test_one_active_job_per_target_is_enforced_by_the_database(store_url: str) -> None:
    from sqlalchemy.orm import Session

    engine = make_store_engine(store_url)
    schema.upgrade(engine)

    def job(status: str) -> Job:
        return Job(
            kind="upgrade",
            status=status,
            target_key="t1",
            target_display="x",
            requested_by="u",
            source="cli",
            created_at=utcnow(),
        )

    try:
        with Session(engine) as session:
            session.add_all([job("succeeded"), job("failed"), job("running")])
            session.commit()
            session.add(job("queued"))
            with pytest.raises(IntegrityError):
                session.commit()
    finally:
        engine.dispose()


def test_concurrent_upgrades_of_one_store(store_url: str) -> None:
    """Several processes starting at once (replicas, entrypoints) upgrade once."""
    code = (
        "import sys; from admin.store.db import make_store_engine; "
        "from admin.store import schema; "
        "print(schema.upgrade(make_store_engine(sys.argv[1])))"
    )
    with ThreadPoolExecutor(3) as pool:
        results = list(
            pool.map(
                lambda _: subprocess.run(
                    [sys.executable, "-c", code, store_url],
                    capture_output=True,
                    text=True,
                    timeout=120,
                ),
                range(3),
            )
        )
    assert all(r.returncode == 0 for r in results), [r.stderr for r in results]
    engine = make_store_engine(store_url)
    try:
        assert schema.is_current(engine)
        with engine.connect() as connection:
            rows = connection.execute(text(f"SELECT * FROM {schema.VERSION_TABLE}")).all()
        assert len(rows) == 1
    finally:
        engine.dispose()


def test_cli_store_upgrade(tmp_path: Path) -> None:
    env_url = f"sqlite:///{tmp_path / 'cli-store.sqlite3'}"
    run = [sys.executable, "-m", "admin", "store", "upgrade"]
    import os

    env = {**os.environ, "ADMIN_DATABASE_URL": env_url, "VAR_DIR": str(tmp_path / "var")}
    first = subprocess.run(run, env=env, capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert first.returncode == 0, first.stderr
    assert "upgraded from empty" in first.stdout
    second = subprocess.run(run, env=env, capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert second.returncode == 0
    assert "up to date" in second.stdout
    status = subprocess.run(
        [sys.executable, "-m", "admin", "store", "status"],
        env=env,
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=60,
    )
    assert status.returncode == 0
    assert schema.head_revision() in status.stdout
