"""Jobs on projects made by `alembic init`, their env.py as teams keep it (issue [compat]).

Against real PostgreSQL: the alembic.ini's URL names database A, DATABASE_URL names B.
The panel must migrate B (or refuse, naming both), record every step, and keep Alembic's
lines at their real level whatever env.py does to logging.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from initprojects import BRANCHED, LINEAR, MODULE_STATE, edit_env, init_project
from sqlalchemy import create_engine, inspect, select, text

from admin import audit, migrations
from admin.config import Settings
from admin.jobs import JobRequest, queue, run_in_foreground
from admin.runtime import Runtime
from admin.store.models import AuditEvent, Job, JobKind, JobLine, JobStatus, Source

pytestmark = pytest.mark.postgres
ALICE = audit.Actor("alice", "operator", Source.CLI, None)


@pytest.fixture
def runtime_for(make_settings: Callable[..., Settings]) -> Iterator[Callable[..., Runtime]]:
    opened: list[Runtime] = []

    def make(ini: Path, target: str, **values: Any) -> Runtime:
        rt = Runtime.open(make_settings(database_url=target, alembic_config=ini, **values))
        rt.upgrade_store(audit.Actor("test", None, Source.CLI))
        opened.append(rt)
        return rt

    yield make
    for rt in opened:
        rt.close()
    migrations.dispose_engines()


def _run(rt: Runtime, kind: JobKind, target: str) -> tuple[Job, list[JobLine]]:
    job = run_in_foreground(rt, JobRequest(kind, target), ALICE, echo=lambda line: None)
    with rt.reads() as session:
        return job, queue.lines(session, job.id, 0, 10_000)


def _heads(url: str) -> list[str] | None:
    """The database's version table (None when it has none)."""
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            if not inspect(connection).has_table("alembic_version"):
                return None
            return sorted(
                connection.execute(text("SELECT version_num FROM alembic_version")).scalars()
            )
    finally:
        engine.dispose()


def _tables(url: str) -> set[str]:
    engine = create_engine(url)
    try:
        return set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def _assert_every_step(job: Job, lines: list[JobLine], steps: int) -> None:
    assert job.status == JobStatus.SUCCEEDED.value, job.error
    assert job.steps_total == steps and job.steps_done == steps
    texts = [line.text for line in lines]
    for n in range(1, steps + 1):
        assert any(t.startswith(f"[{n}/{steps}] Running ") for t in texts), texts
        assert any(t.startswith(f"[{n}/{steps}] ") and " done in " in t for t in texts), texts
    impl = [line for line in lines if line.text.startswith("Context impl ")]
    assert impl and all(line.level == "info" for line in impl), _shown(lines)
    assert not [line for line in lines if line.level == "error"], _shown(lines)


def _shown(lines: list[JobLine]) -> list[tuple[str, str, str]]:
    return [(line.level, line.stream, line.text) for line in lines]


@pytest.mark.parametrize("template", ["generic", "pyproject"])
def test_a_stock_env_py_migrates_database_url_and_records_every_step(
    tmp_path: Path, pg_databases: Any, runtime_for: Callable[..., Runtime], template: str
) -> None:
    a, b = pg_databases.create("ini"), pg_databases.create("target")
    ini = init_project(tmp_path / template, template, a)
    config = ini if template == "generic" else ini.with_name("pyproject.toml")
    rt = runtime_for(config, b)

    job, lines = _run(rt, JobKind.UPGRADE, "head")
    _assert_every_step(job, lines, 3)
    assert _heads(b) == ["3c4d5e6f7a8b"] and job.revision_after == "3c4d5e6f7a8b"
    assert "accounts" in _tables(b)
    assert _tables(a) == set(), "the database named in alembic.ini was touched"

    job, lines = _run(rt, JobKind.DOWNGRADE, "base")
    _assert_every_step(job, lines, 3)
    assert _heads(b) == [] and job.revision_after == "base"
    assert _tables(a) == set()


@pytest.mark.parametrize("disable", [True, False])
def test_file_config_either_way_keeps_steps_and_levels(
    tmp_path: Path, pg_databases: Any, runtime_for: Callable[..., Runtime], disable: bool
) -> None:
    a, b = pg_databases.create("ini"), pg_databases.create("target")
    ini = init_project(tmp_path / "p", "generic", a, [*LINEAR, MODULE_STATE])
    edit_env(
        ini,
        "    fileConfig(config.config_file_name)",
        f"    fileConfig(config.config_file_name, disable_existing_loggers={disable})",
    )
    rt = runtime_for(ini, b)
    job, lines = _run(rt, JobKind.UPGRADE, "head")
    _assert_every_step(job, lines, 4)
    engine = create_engine(b)
    with engine.connect() as connection:
        assert connection.execute(text("SELECT count(*) FROM plans")).scalar() == 2
    engine.dispose()


def test_env_py_with_its_own_engine_fails_at_step_one_naming_both_databases(
    tmp_path: Path, pg_databases: Any, runtime_for: Callable[..., Runtime]
) -> None:
    a, b = pg_databases.create("own"), pg_databases.create("target")
    ini = init_project(tmp_path / "p", "generic", "postgresql://ignored@localhost/ignored")
    # The team's env.py reads its own settings, not sqlalchemy.url.
    ini.write_text(ini.read_text() + f"\n[myapp]\ndatabase = {a}\n")
    edit_env(
        ini,
        'config.get_section(config.config_ini_section, {}),\n        prefix="sqlalchemy.",',
        '{"sqlalchemy.url": config.get_section("myapp")["database"]},\n'
        '        prefix="sqlalchemy.",',
    )
    rt = runtime_for(ini, b)
    job, lines = _run(rt, JobKind.UPGRADE, "head")

    assert job.status == JobStatus.FAILED.value
    error = job.error or ""
    assert "\n" not in error
    assert make_name(a) in error and make_name(b) in error, error
    assert job.steps_done == 0 and job.revision_after == "base"
    assert _tables(a) == set() and _tables(b) == set()
    assert not any(line.text.startswith("[1/3] ") and "done in" in line.text for line in lines)
    with rt.reads() as session:
        finished = session.scalars(
            select(AuditEvent).where(
                AuditEvent.job_id == job.id, AuditEvent.action == "job-finished"
            )
        ).one()
    assert finished.outcome == "failure"


def make_name(url: str) -> str:
    from sqlalchemy.engine import make_url

    return str(make_url(url).database)


def test_a_merge_runs_every_step_with_the_previewed_sql(
    tmp_path: Path, pg_databases: Any, runtime_for: Callable[..., Runtime]
) -> None:
    b = pg_databases.create("target")
    ini = init_project(tmp_path / "p", "generic", b, BRANCHED)
    rt = runtime_for(ini, b)
    project = migrations.open_project(ini, rt.settings.cache_dir)
    plan = migrations.make_plan(project, migrations.Direction.UPGRADE, "heads", ())
    previewed = migrations.render(project, plan, b, "postgresql")
    job, lines = _run(rt, JobKind.UPGRADE, "heads")
    _assert_every_step(job, lines, 5)
    assert job.sql_fingerprint == previewed.fingerprint
    assert _heads(b) == ["e4e4e4e4e4e4"]


def test_the_async_template_is_refused_with_one_line(
    tmp_path: Path, pg_databases: Any, runtime_for: Callable[..., Runtime]
) -> None:
    b = pg_databases.create("target")
    ini = init_project(tmp_path / "p", "async", b)
    rt = runtime_for(ini, b)
    job, _ = _run(rt, JobKind.UPGRADE, "head")
    assert job.status == JobStatus.FAILED.value
    assert "async" in (job.error or "") and "\n" not in (job.error or "")
    assert _tables(b) == set()
