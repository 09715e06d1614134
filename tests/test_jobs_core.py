"""Jobs without HTTP: workers, supervisors, the store's rules, cancel, crash and recovery."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from projects import Rev, write_revision
from sqlalchemy import create_engine, func, inspect, select, text

from admin import audit, migrations
from admin.config import Settings
from admin.errors import Conflict
from admin.jobs import JobRequest, Runner, queue, run_in_foreground
from admin.runtime import Runtime
from admin.store.models import AuditEvent, Job, JobKind, JobLine, JobStatus, Source, utcnow

ALICE = audit.Actor("alice", "operator", Source.WEB, "10.1.1.1")

LINEAR = [
    Rev(
        "aaa111",
        None,
        "create a",
        "op.create_table('a', sa.Column('id', sa.Integer, primary_key=True))",
        "op.drop_table('a')",
    ),
    Rev(
        "bbb222",
        "aaa111",
        "create b",
        "op.create_table('b', sa.Column('id', sa.Integer, primary_key=True))",
        "op.drop_table('b')",
    ),
    Rev(
        "ccc333",
        "bbb222",
        "create c",
        "op.create_table('c', sa.Column('id', sa.Integer, primary_key=True))",
        "op.drop_table('c')",
    ),
]
SLEEPY = [
    LINEAR[0],
    Rev(
        "bbb222",
        "aaa111",
        "slow step",
        "op.create_table('b', sa.Column('id', sa.Integer, primary_key=True))\n"
        "op.execute('SELECT pg_sleep(60)')",
        "op.drop_table('b')",
    ),
    LINEAR[2],
]
FAILING = [
    *LINEAR[:2],
    Rev(
        "ccc333",
        "bbb222",
        "broken",
        "op.create_table('c', sa.Column('id', sa.Integer, primary_key=True))\n"
        "op.execute('SELECT * FROM no_such_table')",
        "op.drop_table('c')",
    ),
]


@pytest.fixture
def make_runtime(
    make_settings: Callable[..., Settings], alembic_project: Callable[..., Path], pg_databases
) -> Iterator[Callable[..., Runtime]]:  # type: ignore[no-untyped-def]
    opened: list[Runtime] = []

    def make(
        revisions: list[Rev] = LINEAR,
        *,
        target: str | None = None,
        store: str | None = None,
        name: str = "project",
        **settings: object,
    ) -> Runtime:
        ini = alembic_project(revisions, name=name) if name else None
        values: dict[str, object] = {
            "database_url": target or pg_databases.create("job"),
            "alembic_config": ini,
            "job_heartbeat": 0.2,
            "job_cancel_grace": 3.0,
            **settings,
        }
        if store:
            values["admin_database_url"] = store
        rt = Runtime.open(make_settings(**values))
        rt.upgrade_store(audit.Actor("test", None, Source.CLI))
        opened.append(rt)
        return rt

    yield make
    for rt in opened:
        rt.close()
    migrations.dispose_engines()


def _lines(rt: Runtime, job_id: int) -> list[JobLine]:
    with rt.reads() as session:
        return queue.lines(session, job_id, 0, 10_000)


def _job(rt: Runtime, job_id: int) -> Job:
    with rt.reads() as session:
        return queue.get(session, job_id)


def _actions(rt: Runtime, job_id: int) -> list[str]:
    with rt.reads() as session:
        return list(
            session.scalars(
                select(AuditEvent.action).where(AuditEvent.job_id == job_id).order_by(AuditEvent.id)
            )
        )


def _tables(url: str) -> set[str]:
    engine = create_engine(url)
    try:
        return set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def _wait_for_line(rt: Runtime, job_id: int, needle: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(needle in line.text for line in _lines(rt, job_id)):
            return
        time.sleep(0.05)
    raise AssertionError(f"no line with {needle!r}: {[x.text for x in _lines(rt, job_id)]}")


@pytest.mark.parametrize("dialect", ["sqlite", "postgresql"])
def test_foreground_upgrade_records_everything(
    make_runtime: Callable[..., Runtime], tmp_path: Path, dialect: str
) -> None:
    target = f"sqlite:///{tmp_path / 't.sqlite3'}" if dialect == "sqlite" else None
    if target:
        migrations.create_database(target)
    rt = make_runtime(target=target)
    echoed: list[str] = []
    job = run_in_foreground(
        rt, JobRequest(JobKind.UPGRADE, "head"), audit.Actor.os_user(), echo=echoed.append
    )
    assert job.status == JobStatus.SUCCEEDED.value, job.error
    assert job.revision_before == "base"
    assert job.revision_after == "ccc333"
    assert job.steps_total == 3 and job.steps_done == 3
    assert job.source == "cli"
    assert job.sql_fingerprint and len(job.sql_fingerprint) == 64
    lines = _lines(rt, job.id)
    assert [line.seq for line in lines] == list(range(1, len(lines) + 1))
    texts = [line.text for line in lines]
    assert texts == echoed
    assert any("[1/3] Running upgrade  -> aaa111" in t for t in texts)
    assert any(line.level == "sql" and "CREATE TABLE c" in line.text for line in lines)
    assert "job succeeded" in texts[-1] and "ccc333" in texts[-1]
    assert _actions(rt, job.id) == ["job-queued", "job-started", "job-finished"]
    assert {"a", "b", "c"} <= _tables(rt.settings.database_url)


def test_failing_revision_leaves_the_last_good_revision(
    make_runtime: Callable[..., Runtime],
) -> None:
    rt = make_runtime(FAILING)
    job = run_in_foreground(rt, JobRequest(JobKind.UPGRADE, "head"), ALICE, echo=lambda _: None)
    assert job.status == JobStatus.FAILED.value
    assert job.revision_after == "bbb222"
    assert "SQLSTATE 42P01" in (job.error or "")
    assert "no_such_table" in (job.error or "")
    assert any(line.level == "error" and "42P01" in line.text for line in _lines(rt, job.id))
    assert "c" not in _tables(rt.settings.database_url)
    with rt.reads() as session:
        finished = session.scalar(
            select(AuditEvent).where(
                AuditEvent.job_id == job.id, AuditEvent.action == "job-finished"
            )
        )
    assert finished is not None and finished.outcome == "failure"
    assert finished.details["revision_after"] == "bbb222"


def test_downgrade_and_stamp(make_runtime: Callable[..., Runtime]) -> None:
    rt = make_runtime()
    run_in_foreground(rt, JobRequest(JobKind.UPGRADE, "head"), ALICE, echo=lambda _: None)
    down = run_in_foreground(rt, JobRequest(JobKind.DOWNGRADE, "-1"), ALICE, echo=lambda _: None)
    assert down.status == "succeeded" and down.revision_after == "bbb222"
    stamp = run_in_foreground(rt, JobRequest(JobKind.STAMP, "ccc333"), ALICE, echo=lambda _: None)
    assert stamp.status == "succeeded" and stamp.revision_after == "ccc333"
    assert "c" not in _tables(rt.settings.database_url)


def test_nothing_to_do_and_bad_targets_are_refused_and_audited(
    make_runtime: Callable[..., Runtime],
) -> None:
    rt = make_runtime()
    with pytest.raises(migrations.MigrationError, match="no revision matches"):
        queue.submit(rt, JobRequest(JobKind.UPGRADE, "nope"), ALICE)
    run_in_foreground(rt, JobRequest(JobKind.UPGRADE, "head"), ALICE, echo=lambda _: None)
    with pytest.raises(Exception, match="nothing to upgrade"):
        queue.submit(rt, JobRequest(JobKind.UPGRADE, "head"), ALICE)
    with rt.reads() as session:
        refused = session.scalars(
            select(AuditEvent).where(AuditEvent.action == "job-refused")
        ).all()
    assert len(refused) == 2 and all(r.outcome == "denied" for r in refused)


def test_a_changed_revision_file_after_preview_is_refused(
    make_runtime: Callable[..., Runtime],
) -> None:
    rt = make_runtime()
    project = migrations.open_project(rt.settings.alembic_config)
    shown = migrations.make_plan(project, migrations.Direction.UPGRADE, "head", (), max_age=0)
    versions = Path(rt.settings.alembic_config).parent / "migrations" / "versions"
    write_revision(versions, Rev("ddd444", "ccc333", "deployed meanwhile"))
    with pytest.raises(Conflict, match="plan changed") as info:
        queue.submit(rt, JobRequest(JobKind.UPGRADE, "head", shown.fingerprint), ALICE)
    assert info.value.status == 409
    with rt.reads() as session:
        assert session.scalar(select(func.count()).select_from(Job)) == 0


def test_concurrent_submissions_from_two_instances_start_one_job(
    make_runtime: Callable[..., Runtime], pg_databases
) -> None:  # type: ignore[no-untyped-def]
    store = pg_databases.create("store")
    target = pg_databases.create("target")
    first = make_runtime(target=target, store=store, name="p1")
    second = make_runtime(target=target, store=store, name="p2")

    def attempt(i: int) -> str:
        rt = first if i % 2 else second
        try:
            queue.submit(rt, JobRequest(JobKind.UPGRADE, "head"), ALICE)
            return "queued"
        except Conflict as exc:
            assert exc.status == 409
            assert "alice" in str(exc)
            return "409"

    with ThreadPoolExecutor(10) as pool:
        outcomes = list(pool.map(attempt, range(20)))
    assert outcomes.count("queued") == 1
    assert outcomes.count("409") == 19
    with first.reads() as session:
        assert session.scalar(select(func.count()).select_from(Job)) == 1
        refused = session.scalar(
            select(func.count()).select_from(AuditEvent).where(AuditEvent.action == "job-refused")
        )
    assert refused == 19


def test_a_lock_held_outside_the_panel_fails_the_job_fast(
    make_runtime: Callable[..., Runtime],
) -> None:
    rt = make_runtime(migration_lock_wait=0.5)
    code = (
        "import sys, time; from admin.migrations import migration_lock\n"
        "with migration_lock(sys.argv[1], wait=0, owner='alembic upgrade by bob'):\n"
        "    print('held', flush=True); time.sleep(60)\n"
    )
    holder = subprocess.Popen(
        [sys.executable, "-c", code, rt.settings.database_url], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        job = run_in_foreground(rt, JobRequest(JobKind.UPGRADE, "head"), ALICE, echo=lambda _: None)
    finally:
        holder.kill()
        holder.wait()
        assert holder.stdout is not None
        holder.stdout.close()
    assert job.status == "failed"
    assert "alembic upgrade by bob" in (job.error or "")
    assert not {"a", "b", "c"} & _tables(rt.settings.database_url)


def test_cancel_a_long_step(make_runtime: Callable[..., Runtime]) -> None:
    rt = make_runtime(SLEEPY)
    runner = Runner(rt)
    runner.start()
    try:
        job = runner.submit(JobRequest(JobKind.UPGRADE, "head"), ALICE)
        _wait_for_line(rt, job.id, "pg_sleep")
        # A second job on the same target meanwhile: 409 naming the running one.
        with pytest.raises(Conflict, match=f"job {job.id} .*alice"):
            runner.submit(JobRequest(JobKind.UPGRADE, "head"), ALICE)
        asked = time.monotonic()
        runner.cancel(job.id, audit.Actor("carol", "operator", Source.WEB))
        assert runner.wait(job.id, timeout=30)
        assert time.monotonic() - asked < 10
    finally:
        runner.stop()
    done = _job(rt, job.id)
    assert done.status == "cancelled"
    assert done.revision_after == "aaa111"
    assert done.cancel_requested_by == "carol"
    assert "b" not in _tables(rt.settings.database_url)
    assert "job-cancel-requested" in _actions(rt, job.id)


def test_steps_done_catches_up_while_a_long_step_runs(
    make_runtime: Callable[..., Runtime],
) -> None:
    """Two quick steps, then one that sleeps: the job shows 2 done while the third runs
    (progress is written at most once a second, and also when no line comes)."""
    slow_third = [
        *LINEAR[:2],
        Rev("ccc333", "bbb222", "slow", "op.execute('SELECT pg_sleep(60)')", "pass"),
    ]
    rt = make_runtime(slow_third)
    runner = Runner(rt)
    runner.start()
    try:
        job = runner.submit(JobRequest(JobKind.UPGRADE, "head"), ALICE)
        _wait_for_line(rt, job.id, "pg_sleep")
        deadline = time.monotonic() + 10
        while _job(rt, job.id).steps_done < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _job(rt, job.id).steps_done == 2
        runner.cancel(job.id, ALICE)
        assert runner.wait(job.id, timeout=30)
    finally:
        runner.stop()
    assert _job(rt, job.id).status == "cancelled"


def test_a_killed_worker_leaves_a_revision_boundary_and_an_interrupted_job(
    make_runtime: Callable[..., Runtime],
) -> None:
    rt = make_runtime(SLEEPY)
    runner = Runner(rt)
    runner.start()
    try:
        job = runner.submit(JobRequest(JobKind.UPGRADE, "head"), ALICE)
        _wait_for_line(rt, job.id, "pg_sleep")
        os.kill(_job(rt, job.id).worker_pid or 0, signal.SIGKILL)
        assert runner.wait(job.id, timeout=30)
    finally:
        runner.stop()
    done = _job(rt, job.id)
    assert done.status == "interrupted"
    assert done.revision_after == "aaa111"
    lines = [line.text for line in _lines(rt, job.id)]
    assert any("pg_sleep" in t for t in lines)
    assert "SIGKILL" in lines[-1]
    # A new job is accepted at once, without any manual unlock.
    again = run_in_foreground(rt, JobRequest(JobKind.STAMP, "aaa111"), ALICE, echo=lambda _: None)
    assert again.status == "succeeded"


def test_recovery_marks_orphaned_jobs_interrupted(make_runtime: Callable[..., Runtime]) -> None:
    """A panel that died with its worker (both on this host): the next start finds the job at
    once, whatever its heartbeat says, and frees the target."""
    from admin.jobs.ownership import Owner

    rt = make_runtime()
    run_in_foreground(rt, JobRequest(JobKind.UPGRADE, "bbb222"), ALICE, echo=lambda _: None)
    job = queue.submit(rt, JobRequest(JobKind.UPGRADE, "head"), ALICE)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    with rt.transaction() as session:
        row = session.get(Job, job.id)
        assert row is not None
        row.status = "running"
        row.owner = str(Owner("supervisor", socket.gethostname(), dead.pid, "gone"))
        row.worker_pid = dead.pid
        row.worker_host = socket.gethostname()
        row.heartbeat_at = utcnow()
        session.add(JobLine(job_id=job.id, seq=1, text="step started", created_at=utcnow()))
    runner = Runner(rt)
    assert runner.recover() == [job.id]
    done = _job(rt, job.id)
    assert done.status == "interrupted"
    assert done.revision_after == "bbb222"
    texts = [line.text for line in _lines(rt, job.id)]
    assert texts[0] == "step started" and "interrupted" in texts[-1]
    assert "job-interrupted" in _actions(rt, job.id)
    after = run_in_foreground(rt, JobRequest(JobKind.UPGRADE, "head"), ALICE, echo=lambda _: None)
    assert after.status == "succeeded"


def test_a_live_job_on_another_replica_is_not_recovered(
    make_runtime: Callable[..., Runtime],
) -> None:
    rt = make_runtime()
    job = queue.submit(rt, JobRequest(JobKind.UPGRADE, "head"), ALICE)
    with rt.transaction() as session:
        row = session.get(Job, job.id)
        assert row is not None
        row.status = "running"
        row.worker_pid = 1
        row.worker_host = "another-replica"
        row.heartbeat_at = utcnow()
    assert Runner(rt).recover() == []
    assert _job(rt, job.id).status == "running"


def test_hub_streams_a_running_job(make_runtime: Callable[..., Runtime]) -> None:
    import asyncio

    from admin.jobs import Finished, LogHub

    rt = make_runtime()

    async def scenario() -> tuple[list[int], str]:
        hub = LogHub(rt, poll_interval=0.1)
        hub.bind(asyncio.get_running_loop())
        runner = Runner(rt, publish=hub.publish)
        job = runner.submit(JobRequest(JobKind.UPGRADE, "head"), ALICE)
        seqs: list[int] = []
        status = ""
        async for item in hub.follow(job.id, 0, keepalive=1):
            if isinstance(item, Finished):
                status = item.status
                break
            if item is not None:
                seqs.append(item.seq)
        await asyncio.to_thread(runner.stop)
        return seqs, status

    seqs, status = asyncio.run(scenario())
    assert status == "succeeded"
    assert seqs == list(range(1, len(seqs) + 1))
    assert len(seqs) == len(_lines(rt, 1))


def test_the_worker_starts_without_the_panels_settings_orm_or_backups() -> None:
    """A migration's worker imports the engine only: each of these would add to every
    job's start (the bench's upgrade job compares it with plain `alembic`)."""
    heavy = ("pydantic", "sqlalchemy.orm", "admin.config", "admin.store", "admin.backups")
    probe = (
        "import sys, admin.jobs.worker; "
        f"print(sorted(m for m in sys.modules if m.startswith({heavy!r})))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert loaded == "[]"


@pytest.mark.parametrize(
    ("stdin", "error"),
    [
        ("", "the work order on stdin is not JSON"),
        ("[1, 2]", "the work order on stdin is not a JSON object"),
        ('{"job_id": 7, "kind": "upgrade"}', "the work order on stdin lacks alembic_config"),
        (None, "the work order on stdin is for job 7"),
    ],
)
def test_a_worker_without_a_valid_order_fails_with_one_line(stdin: str | None, error: str) -> None:
    from admin.jobs.protocol import Order, decode

    if stdin is None:  # a valid order, for another job
        stdin = Order(
            7, "upgrade", None, None, "cli", "bob", "sqlite://", "x.ini", "0", "0", 1.0, False
        ).encode()
    done = subprocess.run(
        [sys.executable, "-m", "admin.jobs.worker", "8" if error.endswith("job 7") else "7"],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    result = decode(done.stdout.splitlines()[-1])
    assert result.kind == "result" and result.data["status"] == "failed"
    assert str(result.data["error"]).startswith(error)


def test_the_line_writer_replaces_a_lost_connection_and_pools_nothing(
    make_runtime: Callable[..., Runtime],
    pg_databases,  # type: ignore[no-untyped-def]
) -> None:
    from admin.jobs.ownership import Owner

    rt = make_runtime(store=pg_databases.create("store"))
    job = queue.submit(rt, JobRequest(JobKind.UPGRADE, "head"), ALICE)
    owner = Owner.new("supervisor")
    queue.claim(rt, job.id, owner)
    writer = queue.LineWriter(rt, job.id, owner)
    writer.append(1, [queue.NewLine("one", "info", "runner")], steps_done=1)
    # The store restarts between two batches: every session of the store is gone.
    admin = create_engine(rt.settings.admin_database_url)
    with admin.connect() as connection:
        killed = connection.execute(
            text(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        ).scalar()
    admin.dispose()
    assert killed
    writer.append(2, [queue.NewLine("two", "info", "runner")], steps_done=2)
    writer.close()
    assert [line.text for line in _lines(rt, job.id)] == ["one", "two"]
    assert _job(rt, job.id).steps_done == 2
    # Its commits did not wait for the WAL flush; the pool's connections still do.
    with rt.store_engine.connect() as connection:
        assert connection.execute(text("SHOW synchronous_commit")).scalar() == "on"
