"""The CRM's Alembic project (alembic.ini, alembic/, app/models) on real PostgreSQL and SQLite.

Alembic runs in-process through ``alembic.command`` with the connection handed to env.py the
way the panel does it, and as the plain ``alembic`` CLI the operations guide types.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext, MigrationInfo
from alembic.script import Script, ScriptDirectory
from alembic.util import CommandError
from projects import REPO_ROOT
from sqlalchemy import Connection, create_engine, event, inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from app.models import Base
from tests.conftest import PgDatabases

ALEMBIC_INI = REPO_ROOT / "alembic.ini"
ALEMBIC_CLI = Path(sys.executable).with_name("alembic")

INITIAL = "196dfdb50f6c"
AMOCRM = "20240101000000"
PHOTOS = "3c9e1f7a2b4d"
PREFERENCES = "8a1d4e6f0c27"
MERGE = "b5f2c8d91e03"
IRREVERSIBLE = "e47a90b3d6f1"
BACKFILL = "5d0c7be2a918"
CONCURRENT = "f19b3a6c4e85"
HEAD = CONCURRENT

CRM_TABLES = {
    "users",
    "agents",
    "clients",
    "properties",
    "deals",
    "activities",
    "amocrm_tokens",
    "property_photos",
    "client_preferences",
}


# --- helpers -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def script() -> ScriptDirectory:
    return ScriptDirectory.from_config(Config(str(ALEMBIC_INI)))


def upgrade_order(script: ScriptDirectory) -> list[str]:
    """Every revision, base first, each after all its parents."""
    return [rev.revision for rev in reversed(list(script.walk_revisions()))]


def parents(script: ScriptDirectory, revision: str) -> tuple[str, ...]:
    rev = script.get_revision(revision)
    assert rev is not None
    return rev._normalized_down_revisions


def one_step_down(script: ScriptDirectory, revision: str) -> str:
    """The downgrade target that removes exactly ``revision``, a current head.

    ``-1`` is ambiguous at a merge point and on two heads; ``REV@-1`` walks one step down
    REV's own branch, and a merge comes off by going down to one of its parents.
    """
    rev = script.get_revision(revision)
    assert isinstance(rev, Script)
    if rev.is_merge_point:
        return rev._normalized_down_revisions[0]
    return f"{revision}@-1"


@pytest.fixture(params=["postgresql", pytest.param("sqlite")], ids=["postgresql", "sqlite"])
def crm_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty target database: a fresh PostgreSQL database, or an SQLite file."""
    if request.param == "postgresql":
        request.applymarker(pytest.mark.postgres)
        databases: PgDatabases = request.getfixturevalue("pg_databases")
        return databases.create("crm")
    return f"sqlite:///{tmp_path / 'crm.sqlite3'}"


class Target:
    """Runs Alembic commands on one database the way the panel does: a live connection."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.dialect = make_url(url).get_backend_name()

    def _engine(self) -> Any:
        return create_engine(self.url, poolclass=NullPool)

    def run(
        self, fn: Callable[..., None], *args: Any, statements: list[str] | None = None
    ) -> list[tuple[str, str]]:
        """Run ``fn(config, *args)``; returns the steps applied as (direction, revision)."""
        steps: list[tuple[str, str]] = []

        def on_version_apply(step: MigrationInfo, **_: Any) -> None:
            revision = step.up_revision_id
            assert revision is not None
            steps.append(("up" if step.is_upgrade else "down", revision))

        engine = self._engine()
        if statements is not None:

            @event.listens_for(engine, "before_cursor_execute")
            def record(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
                statements.append(" ".join(statement.split()))

        try:
            with engine.connect() as connection:
                config = Config(str(ALEMBIC_INI))
                config.attributes["connection"] = connection
                config.attributes["panel"] = True
                config.attributes["on_version_apply"] = on_version_apply
                fn(config, *args)
                connection.commit()
        finally:
            engine.dispose()
        return steps

    def upgrade(self, revision: str, **kw: Any) -> list[tuple[str, str]]:
        return self.run(command.upgrade, revision, **kw)

    def downgrade(self, revision: str, **kw: Any) -> list[tuple[str, str]]:
        return self.run(command.downgrade, revision, **kw)

    def connect(self) -> Iterator[Connection]:
        engine = self._engine()
        try:
            with engine.connect() as connection:
                yield connection
        finally:
            engine.dispose()

    def heads(self) -> set[str]:
        for connection in self.connect():
            return set(MigrationContext.configure(connection).get_current_heads())
        raise AssertionError("unreachable")

    def query(self, sql: str, **params: Any) -> list[tuple[Any, ...]]:
        for connection in self.connect():
            return [tuple(row) for row in connection.execute(text(sql), params)]
        raise AssertionError("unreachable")

    def execute(self, *statements: str) -> None:
        for connection in self.connect():
            for sql in statements:
                connection.execute(text(sql))
            connection.commit()

    def tables(self) -> set[str]:
        for connection in self.connect():
            return set(inspect(connection).get_table_names())
        raise AssertionError("unreachable")

    def columns(self, table: str) -> set[str]:
        for connection in self.connect():
            return {column["name"] for column in inspect(connection).get_columns(table)}
        raise AssertionError("unreachable")

    def indexes(self, table: str) -> dict[str, list[str | None]]:
        for connection in self.connect():
            return {
                str(index["name"]): list(index["column_names"])
                for index in inspect(connection).get_indexes(table)
            }
        raise AssertionError("unreachable")


def _cli_env(url: str) -> dict[str, str]:
    env = dict(os.environ)  # the session fixture has removed the panel's settings already
    env["DATABASE_URL"] = url
    return env


def run_cli(url: str, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """The plain alembic CLI, as the operations guide types it, from another directory."""
    return subprocess.run(
        [str(ALEMBIC_CLI), "-c", str(ALEMBIC_INI), *args],
        cwd=cwd,
        env=_cli_env(url),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def seed_url(url: str) -> str:
    """The URL as the seed writes it: ``postgresql://...`` with no driver."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "postgresql":
        parsed = parsed.set(drivername="postgresql")
    return parsed.render_as_string(hide_password=False)


# --- the graph -----------------------------------------------------------------------------


def test_the_history_has_the_seeds_revisions_a_branch_a_merge_and_one_head(
    script: ScriptDirectory,
) -> None:
    versions = REPO_ROOT / "alembic" / "versions"
    assert (versions / "196dfdb50f6c_initial_migration.py").is_file()
    assert (versions / "20240101000000_add_amocrm_tokens.py").is_file()

    assert upgrade_order(script)[:2] == [INITIAL, AMOCRM]
    assert set(upgrade_order(script)) == {
        INITIAL,
        AMOCRM,
        PHOTOS,
        PREFERENCES,
        MERGE,
        IRREVERSIBLE,
        BACKFILL,
        CONCURRENT,
    }
    assert script.get_heads() == [HEAD]
    assert script.get_bases() == [INITIAL]
    assert parents(script, AMOCRM) == (INITIAL,)
    assert parents(script, PHOTOS) == parents(script, PREFERENCES) == (AMOCRM,)
    assert parents(script, MERGE) == (PHOTOS, PREFERENCES)

    branch_points = [r.revision for r in script.walk_revisions() if r.is_branch_point]
    merge_points = [r.revision for r in script.walk_revisions() if r.is_merge_point]
    assert branch_points == [AMOCRM]
    assert merge_points == [MERGE]
    # The irreversible revision sits in the middle: `downgrade -1` from head works twice.
    assert parents(script, HEAD) == (BACKFILL,)
    assert parents(script, BACKFILL) == (IRREVERSIBLE,)
    assert parents(script, IRREVERSIBLE) == (MERGE,)


def test_every_revision_file_has_alembics_docstring_and_a_realistic_id(
    script: ScriptDirectory,
) -> None:
    for rev in script.walk_revisions():
        assert rev.revision == INITIAL or re.fullmatch(r"[0-9a-f]{12}|\d{14}", rev.revision)
        doc = rev.module.__doc__
        assert doc, rev.path
        lines = doc.strip().splitlines()
        assert lines[0] and not lines[0].startswith("Revision ID"), rev.path
        down = ", ".join(rev._normalized_down_revisions)
        assert f"\nRevision ID: {rev.revision}\n" in doc, rev.path
        assert re.search(rf"\nRevises: ?{re.escape(down)}\n", doc), rev.path
        assert re.search(r"\nCreate Date: \d{4}-\d\d-\d\d \d\d:\d\d:\d\d", doc), rev.path
        source = Path(rev.path).read_text()
        assert "from __future__ import annotations" in source, rev.path
        assert Path(rev.path).name.startswith(rev.revision + "_"), rev.path


def test_the_template_writes_a_typed_revision_on_top_of_head(tmp_path: Path) -> None:
    project = tmp_path / "alembic"
    shutil.copytree(REPO_ROOT / "alembic", project, ignore=shutil.ignore_patterns("__pycache__"))
    config = Config()
    config.set_main_option("script_location", str(project))
    config.set_main_option("path_separator", "os")

    written = command.revision(config, "Add user preferences", rev_id="0a1b2c3d4e5f")

    assert isinstance(written, Script)
    source = Path(written.path).read_text()
    compile(source, written.path, "exec")
    assert source.startswith('"""Add user preferences\n\nRevision ID: 0a1b2c3d4e5f\n')
    assert f"Revises: {HEAD}\n" in source
    assert "from __future__ import annotations" in source
    assert f"down_revision = {HEAD!r}" in source
    assert "def upgrade() -> None:" in source and "def downgrade() -> None:" in source


# --- up and down on both dialects ----------------------------------------------------------


def test_every_revision_goes_up_one_step_at_a_time_then_down_to_the_irreversible_one(
    crm_url: str, script: ScriptDirectory
) -> None:
    target = Target(crm_url)
    order = upgrade_order(script)
    expected: set[str] = set()

    for revision in order:
        assert target.upgrade(revision) == [("up", revision)]
        expected = (expected - set(parents(script, revision))) | {revision}
        assert target.heads() == expected
    assert target.heads() == {HEAD}
    assert target.query("SELECT * FROM alembic_version") == [(HEAD,)]
    assert target.tables() == CRM_TABLES | {"alembic_version"}

    above = order[order.index(IRREVERSIBLE) + 1 :]
    for revision in reversed(above):
        assert target.downgrade(one_step_down(script, revision)) == [("down", revision)]
        assert target.heads() == set(parents(script, revision))
    assert target.heads() == {IRREVERSIBLE}

    with pytest.raises(CommandError) as failure:
        target.downgrade("-1")
    message = str(failure.value)
    assert "e47a90b3d6f1" in message
    assert "passport_number" in message
    assert "restore the backup taken before revision e47a90b3d6f1" in message
    # Nothing half done: still at the boundary, the column still gone.
    assert target.query("SELECT * FROM alembic_version") == [(IRREVERSIBLE,)]
    assert "passport_number" not in target.columns("clients")


def test_revisions_below_the_irreversible_one_go_down_to_base(
    crm_url: str, script: ScriptDirectory
) -> None:
    target = Target(crm_url)
    order = upgrade_order(script)
    below = order[: order.index(IRREVERSIBLE)]
    assert target.upgrade(MERGE) == [("up", revision) for revision in below]

    for revision in reversed(below):
        assert target.downgrade(one_step_down(script, revision)) == [("down", revision)]
    assert target.heads() == set()
    assert target.tables() == {"alembic_version"}
    assert target.query("SELECT * FROM alembic_version") == []


def test_downgrade_to_base_from_head_stops_at_the_irreversible_revision(
    crm_url: str,
) -> None:
    target = Target(crm_url)
    target.upgrade("head")

    with pytest.raises(CommandError, match="restore the backup taken before revision e47a90b3d6f1"):
        target.downgrade("base")

    # Each revision runs in its own transaction: the two above it were undone and committed.
    assert target.query("SELECT * FROM alembic_version") == [(IRREVERSIBLE,)]
    assert "commission_amount" not in target.columns("deals")
    assert target.indexes("activities")["ix_activities_client_id"] == ["client_id"]
    assert "ix_activities_client_id_occurred_at" not in target.indexes("activities")


def test_data_survives_the_history_and_the_backfill_computes_commissions(
    crm_url: str,
) -> None:
    target = Target(crm_url)
    target.upgrade(MERGE)
    target.execute(
        "INSERT INTO users (id, email, password_hash, full_name, role) VALUES "
        "(1, 'somchai@apex.asia', 'x', 'Somchai P.', 'agent'), "
        "(2, 'linh@apex.asia', 'x', 'Linh N.', 'agent')",
        "INSERT INTO agents (id, user_id, commission_rate) VALUES (1, 1, 3.00), (2, 2, 2.50)",
        "INSERT INTO clients (id, full_name, phone, passport_number, agent_id) VALUES "
        "(1, 'Anna K.', '+66 81 000 0001', 'AB1234567', 1), "
        "(2, 'Tom W.', '+66 81 000 0002', 'XY7654321', 2)",
        "INSERT INTO properties (id, title, property_type, price, currency, city, district, "
        "latitude, longitude, agent_id) VALUES "
        "(1, 'Sea-view condo', 'condo', 250000.00, 'USD', 'Phuket', 'Kata', "
        "7.820000, 98.298000, 1), "
        "(2, 'Pool villa', 'villa', 4500000.00, 'THB', 'Bangkok', 'Sukhumvit', "
        "13.736700, 100.560600, 2)",
        "INSERT INTO deals (id, property_id, client_id, agent_id, stage, amount, currency) VALUES "
        "(1, 1, 1, 1, 'won', 250000.00, 'USD'), "
        "(2, 2, 2, 2, 'negotiation', 123456.78, 'THB'), "
        "(3, 2, 1, NULL, 'lead', 99000.00, 'THB'), "
        "(4, 1, 2, 2, 'lead', NULL, 'USD')",
        "INSERT INTO activities (client_id, deal_id, agent_id, kind, subject, occurred_at) "
        "VALUES (1, 1, 1, 'viewing', 'Viewing at Kata', '2024-01-20 10:00:00+00:00')",
        "INSERT INTO property_photos (property_id, url, position, is_cover) VALUES "
        "(1, 'https://cdn.apex.asia/p/1/1.jpg', 0, " + _true(target) + ")",
        "INSERT INTO client_preferences (client_id, cities, min_price, max_price) VALUES "
        "(1, '[\"Phuket\"]', 100000, 300000)",
    )

    assert target.upgrade(IRREVERSIBLE) == [("up", IRREVERSIBLE)]
    assert "passport_number" not in target.columns("clients")
    # On SQLite batch mode rebuilt clients: rows, keys and references must have survived.
    assert target.query("SELECT id, full_name, phone, agent_id FROM clients ORDER BY id") == [
        (1, "Anna K.", "+66 81 000 0001", 1),
        (2, "Tom W.", "+66 81 000 0002", 2),
    ]
    assert target.query("SELECT count(*) FROM deals d JOIN clients c ON c.id = d.client_id") == [
        (4,)
    ]

    assert target.upgrade(BACKFILL) == [("up", BACKFILL)]
    commissions = {
        deal: None if value is None else Decimal(str(value))
        for deal, value in target.query("SELECT id, commission_amount FROM deals ORDER BY id")
    }
    assert commissions == {
        1: Decimal("7500.00"),  # 250000.00 x 3.00%
        2: Decimal("3086.42"),  # 123456.78 x 2.50% = 3086.4195
        3: None,  # no agent
        4: None,  # no amount
    }

    assert target.upgrade("head") == [("up", CONCURRENT)]
    assert target.downgrade("-1") == [("down", CONCURRENT)]
    assert target.downgrade("-1") == [("down", BACKFILL)]
    assert "commission_amount" not in target.columns("deals")
    assert target.query("SELECT id, amount IS NULL FROM deals ORDER BY id") == [
        (1, False),
        (2, False),
        (3, False),
        (4, True),
    ]
    assert target.query("SELECT count(*) FROM property_photos") == [(1,)]
    assert target.query("SELECT count(*) FROM client_preferences") == [(1,)]


def _true(target: Target) -> str:
    return "true" if target.dialect == "postgresql" else "1"


def test_the_models_match_the_database_at_head(crm_url: str) -> None:
    target = Target(crm_url)
    target.upgrade("head")

    for connection in target.connect():
        context = MigrationContext.configure(
            connection, opts={"compare_type": True, "compare_server_default": True}
        )
        assert compare_metadata(context, Base.metadata) == []
        # Autogenerate does not compare CHECK constraints: see that none was lost on the way
        # (on SQLite batch mode rebuilds tables from what it reflects).
        inspector = inspect(connection)
        for table in Base.metadata.sorted_tables:
            expected = {
                str(c.name) for c in table.constraints if c.__class__.__name__ == "CheckConstraint"
            }
            found = {str(c["name"]) for c in inspector.get_check_constraints(table.name)}
            assert found == expected, table.name


# --- PostgreSQL only: the concurrent index -------------------------------------------------


@pytest.mark.postgres
def test_the_activities_index_is_built_concurrently_and_a_retry_after_a_failure_works(
    pg_databases: PgDatabases,
) -> None:
    target = Target(pg_databases.create("crm"))
    target.upgrade(BACKFILL)
    # What a failed CREATE INDEX CONCURRENTLY leaves behind: an index of that name that is
    # not the one wanted. The revision must still go through.
    target.execute("CREATE INDEX ix_activities_client_id_occurred_at ON activities (body)")

    statements: list[str] = []
    assert target.upgrade("head", statements=statements) == [("up", CONCURRENT)]

    assert (
        "CREATE INDEX CONCURRENTLY ix_activities_client_id_occurred_at "
        "ON activities (client_id, occurred_at)" in statements
    )
    assert "DROP INDEX CONCURRENTLY IF EXISTS ix_activities_client_id" in statements
    valid = target.query(
        "SELECT c.relname, i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
        "WHERE i.indrelid = 'activities'::regclass AND c.relname LIKE 'ix_activities_client%'"
    )
    assert valid == [("ix_activities_client_id_occurred_at", True)]
    assert target.indexes("activities")["ix_activities_client_id_occurred_at"] == [
        "client_id",
        "occurred_at",
    ]

    statements.clear()
    assert target.downgrade("-1", statements=statements) == [("down", CONCURRENT)]
    assert "CREATE INDEX CONCURRENTLY ix_activities_client_id ON activities (client_id)" in (
        statements
    )
    assert target.indexes("activities")["ix_activities_client_id"] == ["client_id"]
    assert "ix_activities_client_id_occurred_at" not in target.indexes("activities")


# --- the plain alembic CLI -----------------------------------------------------------------


def test_plain_alembic_upgrade_head_works_with_database_url(crm_url: str, tmp_path: Path) -> None:
    url = seed_url(crm_url)
    workdir = tmp_path / "elsewhere"
    workdir.mkdir()

    upgraded = run_cli(url, "upgrade", "head", cwd=workdir)
    assert upgraded.returncode == 0, upgraded.stderr
    assert f"Running upgrade 5d0c7be2a918 -> {HEAD}" in upgraded.stderr

    current = run_cli(url, "current", cwd=workdir)
    assert current.returncode == 0, current.stderr
    assert f"{HEAD} (head)" in current.stdout
    assert Target(crm_url).query("SELECT * FROM alembic_version") == [(HEAD,)]

    down = run_cli(url, "downgrade", "-1", cwd=workdir)
    assert down.returncode == 0, down.stderr
    assert Target(crm_url).heads() == {BACKFILL}

    # The irreversible step: one plain line a person can act on, no traceback.
    refused = run_cli(url, "downgrade", "base", cwd=workdir)
    assert refused.returncode != 0
    assert "Traceback" not in refused.stderr + refused.stdout
    said = " ".join(refused.stdout.split())  # alembic wraps its message to the terminal
    assert re.search(
        r"FAILED: Revision e47a90b3d6f1 .*restore the backup taken before revision "
        r"e47a90b3d6f1 was applied\.$",
        said,
    ), refused.stdout
    assert Target(crm_url).heads() == {IRREVERSIBLE}


def test_offline_sql_for_postgresql_renders_every_step_without_a_database(
    tmp_path: Path,
) -> None:
    nowhere = "postgresql://nobody@127.0.0.1:1/no_such_database"

    rendered = run_cli(nowhere, "upgrade", "base:head", "--sql", cwd=tmp_path)

    assert rendered.returncode == 0, rendered.stderr
    sql = rendered.stdout
    for revision in (INITIAL, AMOCRM, PHOTOS, PREFERENCES, MERGE, IRREVERSIBLE, BACKFILL, HEAD):
        assert f"-> {revision}" in sql
    assert "CREATE TABLE amocrm_tokens" in sql
    assert "ALTER TABLE clients DROP COLUMN passport_number;" in sql
    assert re.search(r"UPDATE deals SET commission_amount=round\(", sql)
    concurrent = (
        "CREATE INDEX CONCURRENTLY ix_activities_client_id_occurred_at "
        "ON activities (client_id, occurred_at);"
    )
    assert concurrent in sql
    # Outside any transaction: the last BEGIN/COMMIT before it is a COMMIT.
    before = re.findall(r"^(BEGIN|COMMIT);$", sql[: sql.index(concurrent)], re.MULTILINE)
    assert before[-1] == "COMMIT"
    assert sql.rstrip().endswith("COMMIT;")
    assert f"UPDATE alembic_version SET version_num='{HEAD}'" in sql

    down = run_cli(nowhere, "downgrade", f"head:{IRREVERSIBLE}", "--sql", cwd=tmp_path)
    assert down.returncode == 0, down.stderr
    assert "DROP INDEX CONCURRENTLY IF EXISTS ix_activities_client_id_occurred_at;" in down.stdout
    assert "ALTER TABLE deals DROP COLUMN commission_amount;" in down.stdout
