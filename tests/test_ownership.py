"""One owner per job, through crashes (issue [truth], item 1): real processes, real signals.

The panel (here a `schema-admin migrate` process, the CLI's supervisor) is killed with
SIGKILL while its job waits in a step. Its worker, in a session of its own, outlives it:
it must take the job over, let the running step end, stop before the next one, and record
an end that says what the database says, with every line; recovery elsewhere must leave it
alone while it runs; and the target is free for the next job afterwards.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from projects import Rev
from sqlalchemy import Connection, create_engine, select, text

from admin import audit, migrations
from admin.config import Settings
from admin.jobs import Runner, queue
from admin.jobs.recovery import pid_alive
from admin.runtime import Runtime
from admin.store.models import AuditEvent, Job, Source
from tests.conftest import TEST_SECRET_KEY
from tests.test_entrypoint import GATE_KEY, GATED, GOOD, entrypoint_env

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

LAST = Rev(
    "ccc333",
    "bbb222",
    "create c",
    "op.create_table('c', sa.Column('id', sa.Integer, primary_key=True))",
    "op.drop_table('c')",
)


@pytest.fixture
def shared(
    pg_databases: Any, alembic_project: Callable[..., Path], tmp_path: Path
) -> dict[str, str]:
    return {
        "ADMIN_DATABASE_URL": pg_databases.create("own_store"),
        "DATABASE_URL": pg_databases.create("own_target"),
        "ALEMBIC_CONFIG": str(alembic_project([GOOD, GATED, LAST])),
        "JOB_HEARTBEAT": "0.2",
        "JOB_LEASE": "2",
        "LOCK_TIMEOUT": "0",
    }


@pytest.fixture
def gate(shared: dict[str, str]) -> Iterator[Connection]:
    engine = create_engine(shared["DATABASE_URL"])
    connection = engine.connect()
    connection.execute(text("SELECT pg_advisory_lock(:k)"), {"k": GATE_KEY})
    yield connection
    connection.close()
    engine.dispose()


@pytest.fixture
def replica(shared: dict[str, str], tmp_path: Path) -> Iterator[Runtime]:
    """This test process as another panel on the same store and target."""
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None,
        admin_database_url=shared["ADMIN_DATABASE_URL"],
        database_url=shared["DATABASE_URL"],
        alembic_config=Path(shared["ALEMBIC_CONFIG"]),
        var_dir=tmp_path / "replica-var",
        secret_key=TEST_SECRET_KEY,
        job_lease=2.0,
    )
    rt = Runtime.open(settings)
    rt.upgrade_store(audit.Actor("test", None, Source.CLI))
    yield rt
    rt.close()
    migrations.dispose_engines()


def wait_for(check: Callable[[], Any], what: str, timeout: float = 60) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def _job(rt: Runtime, job_id: int | None = None) -> Job | None:
    with rt.reads() as session:
        if job_id is None:
            return session.scalars(select(Job).order_by(Job.id.desc())).first()
        return queue.get(session, job_id)


def _texts(rt: Runtime, job_id: int) -> list[str]:
    with rt.reads() as session:
        return [line.text for line in queue.lines(session, job_id, 0, 10_000)]


def _heads(url: str) -> list[str]:
    engine = create_engine(url)
    with engine.connect() as connection:
        heads = sorted(
            connection.execute(text("SELECT version_num FROM alembic_version")).scalars()
        )
    engine.dispose()
    return heads


def test_a_killed_panels_worker_takes_the_job_over_and_stops_at_a_boundary(
    shared: dict[str, str], gate: Connection, replica: Runtime, tmp_path: Path
) -> None:
    env = entrypoint_env(tmp_path / "cli", **shared)
    with open(tmp_path / "panel.log", "wb") as log:
        panel = subprocess.Popen(
            [sys.executable, "-m", "admin", "migrate"],
            env=env,
            cwd=tmp_path,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        job = wait_for(
            lambda: (j := _job(replica)) and j.steps_done == 1 and j.worker_pid and j,
            "the job waiting in its gated step",
        )
    except AssertionError:
        raise AssertionError((tmp_path / "panel.log").read_text()) from None
    worker = job.worker_pid
    os.kill(panel.pid, signal.SIGKILL)  # the panel dies; its worker does not
    panel.wait()

    # The worker notices and takes the job over; recovery here must leave it alone.
    wait_for(
        lambda: (j := _job(replica, job.id)) and (j.owner or "").startswith("worker "),
        "the takeover",
    )
    runner = Runner(replica)
    for _ in range(20):  # ten leases' worth of recovery passes, with the step still waiting
        assert runner.recover() == []
        time.sleep(0.1)
    assert _job(replica, job.id).status == "running"
    assert pid_alive(worker, "admin.jobs.worker")

    gate.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": GATE_KEY})
    ended = wait_for(
        lambda: (j := _job(replica, job.id)) and j.status != "running" and j,
        "the job's end",
        timeout=30,
    )
    assert ended.status == "interrupted", ended.error
    # The step that was running finished; the next one never began.
    assert _heads(shared["DATABASE_URL"]) == ["bbb222"]
    assert ended.revision_after == "bbb222" and ended.steps_done == 2
    assert "stopped before step 3/3" in (ended.error or "")
    texts = _texts(replica, job.id)
    assert any("took the job over" in t for t in texts), texts
    assert any(t.startswith("[2/3] ") and "done in" in t for t in texts), texts
    assert "the database is at bbb222" in texts[-1]
    wait_for(lambda: not pid_alive(worker, "admin.jobs.worker"), "the worker's exit", timeout=10)
    with replica.reads() as session:
        actions = list(
            session.scalars(
                select(AuditEvent.action).where(AuditEvent.job_id == job.id).order_by(AuditEvent.id)
            )
        )
    assert actions[-1] == "job-finished" and "job-interrupted" not in actions

    # The target is free: the next job goes on from where the database is.
    done = subprocess.run(
        [sys.executable, "-m", "admin", "migrate"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert _heads(shared["DATABASE_URL"]) == ["ccc333"]
