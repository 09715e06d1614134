"""The seed's Makefile targets and scripts/*.py, run for real against temporary databases.

``make`` runs in the repo with DATABASE_URL / ADMIN_DATABASE_URL / VAR_DIR / ALEMBIC_CONFIG
pointing into tmp_path (a small project there, never the repo's alembic/versions), and with
``-o .venv/.installed`` so a stale install stamp never triggers pip.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from projects import REPO_ROOT

from admin import migrations
from tests.test_cli_engine import HEAD, MODELS, MODELS_ENV, REVISIONS, cli_env, store_rows

# Each of these tests takes seconds (processes started, jobs run): run them first.
pytestmark = pytest.mark.slow

SEED_TARGETS = [
    "help",
    "migrate",
    "migrate-create",
    "migrate-status",
    "migrate-down",
    "migrate-reset",
    "init-db",
    "docker-migrate",
    "docker-init-db",
    "prod-migrate",
    "bench",
    "run",
    "test",
]
BIN = str(Path(sys.executable).parent)
# The models at REVISIONS' head: t1 (id, name), t2, t3.
MODELS_AT_HEAD = (
    MODELS
    + """
sa.Table("t2", metadata, sa.Column("id", sa.Integer, primary_key=True))
sa.Table("t3", metadata, sa.Column("id", sa.Integer, primary_key=True))
"""
)


@pytest.fixture
def project_ini(tmp_path: Path, alembic_project: Callable[..., Path]) -> Path:
    """A small project whose env.py autogenerates against its own cli_models.py."""
    ini = alembic_project(REVISIONS)
    (ini.parent / "migrations" / "env.py").write_text(MODELS_ENV)
    (ini.parent / "cli_models.py").write_text(MODELS_AT_HEAD)
    ini.write_text(ini.read_text() + "prepend_sys_path = %(here)s\npath_separator = os\n")
    return ini


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'target.sqlite3'}"


def make(
    tmp_path: Path,
    ini: Path,
    url: str,
    target: str,
    *variables: str,
    input: str | None = None,
    **extra: str,
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["make", "-s", "-C", str(REPO_ROOT), "-o", ".venv/.installed", f"BIN={BIN}", target]
        + list(variables),
        env=cli_env(tmp_path, ini, url, **extra),
        capture_output=True,
        text=True,
        input=input,
        timeout=180,
    )


def script(
    tmp_path: Path, ini: Path, url: str, name: str, *args: str
) -> subprocess.CompletedProcess[str]:
    """``python scripts/NAME ARGS`` from the repo root, as the operations guide types it."""
    return subprocess.run(
        [sys.executable, f"scripts/{name}", *args],
        cwd=REPO_ROOT,
        env=cli_env(tmp_path, ini, url),
        capture_output=True,
        text=True,
        timeout=180,
    )


def current(ini: Path, url: str) -> tuple[str, ...]:
    return migrations.read_status(migrations.Project(ini), url).current


def test_help_lists_every_seed_target(tmp_path: Path, project_ini: Path, url: str) -> None:
    result = make(tmp_path, project_ini, url, "help")
    assert result.returncode == 0, result.stderr
    listed = {line.split()[0] for line in result.stdout.replace("\x1b[36m", "").splitlines()}
    assert set(SEED_TARGETS) <= listed


def test_init_db_status_migrate_down_and_migrate(
    tmp_path: Path, project_ini: Path, url: str
) -> None:
    missing = make(tmp_path, project_ini, url, "migrate-status")
    assert missing.returncode != 0
    assert "init-db" in missing.stderr

    init = make(tmp_path, project_ini, url, "init-db")
    assert init.returncode == 0, init.stderr
    assert "created the database" in init.stdout and "job succeeded" in init.stdout
    assert current(project_ini, url) == (HEAD,)

    status = make(tmp_path, project_ini, url, "migrate-status")
    assert status.returncode == 0, status.stderr
    assert "state:   up-to-date" in status.stdout

    down = make(tmp_path, project_ini, url, "migrate-down")
    assert down.returncode == 0, down.stderr
    assert current(project_ini, url) == ("m5m5m5m5m5m5",)

    behind = make(tmp_path, project_ini, url, "migrate-status")
    assert behind.returncode == 0, behind.stderr  # pending is not a failure of the target
    assert "state:   behind: 1 revision(s) pending" in behind.stdout

    up = make(tmp_path, project_ini, url, "migrate")
    assert up.returncode == 0, up.stderr
    assert current(project_ini, url) == (HEAD,)
    jobs = store_rows(tmp_path, "SELECT kind, status, source FROM jobs ORDER BY id")
    assert jobs == [
        ("upgrade", "succeeded", "cli"),
        ("downgrade", "succeeded", "cli"),
        ("upgrade", "succeeded", "cli"),
    ]


def test_migrate_reset_asks_for_confirmation(tmp_path: Path, project_ini: Path, url: str) -> None:
    assert make(tmp_path, project_ini, url, "init-db").returncode == 0

    declined = make(tmp_path, project_ini, url, "migrate-reset", input="no\n")
    assert declined.returncode != 0
    assert "Type yes to continue" in declined.stdout + declined.stderr
    assert "not confirmed" in declined.stderr
    assert current(project_ini, url) == (HEAD,)

    no_input = make(tmp_path, project_ini, url, "migrate-reset", input="")
    assert no_input.returncode != 0
    assert current(project_ini, url) == (HEAD,)

    confirmed = make(tmp_path, project_ini, url, "migrate-reset", input="yes\n")
    assert confirmed.returncode == 0, confirmed.stderr
    assert current(project_ini, url) == ()

    assert make(tmp_path, project_ini, url, "migrate").returncode == 0
    production = make(
        tmp_path,
        project_ini,
        url,
        "migrate-reset",
        "CONFIRM=yes",
        ENVIRONMENT="production",
        SECRET_KEY="Hk4vQ9wN2pZ7rT1xB6mC3jF8dL0sY5gA-Ue",
    )
    assert production.returncode != 0
    assert "refuses to run in production" in production.stderr
    assert current(project_ini, url) == (HEAD,)


def test_prod_migrate_shows_the_plan_and_stops_unless_confirmed(
    tmp_path: Path, project_ini: Path, url: str
) -> None:
    migrations.create_database(url)
    plan = make(tmp_path, project_ini, url, "prod-migrate")
    assert plan.returncode == 0, plan.stderr
    assert "pending (6, in the order they will run):" in plan.stdout
    assert "CREATE TABLE t1" in plan.stdout
    assert "-- Running upgrade m5m5m5m5m5m5 -> d6d6d6d6d6d6" in plan.stdout
    assert "make prod-migrate CONFIRM=yes" in plan.stdout
    assert current(project_ini, url) == ()
    assert not (tmp_path / "store.sqlite3").exists() or store_rows(
        tmp_path, "SELECT count(*) FROM jobs"
    ) == [(0,)]

    applied = make(tmp_path, project_ini, url, "prod-migrate", "CONFIRM=yes")
    assert applied.returncode == 0, applied.stderr
    assert "job succeeded" in applied.stdout
    assert current(project_ini, url) == (HEAD,)

    nothing = make(tmp_path, project_ini, url, "prod-migrate")
    assert nothing.returncode == 0
    assert "up-to-date" in nothing.stdout and "CREATE TABLE" not in nothing.stdout


def test_migrate_create(tmp_path: Path, project_ini: Path, url: str) -> None:
    versions = project_ini.parent / "migrations" / "versions"
    before = set(versions.glob("*.py"))
    usage = make(tmp_path, project_ini, url, "migrate-create")
    assert usage.returncode != 0
    assert 'usage: make migrate-create MESSAGE="' in usage.stderr

    assert make(tmp_path, project_ini, url, "init-db").returncode == 0
    empty = make(tmp_path, project_ini, url, "migrate-create", "MESSAGE=nothing changed")
    assert empty.returncode != 0
    assert "no difference" in empty.stderr
    assert set(versions.glob("*.py")) == before

    models = project_ini.parent / "cli_models.py"
    models.write_text(
        models.read_text()
        + '\nsa.Table("prefs", metadata, sa.Column("id", sa.Integer, primary_key=True))\n'
    )
    created = make(
        tmp_path, project_ini, url, "migrate-create", "MESSAGE=Add user preferences; it's `$HOME`"
    )
    assert created.returncode == 0, created.stderr
    (written,) = set(versions.glob("*.py")) - before
    assert "prefs" in written.read_text()
    assert "Add user preferences; it's `$HOME`" in written.read_text()


@pytest.mark.parametrize(
    ("target", "script_name"),
    [("docker-migrate", "run_migrations.py"), ("docker-init-db", "init_db.py")],
)
def test_docker_targets_print_the_command_without_a_docker_engine(
    tmp_path: Path, project_ini: Path, url: str, target: str, script_name: str
) -> None:
    # No docker binary on PATH: the same answer as a machine without a running engine.
    result = make(tmp_path, project_ini, url, target, PATH=f"{BIN}:/usr/bin:/bin")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines() == [
        f"docker-compose -f docker-compose.staging.yml exec backend python scripts/{script_name}"
    ]
    assert "no Docker engine" in result.stderr
    assert not Path(url.removeprefix("sqlite:///")).exists()


def test_bench_target_runs_the_bench_package(tmp_path: Path, project_ini: Path, url: str) -> None:
    """`make bench` itself is never run by tests (it takes minutes): its command is checked."""
    result = make(tmp_path, project_ini, url, "-n", "bench")
    assert result.returncode == 0, result.stderr
    assert "-m bench" in result.stdout
    assert (REPO_ROOT / "bench" / "__main__.py").is_file()


def test_seed_scripts(tmp_path: Path, project_ini: Path, url: str) -> None:
    missing = script(tmp_path, project_ini, url, "run_migrations.py")
    assert missing.returncode == 1
    assert "init-db" in missing.stderr

    init = script(tmp_path, project_ini, url, "init_db.py")
    assert init.returncode == 0, init.stderr
    assert current(project_ini, url) == (HEAD,)

    assert make(tmp_path, project_ini, url, "migrate-down").returncode == 0
    run = script(tmp_path, project_ini, url, "run_migrations.py")
    assert run.returncode == 0, run.stderr
    assert "job succeeded" in run.stdout
    assert current(project_ini, url) == (HEAD,)

    usage = script(tmp_path, project_ini, url, "create_migration.py")
    assert usage.returncode == 2 and "usage:" in usage.stderr
    refused = script(tmp_path, project_ini, url, "create_migration.py", "Add new table")
    assert refused.returncode == 1 and "no difference" in refused.stderr
    forced = script(tmp_path, project_ini, url, "create_migration.py", "Add new table", "--empty")
    assert forced.returncode == 0, forced.stderr
    versions = project_ini.parent / "migrations" / "versions"
    assert len(list(versions.glob("*_add_new_table.py"))) == 1
