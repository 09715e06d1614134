"""The engine against real SQLite and PostgreSQL: graph, status, plans, offline SQL, runs."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from projects import BRANCHED, BRANCHED_HEAD, Rev, ancestor_visits, write_revision
from sqlalchemy import Engine, create_engine, event, text

from admin import migrations
from admin.migrations import Command, Direction, EventKind, MigrationError, State
from admin.migrations.capture import Capture
from admin.migrations.environment import NotWhereExpected, Watch

ALEMBIC = str(Path(sys.executable).with_name("alembic"))

# a1 -> b2 -> (c3 | c4 [feature]) -> m5 (merge) -> d6
REVISIONS, HEAD = BRANCHED, BRANCHED_HEAD


@pytest.fixture(params=["sqlite", "postgresql"])
def target_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'target.sqlite3'}"
    return str(request.getfixturevalue("pg_databases").create("eng"))


@pytest.fixture
def project_ini(alembic_project: Callable[..., Path]) -> Path:
    return alembic_project(REVISIONS)


@pytest.fixture
def project(project_ini: Path) -> migrations.Project:
    return migrations.Project(project_ini)


def _upgrade(project: migrations.Project, url: str, target: str = "heads") -> tuple[str, ...]:
    engine = migrations.new_engine(url)
    try:
        with engine.connect() as connection:
            return migrations.run(
                project, connection, Command.UPGRADE, target, on_event=lambda e: None
            )
    finally:
        engine.dispose()


def test_graph_equals_alembic_walk_revisions(
    project: migrations.Project, project_ini: Path
) -> None:
    graph = project.graph()
    script = ScriptDirectory.from_config(Config(str(project_ini)))
    walked = list(script.walk_revisions())
    assert [r.id for r in graph.revisions] == [s.revision for s in walked]
    for mine, theirs in zip(graph.revisions, walked, strict=True):
        assert mine.down_revisions == tuple(theirs._versioned_down_revisions)
        assert mine.is_head == theirs.is_head
        assert mine.is_base == theirs.is_base
        assert mine.is_branch_point == theirs.is_branch_point
        assert mine.is_merge_point == theirs.is_merge_point
        assert set(mine.children) == set(theirs.nextrev)
    assert graph.get("b2b2b2b2b2b2").is_branch_point
    assert graph.get("m5m5m5m5m5m5").is_merge_point
    assert graph.get("c4c4").branch_labels == ("feature",)
    assert graph.heads == (HEAD,)
    assert len(graph.get("a1").sha256) == 64
    assert graph.get("a1").create_date is not None


def test_unknown_and_ambiguous_ids(project: migrations.Project) -> None:
    graph = project.graph()
    with pytest.raises(migrations.UnknownRevision):
        graph.get("ffff")
    with pytest.raises(MigrationError, match="ambiguous"):
        graph.get("c")
    with pytest.raises(migrations.UnknownRevision):
        graph.get("../etc")


def test_where_a_database_stands_as_a_person_names_it(
    project: migrations.Project, alembic_project: Callable[..., Path]
) -> None:
    graph = project.graph()
    assert graph.resolve("base") == graph.resolve(" ") == ()
    assert graph.resolve("head") == graph.resolve("heads") == (HEAD,)
    assert graph.resolve(" a1 , b2b2 ,a1") == ("a1a1a1a1a1a1", "b2b2b2b2b2b2")
    with pytest.raises(migrations.UnknownRevision):
        graph.resolve("a1,ffff")
    forked = migrations.open_project(
        alembic_project(
            [Rev("aaa111", None), Rev("bbb222", "aaa111"), Rev("ccc333", "aaa111")], name="forked"
        )
    ).graph()
    assert set(forked.resolve("heads")) == {"bbb222", "ccc333"}
    with pytest.raises(MigrationError, match="2 heads .*name one revision, or 'heads'"):
        forked.resolve("head")


def test_status_through_the_life_of_a_database(
    project: migrations.Project, target_url: str
) -> None:
    if target_url.startswith("sqlite"):
        missing = migrations.read_status(project, target_url)
        assert missing.state is State.MISSING
        assert "init-db" in missing.message
        migrations.create_database(target_url)
    empty = migrations.read_status(project, target_url)
    assert empty.state is State.EMPTY
    order = [r.id for r in empty.pending]
    assert order[:2] == ["a1a1a1a1a1a1", "b2b2b2b2b2b2"]
    assert set(order[2:4]) == {"c3c3c3c3c3c3", "c4c4c4c4c4c4"}
    assert order[4:] == ["m5m5m5m5m5m5", HEAD]
    assert empty.exit_code == 3

    _upgrade(project, target_url, "b2b2b2b2b2b2")
    middle = migrations.read_status(project, target_url)
    assert middle.state is State.BEHIND
    assert middle.current == ("b2b2b2b2b2b2",)
    assert [r.id for r in middle.pending][-2:] == ["m5m5m5m5m5m5", HEAD]
    assert len(middle.pending) == 4

    assert _upgrade(project, target_url) == (HEAD,)
    head = migrations.read_status(project, target_url)
    assert head.state is State.UP_TO_DATE
    assert head.pending == ()
    assert head.exit_code == 0

    engine = create_engine(target_url)
    with engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = 'feedbeef0000'"))
    engine.dispose()
    unknown = migrations.read_status(project, target_url)
    assert unknown.state is State.UNKNOWN_REVISION
    assert "feedbeef0000" in unknown.message
    assert unknown.exit_code == 1


def test_status_at_base_after_downgrade(project: migrations.Project, target_url: str) -> None:
    migrations.create_database(target_url)
    _upgrade(project, target_url, "a1a1a1a1a1a1")
    engine = migrations.new_engine(target_url)
    with engine.connect() as connection:
        after = migrations.run(
            project, connection, Command.DOWNGRADE, "base", on_event=lambda e: None
        )
    engine.dispose()
    assert after == ()
    status = migrations.read_status(project, target_url)
    assert status.state is State.BEHIND
    assert status.current == ()
    assert len(status.pending) == 6


def test_unreachable_postgresql_masks_the_password(project: migrations.Project) -> None:
    url = "postgresql+psycopg2://someone:hunter2@127.0.0.1:1/nowhere"
    status = migrations.read_status(project, url)
    assert status.state is State.UNREACHABLE
    assert "hunter2" not in status.message
    assert "***" in status.message


def test_missing_postgresql_database(project: migrations.Project, pg_databases) -> None:  # type: ignore[no-untyped-def]
    url = pg_databases.url_for_missing()
    status = migrations.read_status(project, url)
    assert status.state is State.MISSING
    assert "does not exist" in status.message
    assert migrations.create_database(url) is True
    assert migrations.create_database(url) is False
    assert migrations.read_status(project, url).state is State.EMPTY


@pytest.mark.parametrize(
    ("direction", "target", "current", "expected"),
    [
        (Direction.UPGRADE, "head", (), 6),
        (Direction.UPGRADE, "+2", (), 2),
        (Direction.UPGRADE, "feature@head", ("b2b2b2b2b2b2",), 4),
        (Direction.UPGRADE, "c3c3", ("b2b2b2b2b2b2",), 1),
        (Direction.DOWNGRADE, "-1", (HEAD,), 1),
        (Direction.DOWNGRADE, "base", (HEAD,), 6),
        (Direction.DOWNGRADE, "b2b2b2b2b2b2", (HEAD,), 4),
    ],
)
def test_plans(
    project: migrations.Project,
    direction: Direction,
    target: str,
    current: tuple[str, ...],
    expected: int,
) -> None:
    plan = migrations.make_plan(project, direction, target, current)
    assert len(plan.steps) == expected
    assert len(plan.fingerprint) == 64
    again = migrations.make_plan(project, direction, target, current)
    assert again.fingerprint == plan.fingerprint


@pytest.mark.parametrize(
    ("direction", "target", "current", "message"),
    [
        (Direction.UPGRADE, "zzzz", (), "no revision matches"),
        (Direction.UPGRADE, "c", (), "ambiguous|no revision matches|several"),
        (Direction.UPGRADE, "head; drop table", (), "not a revision target"),
        (Direction.UPGRADE, "", (), "not a revision target"),
        (Direction.DOWNGRADE, "-1", (), "nothing to downgrade"),
        (Direction.UPGRADE, "a1a1a1a1a1a1", (HEAD,), "already past a1a1a1a1a1a1"),
        (
            Direction.DOWNGRADE,
            "d6d6d6d6d6d6",
            ("b2b2b2b2b2b2",),
            "not a valid downgrade target|target",
        ),
        (Direction.UPGRADE, "head", ("feedbeef0000",), "no revision file has"),
    ],
)
def test_bad_targets_give_one_line_errors(
    project: migrations.Project,
    direction: Direction,
    target: str,
    current: tuple[str, ...],
    message: str,
) -> None:
    with pytest.raises(MigrationError, match=message) as info:
        migrations.make_plan(project, direction, target, current)
    assert "\n" not in str(info.value)


def _cli_sql(project_ini: Path, *args: str, url: str) -> str:
    result = subprocess.run(
        [ALEMBIC, "-c", str(project_ini), "-x", "unused=1", *args, "--sql"],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.mark.parametrize("dialect_url", ["postgresql+psycopg2://u@h/db", "sqlite:///x.db"])
def test_offline_sql_equals_the_alembic_cli(
    alembic_project: Callable[..., Path], dialect_url: str
) -> None:
    ini = alembic_project(REVISIONS, url=dialect_url)
    project = migrations.Project(ini)
    # A linear range: byte for byte what `alembic upgrade A:B --sql` prints.
    plan = migrations.make_plan(project, Direction.UPGRADE, "b2b2", ("a1a1a1a1a1a1",))
    script = migrations.render(project, plan, dialect_url, "x")
    assert script.text == _cli_sql(ini, "upgrade", "a1a1a1a1a1a1:b2b2", url=dialect_url)
    linear = migrations.make_plan(project, Direction.UPGRADE, HEAD, ("m5m5m5m5m5m5",))
    assert migrations.render(project, linear, dialect_url, "x").text == _cli_sql(
        ini, "upgrade", f"m5m5m5m5m5m5:{HEAD}", url=dialect_url
    )
    # Through a branch Alembic's order of the two sides follows string hashing, which
    # differs between processes: the same schema statements, in an order of its own.
    plan = migrations.make_plan(project, Direction.UPGRADE, HEAD, ("b2b2b2b2b2b2",))
    script = migrations.render(project, plan, dialect_url, "x")
    cli = _cli_sql(ini, "upgrade", f"b2b2b2b2b2b2:{HEAD}", url=dialect_url)
    assert _schema_lines(script.text) == _schema_lines(cli)
    assert len(script.steps) == 4
    assert all(step.sql for step in script.steps)
    assert "".join(s.sql or "" for s in script.steps).count("-- Running upgrade") == 4
    whole = migrations.render(
        project, migrations.make_plan(project, Direction.UPGRADE, "heads", ()), dialect_url, "x"
    )
    assert _schema_lines(whole.text) == _schema_lines(
        _cli_sql(ini, "upgrade", "heads", url=dialect_url)
    )
    assert "CREATE TABLE alembic_version" in (whole.steps[0].sql or "")


def _schema_lines(text: str) -> list[str]:
    return sorted(line for line in text.splitlines() if "alembic_version" not in line)


def test_downgrade_sql_renders_without_a_hand_given_range(
    alembic_project: Callable[..., Path],
) -> None:
    url = "postgresql+psycopg2://u@h/db"
    ini = alembic_project(REVISIONS, url=url)
    project = migrations.Project(ini)
    plan = migrations.make_plan(project, Direction.DOWNGRADE, "-1", (HEAD,))
    script = migrations.render(project, plan, url, "postgresql")
    assert script.text == _cli_sql(ini, "downgrade", f"{HEAD}:m5m5m5m5m5m5", url=url)
    plan = migrations.make_plan(project, Direction.DOWNGRADE, "b2b2b2b2b2b2", (HEAD,))
    script = migrations.render(project, plan, url, "postgresql")
    cli = _cli_sql(ini, "downgrade", f"{HEAD}:b2b2b2b2b2b2", url=url)
    # Through a merge the branch that goes last (and so its version-table statements)
    # follows string hashing, which differs between processes: compare the schema changes.
    assert _schema_lines(script.text) == _schema_lines(cli)
    assert "DROP TABLE t3" in script.text
    assert not script.errors


def test_a_step_that_cannot_render_offline_is_reported(
    alembic_project: Callable[..., Path],
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
    url = "postgresql+psycopg2://u@h/db"
    project = migrations.Project(alembic_project(revisions, url=url))
    plan = migrations.make_plan(project, Direction.UPGRADE, "heads", ())
    script = migrations.render(project, plan, url, "postgresql")
    assert [s.step.revision for s in script.errors] == ["e7e7e7e7e7e7"]
    error = script.errors[0]
    assert error.cause is migrations.Cause.READS_DATABASE
    assert error.location == "e7e7e7e7e7e7_data_in_python.py:17"
    assert "reads the database" in (error.error or "") and "0x" not in (error.error or "")
    assert script.steps[0].sql and "CREATE TABLE t1" in script.steps[0].sql


def test_changed_revision_file_is_picked_up_without_restart(
    project: migrations.Project, project_ini: Path
) -> None:
    before = project.graph()
    versions = project_ini.parent / "migrations" / "versions"
    time.sleep(0.01)
    write_revision(versions, Rev("f8f8f8f8f8f8", HEAD, "later", "pass", "pass"))
    assert project.graph(max_age=0).heads == ("f8f8f8f8f8f8",)
    after = project.graph(max_age=0)
    assert after.fingerprint != before.fingerprint
    # An edit in place (same name) changes the file hash and the plan fingerprint.
    plan_before = migrations.make_plan(project, Direction.UPGRADE, "heads", (HEAD,), max_age=0)
    path = after.get("f8f8f8f8f8f8").path
    path.write_text(
        path.read_text().replace(
            "def upgrade():\n    pass", "def upgrade():\n    op.execute('SELECT 1')"
        )
    )
    os.utime(path, ns=(time.time_ns(), time.time_ns() + 1_000_000))
    plan_after = migrations.make_plan(project, Direction.UPGRADE, "heads", (HEAD,), max_age=0)
    assert plan_after.fingerprint != plan_before.fingerprint


def test_online_run_reports_steps_and_sql(project: migrations.Project, target_url: str) -> None:
    migrations.create_database(target_url)
    events: list[migrations.EngineEvent] = []
    engine = migrations.new_engine(target_url)
    with engine.connect() as connection:
        after = migrations.run(
            project, connection, Command.UPGRADE, "heads", on_event=events.append
        )
    engine.dispose()
    assert after == (HEAD,)
    started = [e.revision for e in events if e.kind is EventKind.STEP_STARTED]
    finished = [e for e in events if e.kind is EventKind.STEP_FINISHED]
    assert len(started) == 6 == len(finished)
    assert started[0] == "a1a1a1a1a1a1" and started[-1] == HEAD
    assert all(e.duration is not None and e.duration >= 0 for e in finished)
    sql = [e.text for e in events if e.kind is EventKind.SQL]
    assert any("CREATE TABLE t1" in s for s in sql)
    assert any("UPDATE t1 SET name" in s for s in sql)


def test_online_run_refuses_a_changed_plan(project: migrations.Project, target_url: str) -> None:
    migrations.create_database(target_url)
    plan = migrations.make_plan(project, Direction.UPGRADE, "b2b2b2b2b2b2", ())
    engine = migrations.new_engine(target_url)
    with engine.connect() as connection, pytest.raises(migrations.PlanChanged):
        migrations.run(
            project,
            connection,
            Command.UPGRADE,
            "heads",
            on_event=lambda e: None,
            expected_fingerprint=plan.fingerprint,
        )
    engine.dispose()
    # Nothing ran (Alembic may have created its empty version table before asking).
    assert migrations.read_status(project, target_url).current == ()
    check = create_engine(target_url)
    with check.connect() as connection:
        from sqlalchemy import inspect

        assert "t1" not in inspect(connection).get_table_names()
    check.dispose()


def test_stamp(project: migrations.Project, target_url: str) -> None:
    migrations.create_database(target_url)
    engine = migrations.new_engine(target_url)
    with engine.connect() as connection:
        after = migrations.run(project, connection, Command.STAMP, "c3c3", on_event=lambda e: None)
    engine.dispose()
    assert after == ("c3c3c3c3c3c3",)


def test_lock_is_exclusive_and_names_the_holder(target_url: str) -> None:
    with migrations.migration_lock(target_url, wait=0, owner="job 7 (web, alice)"):
        with (
            pytest.raises(migrations.LockHeld, match="job 7") as info,
            migrations.migration_lock(target_url, wait=0.3, owner="other"),
        ):
            pass
        assert "\n" not in str(info.value)
    with migrations.migration_lock(target_url, wait=0, owner="after"):
        pass


def test_lock_is_held_against_a_plain_alembic_run(pg_databases) -> None:  # type: ignore[no-untyped-def]
    """A holder outside the panel (another process) makes the run fail fast."""
    url = pg_databases.create("lock")
    code = (
        "import sys, time; from admin.migrations import migration_lock\n"
        "with migration_lock(sys.argv[1], wait=0, owner='plain alembic run'):\n"
        "    print('held', flush=True); time.sleep(30)\n"
    )
    holder = subprocess.Popen([sys.executable, "-c", code, url], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with (
            pytest.raises(migrations.LockHeld, match="plain alembic run"),
            migrations.migration_lock(url, wait=0.5, owner="panel"),
        ):
            pass
    finally:
        holder.kill()
        holder.wait()
        assert holder.stdout is not None
        holder.stdout.close()


def _seen(step: int) -> str:
    return (
        'op.execute("INSERT INTO seen SELECT '
        f"{step}, current_setting('synchronous_commit'), pg_current_wal_insert_lsn()\")"
    )


DURABILITY = [
    Rev(
        "s1s1",
        None,
        "one",
        'op.execute("CREATE TABLE seen (step int, sync text, lsn pg_lsn)")\n' + _seen(1),
    ),
    Rev("s2s2", "s1s1", "two", _seen(2)),
    Rev("s3s3", "s2s2", "broken", 'op.execute("SELECT * FROM no_such_table")'),
]


def test_a_postgresql_run_commits_each_revision_without_waiting_and_flushes_at_the_end(
    alembic_project: Callable[..., Path],
    pg_databases,  # type: ignore[no-untyped-def]
) -> None:
    project = migrations.Project(alembic_project(DURABILITY))
    url = pg_databases.create("durable")
    events: list[migrations.EngineEvent] = []
    engine = migrations.new_engine(url)
    try:
        with engine.connect() as connection:
            migrations.run(project, connection, Command.UPGRADE, "s2s2", on_event=events.append)
            # Back to the server's setting, and the WAL flushed past the last revision's.
            assert connection.execute(text("SHOW synchronous_commit")).scalar() == "on"
            flushed = connection.execute(
                text("SELECT pg_current_wal_flush_lsn() >= max(lsn) FROM seen")
            ).scalar()
            rows = connection.execute(text("SELECT step, sync FROM seen ORDER BY step")).all()
            connection.rollback()
            with pytest.raises(Exception, match="no_such_table"):
                migrations.run(
                    project, connection, Command.UPGRADE, "heads", on_event=events.append
                )
            assert connection.execute(text("SHOW synchronous_commit")).scalar() == "on"
    finally:
        engine.dispose()
    assert [tuple(r) for r in rows] == [(1, "off"), (2, "off")]
    assert flushed is True
    assert any(e.kind is EventKind.LOG and "one flushed commit" in e.text for e in events)
    assert migrations.read_status(project, url).current == ("s2s2",)


# x1 -> x2 -> x3: x2's downgrade writes a row of its own into the version table.
STRAY_ROW = [
    Rev("x1x1x1x1x1x1", None, "one"),
    Rev(
        "x2x2x2x2x2x2",
        "x1x1x1x1x1x1",
        "two",
        downgrade="op.execute(\"INSERT INTO alembic_version VALUES ('zzzzzzzzzzzz')\")",
    ),
    Rev("x3x3x3x3x3x3", "x2x2x2x2x2x2", "three"),
]


def test_a_run_stops_when_the_version_table_is_not_where_the_step_left_it(
    alembic_project: Callable[..., Path], target_url: str
) -> None:
    project = migrations.Project(alembic_project(STRAY_ROW))
    migrations.create_database(target_url)
    _upgrade(project, target_url)
    events: list[migrations.EngineEvent] = []
    engine = migrations.new_engine(target_url)
    try:
        with (
            engine.connect() as connection,
            pytest.raises(NotWhereExpected, match="after step 2/3") as info,
        ):
            migrations.run(project, connection, Command.DOWNGRADE, "base", on_event=events.append)
    finally:
        engine.dispose()
    assert "x1x1x1x1x1x1, zzzzzzzzzzzz" in str(info.value)
    started = [e.revision for e in events if e.kind is EventKind.STEP_STARTED]
    assert started == ["x3x3x3x3x3x3", "x2x2x2x2x2x2"]


def _chain(size: int) -> list[Rev]:
    ids = [f"{n:012x}" for n in range(1, size + 1)]
    return [
        Rev(rid, ids[n - 1] if n else None, f"r{n}", f"op.execute('SELECT {n}')")
        for n, rid in enumerate(ids)
    ]


def test_a_long_downgrade_costs_one_query_and_no_history_walk_between_two_steps(
    alembic_project: Callable[..., Path],
    pg_databases,  # type: ignore[no-untyped-def]
) -> None:
    """Counted, not timed: between two revisions the run reads the version table with one
    query (not a catalog query first), and what a reverted revision leaves as heads is not
    found by walking every revision below it (Alembic's downgrade: O(N²) over a run)."""
    size = 120
    project = migrations.Project(alembic_project(_chain(size)))
    url = pg_databases.create("walk")
    _upgrade(project, url)
    statements: list[str] = []

    def seen(conn: object, cursor: object, statement: str, *args: object) -> None:
        statements.append(statement)

    event.listen(Engine, "before_cursor_execute", seen)
    engine = migrations.new_engine(url)
    try:
        with (
            ancestor_visits(project.script(max_age=0).revision_map) as visits,
            engine.connect() as connection,
        ):
            after = migrations.run(
                project, connection, Command.DOWNGRADE, "base", on_event=lambda e: None
            )
    finally:
        event.remove(Engine, "before_cursor_execute", seen)
        engine.dispose()
    assert after == ()
    assert visits[0] < 10 * size
    catalog = [s for s in statements if "pg_catalog.pg_class" in s]
    reads = [s for s in statements if s.lstrip().startswith("SELECT alembic_version.version_num")]
    assert len(catalog) <= 3
    assert size - 1 <= len(reads) <= size + 3


def test_the_check_between_steps_reads_a_missing_version_table_as_no_revision(
    target_url: str,
) -> None:
    """The one-query read between two steps falls back to Alembic's own when the table is
    gone, and leaves the connection usable."""
    migrations.create_database(target_url)
    engine = migrations.new_engine(target_url)
    try:
        with engine.connect() as connection:
            watch = Watch(
                target=connection,
                session_setup=lambda conn: None,
                capture=Capture(lambda level, message, record: None),
                on_backend=lambda pid: None,
                on_applied=lambda heads: None,
            )
            assert watch.current_heads(MigrationContext.configure(connection)) == set()
            assert connection.execute(text("SELECT 1")).scalar() == 1
    finally:
        engine.dispose()
