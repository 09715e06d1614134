"""Helpers for the rehearsal tests: runtimes on real PostgreSQL, schema and version reads."""

from __future__ import annotations

from typing import Any

from sqlalchemy import create_engine, text

from admin import audit, migrations
from admin.jobs import run_in_foreground
from admin.jobs.protocol import heads_text
from admin.rehearsal import actions, catalog, records
from admin.runtime import Runtime
from admin.store.models import Job, Rehearsal, Source

ALICE = audit.Actor("alice", "operator", Source.WEB, "10.1.1.1")


def quiet(_: str) -> None:
    return None


def execute(url: str, *statements: str) -> None:
    engine = create_engine(url)
    try:
        with engine.begin() as connection:
            for statement in statements:
                connection.execute(text(statement))
    finally:
        engine.dispose()


def upgrade(rt: Runtime, target: str) -> None:
    project = migrations.open_project(rt.settings.alembic_config)
    engine = migrations.new_engine(rt.settings.database_url)
    try:
        with engine.connect() as connection:
            migrations.run(
                project, connection, migrations.Command.UPGRADE, target, on_event=lambda e: None
            )
    finally:
        engine.dispose()


def state(url: str, project_ini: Any) -> tuple[str, catalog.Snapshot]:
    """A database's revision and schema: what 'never touched' is checked against."""
    project = migrations.open_project(project_ini)
    revision = heads_text(migrations.read_current(project, url)[1])
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            return revision, catalog.snapshot(connection)
    finally:
        engine.dispose()


def databases(server_url: str) -> set[str]:
    engine = create_engine(server_url)
    try:
        with engine.connect() as connection:
            return set(connection.execute(text("SELECT datname FROM pg_database")).scalars())
    finally:
        engine.dispose()


def rehearse(
    rt: Runtime, target: str = "heads", actor: audit.Actor = ALICE
) -> tuple[Job, Rehearsal]:
    job = run_in_foreground(rt, actions.rehearsal_request(target), actor, echo=quiet)
    with rt.reads() as session:
        row = records.of_job(session, job.id)
        assert row is not None, f"job {job.id} ({job.status}: {job.error}) left no rehearsal"
        session.expunge(row)
    return job, row


def drop_database(server_url: str, name: str) -> None:
    execute_autocommit(server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def execute_autocommit(server_url: str, statement: str) -> None:
    engine = create_engine(server_url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as connection:
            connection.execute(text(statement))
    finally:
        engine.dispose()
