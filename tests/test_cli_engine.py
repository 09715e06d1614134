"""The migration commands of schema-admin, run as a subprocess on real SQLite and PostgreSQL.

Each test runs ``python -m admin ...`` with DATABASE_URL / ADMIN_DATABASE_URL / VAR_DIR /
ALEMBIC_CONFIG pointing into tmp_path, so the repo's own files and databases are never touched.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from projects import BRANCHED, BRANCHED_HEAD, Rev, write_revision
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from admin import migrations
from admin.migrations import Command

# Each of these tests takes seconds (processes started, jobs run): run them first.
pytestmark = pytest.mark.slow

ALEMBIC = str(Path(sys.executable).with_name("alembic"))

# a1 -> b2 -> (c3 | c4 [feature]) -> m5 (merge) -> d6
REVISIONS, HEAD = BRANCHED, BRANCHED_HEAD

# A project whose env.py compares with a models module of its own (for create-migration).
MODELS = """
import sqlalchemy as sa

metadata = sa.MetaData()
sa.Table(
    "t1",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(50)),
)
"""
MODELS_ENV = """
from alembic import context
from sqlalchemy import create_engine

from cli_models import metadata

config = context.config
url = config.attributes.get("url") or config.get_main_option("sqlalchemy.url")

if context.is_offline_mode():
    context.configure(url=url, literal_binds=True, target_metadata=metadata)
    with context.begin_transaction():
        context.run_migrations()
else:
    connection = config.attributes.get("connection")
    engine = None
    if connection is None:
        engine = create_engine(url)
        connection = engine.connect()
    context.configure(
        connection=connection, target_metadata=metadata, transaction_per_migration=True
    )
    with context.begin_transaction():
        context.run_migrations()
    if engine is not None:
        connection.close()
        engine.dispose()
"""


def cli_env(tmp_path: Path, ini: Path, url: str, **extra: str) -> dict[str, str]:
    env = dict(os.environ)  # the session fixture has removed the panel's settings already
    env.update(
        DATABASE_URL=url,
        ADMIN_DATABASE_URL=f"sqlite:///{tmp_path / 'store.sqlite3'}",
        VAR_DIR=str(tmp_path / "var"),
        BACKUP_DIR=str(tmp_path / "backups"),
        ALEMBIC_CONFIG=str(ini),
        # Alembic walks the two sides of a branch in an order that follows string hashing:
        # fixed here so two processes print the same order.
        PYTHONHASHSEED="0",
    )
    env.update(extra)
    return env


def schema_admin(
    tmp_path: Path, ini: Path, url: str, *args: str, input: str | None = None, **extra: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "admin", *args],
        cwd=tmp_path,
        env=cli_env(tmp_path, ini, url, **extra),
        capture_output=True,
        text=True,
        input=input,
        timeout=120,
    )


def alembic_cli(tmp_path: Path, ini: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [ALEMBIC, "-c", str(ini), *args],
        cwd=tmp_path,
        env={**os.environ, "PYTHONHASHSEED": "0", "PYTHONWARNINGS": "ignore"},
        capture_output=True,
        text=True,
        timeout=120,
    )


def one_line_error(result: subprocess.CompletedProcess[str], *, code: int = 1) -> str:
    """The command failed with ``code`` and said why on exactly one line of stderr."""
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("schema-admin: ")
    assert "Traceback" not in result.stderr
    return lines[0]


def move(project: migrations.Project, url: str, command: Command, target: str) -> None:
    """Put the target database at a revision, the way the worker does it."""
    migrations.create_database(url)
    engine = migrations.new_engine(url)
    try:
        with engine.connect() as connection:
            migrations.run(project, connection, command, target, on_event=lambda e: None)
    finally:
        engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def target_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'target.sqlite3'}"
    return str(request.getfixturevalue("pg_databases").create("cli"))


@pytest.fixture
def project_ini(alembic_project: Callable[..., Path]) -> Path:
    return alembic_project(REVISIONS)


@pytest.fixture
def project(project_ini: Path) -> migrations.Project:
    return migrations.Project(project_ini)


# --- status ---------------------------------------------------------------------------------


def test_status_exit_codes_through_the_life_of_a_database(
    tmp_path: Path, project_ini: Path, project: migrations.Project, target_url: str
) -> None:
    def status() -> subprocess.CompletedProcess[str]:
        return schema_admin(tmp_path, project_ini, target_url, "status")

    if target_url.startswith("sqlite"):
        missing = status()
        assert "init-db" in one_line_error(missing)
        migrations.create_database(target_url)

    empty = status()
    assert empty.returncode == 3, empty.stderr
    assert "state:   empty" in empty.stdout
    assert "pending (6, in the order they will run):" in empty.stdout

    move(project, target_url, Command.UPGRADE, "b2b2b2b2b2b2")
    middle = status()
    assert middle.returncode == 3, middle.stderr
    assert "current: b2b2b2b2b2b2 (add t1 name)" in middle.stdout
    assert f"head:    {HEAD} (backfill t1)" in middle.stdout
    assert "state:   behind: 4 revision(s) pending" in middle.stdout
    listed = middle.stdout.split("will run):\n", 1)[1].splitlines()
    pending = [item.split()[0] for item in listed]
    assert pending[-2:] == ["m5m5m5m5m5m5", HEAD]
    assert set(pending[:2]) == {"c3c3c3c3c3c3", "c4c4c4c4c4c4"}

    move(project, target_url, Command.UPGRADE, "heads")
    head = status()
    assert head.returncode == 0, head.stderr
    assert "state:   up-to-date" in head.stdout
    assert "pending" not in head.stdout

    move(project, target_url, Command.DOWNGRADE, "base")
    base = status()
    assert base.returncode == 3
    assert "current: base (no revision applied)" in base.stdout

    engine = create_engine(target_url)
    with engine.begin() as connection:
        connection.execute(text("INSERT INTO alembic_version VALUES ('feedbeef0000')"))
    engine.dispose()
    unknown = status()
    assert unknown.returncode == 1
    assert "current: feedbeef0000" in unknown.stdout
    assert "feedbeef0000, which no revision file has" in unknown.stderr


def test_status_of_an_unreachable_server_masks_the_password(
    tmp_path: Path, project_ini: Path
) -> None:
    url = "postgresql://someone:hunter2@127.0.0.1:1/nowhere"
    line = one_line_error(schema_admin(tmp_path, project_ini, url, "status"))
    assert "cannot reach the target" in line
    assert "hunter2" not in line and "***" in line


def test_status_of_a_missing_postgresql_database(
    tmp_path: Path, project_ini: Path, pg_databases
) -> None:  # type: ignore[no-untyped-def]
    url = pg_databases.url_for_missing()
    line = one_line_error(schema_admin(tmp_path, project_ini, url, "status"))
    assert "does not exist" in line and "init-db" in line


def test_status_help_documents_the_exit_codes(tmp_path: Path, project_ini: Path) -> None:
    result = schema_admin(tmp_path, project_ini, "sqlite://", "status", "--help")
    assert result.returncode == 0
    assert "0 up to date, 3 revisions pending" in " ".join(result.stdout.split())


# --- history --------------------------------------------------------------------------------


def test_history_equals_alembic_history_and_marks_current(
    tmp_path: Path, alembic_project: Callable[..., Path]
) -> None:
    url = f"sqlite:///{tmp_path / 'target.sqlite3'}"
    ini = alembic_project(REVISIONS, url=url)
    project = migrations.Project(ini)

    # No database yet: the list alone, as `alembic history` prints it, and a note.
    plain = schema_admin(tmp_path, ini, url, "history")
    assert plain.returncode == 0, plain.stderr
    assert plain.stdout == alembic_cli(tmp_path, ini, "history").stdout
    assert "not marked" in plain.stderr

    move(project, url, Command.UPGRADE, "b2b2b2b2b2b2")
    marked = schema_admin(tmp_path, ini, url, "history")
    assert marked.returncode == 0 and marked.stderr == ""
    assert marked.stdout == alembic_cli(tmp_path, ini, "history", "-i").stdout
    lines = marked.stdout.splitlines()
    # Alembic carries a branch label on to the revisions after it, merge included.
    assert lines[0] == f"m5m5m5m5m5m5 -> {HEAD} (feature) (head), backfill t1"
    assert "a1a1a1a1a1a1 -> b2b2b2b2b2b2 (current) (branchpoint), add t1 name" in lines
    assert "c3c3c3c3c3c3, c4c4c4c4c4c4 -> m5m5m5m5m5m5 (feature) (mergepoint), merge" in lines
    assert "b2b2b2b2b2b2 -> c4c4c4c4c4c4 (feature), create t3" in lines
    assert lines[-1] == "<base> -> a1a1a1a1a1a1, create t1"

    verbose = schema_admin(tmp_path, ini, url, "history", "--verbose")
    assert verbose.returncode == 0
    assert "Rev: b2b2b2b2b2b2 (current) (branchpoint)" in verbose.stdout
    assert "Branches into: c3c3c3c3c3c3, c4c4c4c4c4c4" in verbose.stdout
    assert "Merges: c3c3c3c3c3c3, c4c4c4c4c4c4" in verbose.stdout
    assert "Branch names: feature" in verbose.stdout
    assert verbose.stdout.count("sha256: ") == 6


def test_history_of_the_crm_project(tmp_path: Path) -> None:
    ini = Path(__file__).resolve().parents[1] / "alembic.ini"
    result = schema_admin(tmp_path, ini, f"sqlite:///{tmp_path / 'none.sqlite3'}", "history")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "<base> -> 196dfdb50f6c, Initial migration"
    assert any("(head)" in line for line in result.stdout.splitlines())


# --- sql ------------------------------------------------------------------------------------


@pytest.mark.parametrize("dialect_url", ["postgresql://u@h/db", "sqlite:///x.db"])
def test_sql_equals_alembic_sql_on_a_linear_range(
    tmp_path: Path, alembic_project: Callable[..., Path], dialect_url: str
) -> None:
    ini = alembic_project(REVISIONS, url=dialect_url)
    ours = schema_admin(
        tmp_path, ini, dialect_url, "sql", "upgrade", "b2b2", "--from", "a1a1a1a1a1a1"
    )
    assert ours.returncode == 0, ours.stderr
    theirs = alembic_cli(tmp_path, ini, "upgrade", "a1a1a1a1a1a1:b2b2", "--sql")
    assert theirs.returncode == 0, theirs.stderr
    assert ours.stdout == theirs.stdout
    assert "ALTER TABLE t1 ADD COLUMN name VARCHAR(50)" in ours.stdout

    ours = schema_admin(tmp_path, ini, dialect_url, "sql", "upgrade", HEAD, "--from", "m5m5")
    theirs = alembic_cli(tmp_path, ini, "upgrade", f"m5m5m5m5m5m5:{HEAD}", "--sql")
    assert ours.stdout == theirs.stdout

    # Downgrade without a hand-given range (Alembic's CLI demands one).
    down = schema_admin(tmp_path, ini, dialect_url, "sql", "downgrade", "-1", "--from", "head")
    assert down.returncode == 0, down.stderr
    theirs = alembic_cli(tmp_path, ini, "downgrade", f"{HEAD}:m5m5m5m5m5m5", "--sql")
    assert down.stdout == theirs.stdout


def test_sql_starts_where_the_database_stands(
    tmp_path: Path, project_ini: Path, project: migrations.Project, target_url: str
) -> None:
    move(project, target_url, Command.UPGRADE, "a1a1a1a1a1a1")
    result = schema_admin(tmp_path, project_ini, target_url, "sql", "upgrade", "b2b2b2b2b2b2")
    assert result.returncode == 0, result.stderr
    assert "-- Running upgrade a1a1a1a1a1a1 -> b2b2b2b2b2b2" in result.stdout
    assert "CREATE TABLE t1" not in result.stdout

    move(project, target_url, Command.UPGRADE, "b2b2b2b2b2b2")
    nothing = schema_admin(tmp_path, project_ini, target_url, "sql", "upgrade", "b2b2b2b2b2b2")
    assert nothing.returncode == 0 and nothing.stdout == ""
    assert "nothing to upgrade" in nothing.stderr


def test_sql_without_a_database_asks_for_from(tmp_path: Path, project_ini: Path) -> None:
    url = f"sqlite:///{tmp_path / 'absent.sqlite3'}"
    line = one_line_error(schema_admin(tmp_path, project_ini, url, "sql", "upgrade", "head"))
    assert "--from" in line
    assert not (tmp_path / "absent.sqlite3").exists()


def test_sql_step_that_cannot_render_offline_exits_1(
    tmp_path: Path, alembic_project: Callable[..., Path]
) -> None:
    revisions = [
        *REVISIONS[:2],
        Rev(
            "e7e7e7e7e7e7",
            "b2b2b2b2b2b2",
            "data in python",
            "rows = op.get_bind().execute(sa.text('SELECT id FROM t1')).all()",
            "pass",
        ),
    ]
    url = "postgresql://u@h/db"
    ini = alembic_project(revisions, url=url)
    result = schema_admin(tmp_path, ini, url, "sql", "upgrade", "heads", "--from", "base")
    assert result.returncode == 1
    assert "CREATE TABLE t1" in result.stdout
    assert "e7e7e7e7e7e7" in result.stderr and "reads the database" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("sql", "upgrade", "zzzz", "--from", "base"), "no revision matches"),
        (("sql", "upgrade", "head; drop table t1", "--from", "base"), "not a revision target"),
        (("sql", "upgrade", "heads+1", "--from", "base"), "not a revision target"),
        (("sql", "upgrade", "head@-1", "--from", "base"), "not a revision target"),
        (("sql", "upgrade", "base+x", "--from", "base"), "not a revision target"),
        (("sql", "upgrade", "@", "--from", "base"), "not a revision target"),
        (("sql", "upgrade", "a" * 300, "--from", "base"), "not a revision target"),
        (("sql", "upgrade", "head", "--from", "nope"), "no revision file has the id"),
        (("sql", "upgrade", "c", "--from", "base"), "ambiguous|no revision matches|several"),
        (("sql", "downgrade", "-1", "--from", "base"), "nothing to downgrade"),
        (("sql", "upgrade", "a1a1", "--from", HEAD), "already past a1a1"),
        (("create-migration", ""), "one line of 1 to 200 characters"),
        (("create-migration", "two\nlines"), "one line of 1 to 200 characters"),
        (("create-migration", "x" * 201), "one line of 1 to 200 characters"),
    ],
)
def test_bad_targets_and_messages_give_one_line_errors(
    tmp_path: Path, project_ini: Path, args: tuple[str, ...], message: str
) -> None:
    url = "postgresql://u@127.0.0.1:1/db"
    # A target no revision can be is a usage error (exit 2), like a bad option.
    code = 2 if message == "not a revision target" else 1
    line = one_line_error(schema_admin(tmp_path, project_ini, url, *args), code=code)
    assert re.search(message, line), line


def test_usage_errors_exit_2(tmp_path: Path, project_ini: Path) -> None:
    result = schema_admin(tmp_path, project_ini, "sqlite://", "sql", "sideways", "head")
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1
    missing = schema_admin(
        tmp_path, project_ini, "sqlite://", "status", ALEMBIC_CONFIG=str(tmp_path / "no.ini")
    )
    assert "does not exist" in one_line_error(missing)


# --- create-migration -----------------------------------------------------------------------


@pytest.fixture
def models_project(tmp_path: Path, alembic_project: Callable[..., Path]) -> Path:
    """A copy of a small project whose env.py autogenerates against cli_models.py."""
    ini = alembic_project(REVISIONS[:2], name="modelled")
    (ini.parent / "migrations" / "env.py").write_text(MODELS_ENV)
    (ini.parent / "cli_models.py").write_text(MODELS)
    ini.write_text(ini.read_text() + "prepend_sys_path = %(here)s\npath_separator = os\n")
    return ini


def test_create_migration_refuses_an_empty_one_then_writes_a_real_one(
    tmp_path: Path, models_project: Path, target_url: str
) -> None:
    versions = models_project.parent / "migrations" / "versions"
    before = set(versions.glob("*.py"))
    project = migrations.Project(models_project)
    migrations.create_database(target_url)

    behind = schema_admin(tmp_path, models_project, target_url, "create-migration", "too early")
    assert "apply the pending revisions first" in one_line_error(behind)

    move(project, target_url, Command.UPGRADE, "heads")
    empty = schema_admin(tmp_path, models_project, target_url, "create-migration", "nothing")
    assert "no difference" in one_line_error(empty)
    assert set(versions.glob("*.py")) == before

    forced = schema_admin(
        tmp_path, models_project, target_url, "create-migration", "empty on purpose", "--empty"
    )
    assert forced.returncode == 0, forced.stderr
    (written,) = set(versions.glob("*.py")) - before
    assert "empty on purpose" in written.read_text()
    written.unlink()

    models = models_project.parent / "cli_models.py"
    models.write_text(
        models.read_text()
        + textwrap.dedent(
            """
            sa.Table("widgets", metadata, sa.Column("id", sa.Integer, primary_key=True))
            """
        )
    )
    real = schema_admin(tmp_path, models_project, target_url, "create-migration", "add widgets")
    assert real.returncode == 0, real.stderr
    (written,) = set(versions.glob("*.py")) - before
    assert written.name.endswith("_add_widgets.py")
    assert "created " in real.stdout and written.name in real.stdout
    body = written.read_text()
    assert "op.create_table('widgets'" in body or 'op.create_table("widgets"' in body
    assert "down_revision = 'b2b2b2b2b2b2'" in body or 'down_revision = "b2b2b2b2b2b2"' in body


def test_create_migration_without_autogenerate_needs_no_database(
    tmp_path: Path, models_project: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'absent.sqlite3'}"
    result = schema_admin(
        tmp_path, models_project, url, "create-migration", "backfill by hand", "--no-autogenerate"
    )
    assert result.returncode == 0, result.stderr
    versions = models_project.parent / "migrations" / "versions"
    assert len(list(versions.glob("*_backfill_by_hand.py"))) == 1
    assert not (tmp_path / "absent.sqlite3").exists()


# --- changes: migrate / downgrade / stamp / init-db / reset, as jobs ------------------------


def store_rows(tmp_path: Path, sql: str, store_url: str | None = None) -> list[tuple[object, ...]]:
    engine = create_engine(store_url or f"sqlite:///{tmp_path / 'store.sqlite3'}")
    try:
        with engine.connect() as connection:
            return [tuple(row) for row in connection.execute(text(sql))]
    finally:
        engine.dispose()


def test_migrate_downgrade_and_stamp_run_as_audited_cli_jobs(
    tmp_path: Path, project_ini: Path, project: migrations.Project, target_url: str
) -> None:
    migrations.create_database(target_url)

    up = schema_admin(tmp_path, project_ini, target_url, "migrate")
    assert up.returncode == 0, up.stderr
    assert "upgrade from base (no revision applied) to head: 6 revisions" in up.stdout
    assert "[6/6]" in up.stdout  # the job's log, streamed as it ran
    assert "job succeeded in" in up.stdout and f"the database is at {HEAD}" in up.stdout
    # SQL statements stay in the job's log unless asked for (-v).
    assert "CREATE TABLE t1" not in up.stdout
    assert migrations.read_status(project, target_url).current == (HEAD,)

    again = schema_admin(tmp_path, project_ini, target_url, "migrate")
    assert again.returncode == 0
    assert "nothing to upgrade" in again.stdout

    down = schema_admin(tmp_path, project_ini, target_url, "downgrade", "-1", "-v")
    assert down.returncode == 0, down.stderr
    assert "UPDATE alembic_version" in down.stdout
    assert migrations.read_status(project, target_url).current == ("m5m5m5m5m5m5",)

    stamp = schema_admin(tmp_path, project_ini, target_url, "stamp", "a1a1")
    assert stamp.returncode == 0, stamp.stderr
    assert migrations.read_status(project, target_url).current == ("a1a1a1a1a1a1",)

    jobs = store_rows(
        tmp_path, "SELECT kind, status, source, target_revision FROM jobs ORDER BY id"
    )
    assert jobs == [
        ("upgrade", "succeeded", "cli", "head"),
        ("downgrade", "succeeded", "cli", "-1"),
        ("stamp", "succeeded", "cli", "a1a1"),
    ]
    lines = store_rows(tmp_path, "SELECT count(*) FROM job_lines WHERE job_id = 1")
    assert lines[0][0] > 6
    actions = store_rows(
        tmp_path, "SELECT action, source FROM audit_events WHERE action LIKE 'job-%' ORDER BY id"
    )
    assert actions[:3] == [("job-queued", "cli"), ("job-started", "cli"), ("job-finished", "cli")]
    assert len(actions) == 9
    verify = schema_admin(tmp_path, project_ini, target_url, "audit", "verify")
    assert verify.returncode == 0, verify.stdout


def test_a_failing_migration_exits_1_with_one_line(
    tmp_path: Path, alembic_project: Callable[..., Path]
) -> None:
    revisions = [
        *REVISIONS[:2],
        Rev("e7e7e7e7e7e7", "b2b2b2b2b2b2", "broken", "op.execute('SELECT * FROM nowhere')"),
    ]
    ini = alembic_project(revisions)
    url = f"sqlite:///{tmp_path / 'target.sqlite3'}"
    migrations.create_database(url)
    result = schema_admin(tmp_path, ini, url, "migrate")
    assert result.returncode == 1
    assert "[2/3] upgrade a1a1a1a1a1a1 -> b2b2b2b2b2b2 done" in result.stdout
    line = one_line_error(result)
    assert line.startswith("schema-admin: job 1 failed:") and "nowhere" in line
    assert migrations.read_status(migrations.Project(ini), url).current == ("b2b2b2b2b2b2",)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("migrate", "zzzz"), "no revision matches"),
        (("migrate", "head; drop table t1"), "not a revision target"),
        (("downgrade", "-1"), "nothing to downgrade"),
        (("stamp", "nope!"), "not a revision target"),
    ],
)
def test_bad_change_targets_give_one_line_errors_and_no_job(
    tmp_path: Path, project_ini: Path, args: tuple[str, ...], message: str
) -> None:
    url = f"sqlite:///{tmp_path / 'target.sqlite3'}"
    migrations.create_database(url)
    code = 2 if message == "not a revision target" else 1
    result = schema_admin(tmp_path, project_ini, url, *args)
    assert re.search(message, one_line_error(result, code=code))
    store = tmp_path / "store.sqlite3"
    assert not store.exists() or store_rows(tmp_path, "SELECT count(*) FROM jobs") == [(0,)]


def test_init_db_creates_a_missing_postgresql_database_and_migrates_it(
    tmp_path: Path, project_ini: Path, project: migrations.Project, pg_databases
) -> None:  # type: ignore[no-untyped-def]
    url = pg_databases.url_for_missing("initdb")
    assert "does not exist" in one_line_error(schema_admin(tmp_path, project_ini, url, "status"))

    result = schema_admin(tmp_path, project_ini, url, "init-db")
    assert result.returncode == 0, result.stderr
    assert "created the database" in result.stdout
    assert migrations.read_status(project, url).current == (HEAD,)

    again = schema_admin(tmp_path, project_ini, url, "init-db")
    assert again.returncode == 0, again.stderr
    assert "exists" in again.stdout and "nothing to migrate" in again.stdout
    assert store_rows(tmp_path, "SELECT count(*) FROM jobs") == [(1,)]
    # Creating the database is audited once, naming it (password masked), by the OS user.
    created = store_rows(
        tmp_path,
        "SELECT target, source, details FROM audit_events WHERE action = 'database-created'",
    )
    assert len(created) == 1
    name = make_url(url).database
    assert created[0][:2] == (f"database:{name}", "cli")
    assert json.loads(str(created[0][2]))["url"] == migrations.masked(url)


def test_reset_refuses_in_production_and_without_yes(
    tmp_path: Path, project_ini: Path, project: migrations.Project, target_url: str
) -> None:
    move(project, target_url, Command.UPGRADE, "heads")

    production = schema_admin(
        tmp_path,
        project_ini,
        target_url,
        "reset",
        "--yes",
        ENVIRONMENT="production",
        SECRET_KEY="Hk4vQ9wN2pZ7rT1xB6mC3jF8dL0sY5gA-Ue",
    )
    assert "refuses to run in production" in one_line_error(production)
    refused = store_rows(
        tmp_path, "SELECT action, source, outcome FROM audit_events WHERE action = 'job-refused'"
    )
    assert refused == [("job-refused", "cli", "denied")]

    unconfirmed = schema_admin(tmp_path, project_ini, target_url, "reset")
    assert "--yes" in one_line_error(unconfirmed)
    assert migrations.read_status(project, target_url).current == (HEAD,)

    done = schema_admin(tmp_path, project_ini, target_url, "reset", "--yes")
    assert done.returncode == 0, done.stderr
    assert "downgrade from" in done.stdout and "to base: 6 revisions" in done.stdout
    assert migrations.read_status(project, target_url).current == ()

    nothing = schema_admin(tmp_path, project_ini, target_url, "reset", "--yes")
    assert nothing.returncode == 0 and "nothing to reset" in nothing.stdout


SLOW = [
    Rev(
        "a1a1a1a1a1a1",
        None,
        "create runs",
        "op.create_table('runs', sa.Column('id', sa.Integer))",
        "op.drop_table('runs')",
    ),
    Rev(
        "b2b2b2b2b2b2",
        "a1a1a1a1a1a1",
        "slow step",
        "op.execute('INSERT INTO runs VALUES (1)')\nop.execute('SELECT pg_sleep(4)')",
        "op.execute('DELETE FROM runs')",
    ),
]


@pytest.mark.postgres
@pytest.mark.slow
@pytest.mark.parametrize("store", ["shared", "separate"])
def test_two_migrate_processes_started_together_run_the_migration_once(
    tmp_path: Path, alembic_project: Callable[..., Path], pg_databases, store: str
) -> None:  # type: ignore[no-untyped-def]
    """One store: the second is refused naming the running job. Two stores (two machines
    with their own panel): the second job fails fast on the advisory lock, naming its holder,
    or, when the first has already applied a revision by the time the second checks its plan
    against the database, is refused because the database moved (both one line, at once)."""
    ini = alembic_project(SLOW)
    url = pg_databases.create("twice")
    shared = pg_databases.create("store") if store == "shared" else None
    processes = []
    for n in range(2):
        store_url = shared or f"sqlite:///{tmp_path / f'store{n}.sqlite3'}"
        processes.append(
            subprocess.Popen(
                [sys.executable, "-m", "admin", "migrate"],
                cwd=tmp_path,
                env=cli_env(
                    tmp_path, ini, url, ADMIN_DATABASE_URL=store_url, MIGRATION_LOCK_WAIT="0"
                ),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    outputs = [p.communicate(timeout=120) for p in processes]
    results = [(p.returncode, out, err) for p, (out, err) in zip(processes, outputs, strict=True)]
    codes = sorted(code for code, _, _ in results)
    assert codes[0] == 0 and codes[1] != 0, results
    (loser,) = [err for code, _, err in results if code != 0]
    assert re.search(
        r"is (queued|running) on this database|lock is held by 'schema-admin job"
        + ("|the plan changed since it was shown .*the database moved" if shared is None else ""),
        loser,
    ), loser
    assert "Traceback" not in loser
    engine = create_engine(url)
    with engine.connect() as connection:
        assert connection.execute(text("SELECT count(*) FROM runs")).scalar() == 1
    engine.dispose()


# --- the engine's freshness check (the bench's hot-spot fix in admin/migrations/project.py) --


def test_an_added_revision_file_is_seen_past_max_age_without_a_full_scan(
    project_ini: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from admin.migrations import project as project_module

    project = migrations.Project(project_ini)
    assert project.graph().heads == (HEAD,)
    versions = project_ini.parent / "migrations" / "versions"
    scans: list[int] = []
    full_scan = project._files

    def counted() -> list[tuple[Path, os.stat_result]]:
        scans.append(1)
        return full_scan()

    monkeypatch.setattr(project, "_files", counted)
    monkeypatch.setattr(project_module, "FULL_SCAN_EVERY", 3600.0)
    project.graph(max_age=1e-9)
    assert scans == []  # only the folders were stat'ed

    write_revision(versions, Rev("f8f8f8f8f8f8", HEAD, "added later"))
    os.utime(versions, ns=(time.time_ns(), time.time_ns() + 1_000_000))
    assert project.graph(max_age=1e-9).heads == ("f8f8f8f8f8f8",)
    assert scans  # the folder changed: then every file was scanned (and reloaded)

    # An edit in place leaves the folder's mtime alone: max_age=0 (runs, job submissions)
    # always scans every file, so it is seen there at once.
    path = project.graph().get("f8f8").path
    path.write_text(path.read_text().replace("added later", "edited in place"))
    os.utime(path, ns=(time.time_ns(), time.time_ns() + 2_000_000))
    assert project.graph(max_age=0).get("f8f8").message == "edited in place"
