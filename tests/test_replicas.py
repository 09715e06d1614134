"""Several panel processes on one PostgreSQL store and target work as one.

- any process serves any job's live log (the hub reads the store), over SSE too;
- the one-active-job rule holds across processes (the store's index);
- recovery on one replica leaves a job alone while its worker elsewhere keeps its lease,
  and frees the target once the lease has run out.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import create_user
from projects import Rev
from sqlalchemy import Connection, create_engine, select, text

from admin import audit, migrations
from admin.auth import tokens
from admin.config import Settings
from admin.errors import Conflict
from admin.jobs import Finished, JobRequest, LogHub, Published, Runner, queue
from admin.runtime import Runtime
from admin.store.models import Job, JobKind, Role, Source
from tests.conftest import TEST_SECRET_KEY
from tests.test_entrypoint import GATE_KEY, GATED, GOOD, Container, entrypoint_env

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

LAST = Rev(
    "ccc333",
    "bbb222",
    "create c",
    "op.create_table('c', sa.Column('id', sa.Integer, primary_key=True))",
    "op.drop_table('c')",
)
ALICE = audit.Actor("alice", "operator", Source.WEB)


@pytest.fixture
def shared(
    pg_databases: Any, alembic_project: Callable[..., Path], tmp_path: Path
) -> dict[str, str]:
    """One store and one target (a project whose second step waits for the test's gate)."""
    return {
        "ADMIN_DATABASE_URL": pg_databases.create("rep_store"),
        "DATABASE_URL": pg_databases.create("rep_target"),
        "ALEMBIC_CONFIG": str(alembic_project([GOOD, GATED, LAST])),
        "JOB_HEARTBEAT": "0.2",
        "LOCK_TIMEOUT": "0",
    }


@pytest.fixture
def gate(shared: dict[str, str]) -> Iterator[Connection]:
    """Holds advisory lock GATE_KEY on the target: a job waits at its gated step."""
    engine = create_engine(shared["DATABASE_URL"])
    connection = engine.connect()
    connection.execute(text("SELECT pg_advisory_lock(:k)"), {"k": GATE_KEY})
    yield connection
    connection.close()
    engine.dispose()


def open_gate(gate: Connection) -> None:
    gate.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": GATE_KEY})


@pytest.fixture
def replica(shared: dict[str, str], tmp_path: Path) -> Iterator[Callable[..., Runtime]]:
    """This test process as one more replica on the shared store."""
    opened: list[Runtime] = []

    def make(**overrides: Any) -> Runtime:
        values: dict[str, Any] = {
            "admin_database_url": shared["ADMIN_DATABASE_URL"],
            "database_url": shared["DATABASE_URL"],
            "alembic_config": Path(shared["ALEMBIC_CONFIG"]),
            "var_dir": tmp_path / "replica-var",
            "secret_key": TEST_SECRET_KEY,
            "job_heartbeat": 0.2,
            **overrides,
        }
        rt = Runtime.open(Settings(_env_file=None, **values))
        rt.upgrade_store(audit.Actor("test", None, Source.CLI))
        opened.append(rt)
        return rt

    yield make
    for rt in opened:
        rt.close()
    migrations.dispose_engines()


@pytest.fixture
def supervisor_process(shared: dict[str, str], tmp_path: Path) -> Iterator[Callable[[], Container]]:
    """Another process that submits the upgrade and supervises it (the entrypoint's way)."""
    started: list[Container] = []

    def start() -> Container:
        env = entrypoint_env(tmp_path / "a", **shared)
        container = Container(tmp_path / "a", env, ("--no-serve",)).start()
        started.append(container)
        return container

    yield start
    for container in started:
        container.stop()


def wait_for(
    condition: Callable[[], Any], what: str, timeout: float = 60.0, interval: float = 0.1
) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = condition()
        if found:
            return found
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what}")


def the_job(rt: Runtime) -> Job | None:
    with rt.reads() as session:
        return session.scalar(select(Job).order_by(Job.id.desc()).limit(1))


def at_gate(rt: Runtime) -> Job | None:
    """The job, once its worker is waiting at the gated step."""
    job = the_job(rt)
    if job is None or job.status != "running":
        return None
    with rt.reads() as session:
        texts = [line.text for line in queue.lines(session, job.id, 0, 10_000)]
    return job if any("gated step" in t for t in texts) else None


def test_a_job_supervised_by_another_process_streams_complete_here(
    replica: Callable[..., Runtime],
    supervisor_process: Callable[[], Container],
    gate: Connection,
) -> None:
    rt = replica()
    process = supervisor_process()
    job = wait_for(lambda: the_job(rt), "the job")

    async def follow() -> tuple[list[Published], str, bool]:
        hub = LogHub(rt, poll_interval=0.1)
        hub.bind(asyncio.get_running_loop())  # no supervisor here publishes: store only
        lines: list[Published] = []
        live = False
        async for item in hub.follow(job.id, 0, keepalive=1):
            if isinstance(item, Finished):
                return lines, item.status, live
            if not isinstance(item, Published):  # a keep-alive tick, a live view's change
                continue
            lines.append(item)
            if "gated step" in item.text and not live:
                now = await asyncio.to_thread(the_job, rt)
                live = now is not None and now.status == "running"
                await asyncio.to_thread(open_gate, gate)
        raise AssertionError("the stream ended without Finished")

    lines, status, live = asyncio.run(follow())
    assert process.wait_exit() == 0, process.log()
    assert status == "succeeded"
    assert live, "no line arrived while the job was running"
    with rt.reads() as session:
        stored = queue.lines(session, job.id, 0, 10_000)
    assert [line.seq for line in lines] == list(range(1, len(stored) + 1))
    assert [line.text for line in lines] == [line.text for line in stored]


def test_the_one_active_job_rule_and_recovery_across_hosts(
    replica: Callable[..., Runtime],
    supervisor_process: Callable[[], Container],
    gate: Connection,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A replica "on another host" (its hostname differs) sees a live job by its lease only."""
    process = supervisor_process()
    monkeypatch.setattr(socket, "gethostname", lambda: "replica-b")
    rt = replica(job_lease=1.0)
    job = wait_for(lambda: at_gate(rt), "the job at its gated step")
    assert job.worker_host != "replica-b"

    with pytest.raises(Conflict, match=f"job {job.id} .*via entrypoint"):
        queue.submit(rt, JobRequest(JobKind.UPGRADE, "head"), ALICE)

    # Three leases long, recovery here never takes a job whose heartbeat keeps coming.
    runner = Runner(rt)
    until = time.monotonic() + 3.0
    while time.monotonic() < until:
        assert runner.recover() == []
        time.sleep(0.2)
    with rt.reads() as session:
        assert queue.get(session, job.id).status == "running"

    open_gate(gate)
    assert process.wait_exit() == 0, process.log()
    with rt.reads() as session:
        assert queue.get(session, job.id).status == "succeeded"


def test_a_job_whose_replica_died_is_recovered_after_its_lease(
    replica: Callable[..., Runtime],
    supervisor_process: Callable[[], Container],
    gate: Connection,
    monkeypatch: pytest.MonkeyPatch,
    shared: dict[str, str],
) -> None:
    process = supervisor_process()
    monkeypatch.setattr(socket, "gethostname", lambda: "replica-b")
    rt = replica(job_lease=1.5)
    job = wait_for(lambda: at_gate(rt), "the job at its gated step")
    # The replica dies with its worker (a container killed): no heartbeat any more.
    assert process.process is not None and job.worker_pid
    process.process.kill()
    process.process.wait()
    os.killpg(job.worker_pid, signal.SIGKILL)
    died = time.monotonic()

    runner = Runner(rt)
    found = wait_for(runner.recover, "recovery", timeout=30, interval=0.1)
    assert found == [job.id]
    assert time.monotonic() - died >= 1.0  # not before the lease ran out
    with rt.reads() as session:
        done = queue.get(session, job.id)
        last = queue.lines(session, job.id, 0, 10_000)[-1].text
    assert done.status == "interrupted"
    assert done.revision_after == "aaa111"  # the gated step was rolled back
    assert "is gone" in (done.error or "") and "interrupted" in last

    # The target is free again, without any manual unlock.
    open_gate(gate)
    again = queue.submit(rt, JobRequest(JobKind.UPGRADE, "head"), ALICE)
    assert again.id != job.id


# Over HTTP: two uvicorn replicas.


def _sse_events(response: Any) -> Iterator[tuple[str, str, str]]:
    """(event, id, data) from a text/event-stream response, comments skipped."""
    event, ident, data = "message", "", []
    for raw in response:
        line = raw.decode().rstrip("\r\n")
        if not line:
            if data:
                yield event, ident, "\n".join(data)
            event, ident, data = "message", "", []
        elif line.startswith(":"):
            continue
        else:
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if name == "event":
                event = value
            elif name == "id":
                ident = value
            elif name == "data":
                data.append(value)


def _request(url: str, token: str, body: dict[str, Any] | None = None) -> urllib.request.Request:
    headers = {"Authorization": f"Bearer {token}"}
    if body is not None:
        headers["Content-Type"] = "application/json"
    data = json.dumps(body).encode() if body is not None else None
    return urllib.request.Request(url, data=data, headers=headers)


def _metric(server_url: str, name: str) -> str:
    with urllib.request.urlopen(server_url + "/metrics", timeout=10) as answer:
        lines = answer.read().decode().splitlines()
    return next(line for line in lines if line.startswith(name))


def test_two_servers_one_store_a_job_started_on_one_streams_complete_on_the_other(
    make_live_server: Callable[..., Any],
    replica: Callable[..., Runtime],
    shared: dict[str, str],
    gate: Connection,
) -> None:
    first = make_live_server(**shared)
    try:
        urllib.request.urlopen(first.url + "/api/v1/jobs/1/events", timeout=10).close()
    except urllib.error.HTTPError as refused:
        if refused.code == 404:
            pytest.skip("the jobs API has no live-log route in this checkout")
        assert refused.code == 401
    second = make_live_server(**shared)
    rt = replica()
    create_user(rt, "olga", Role.OPERATOR)
    with rt.transaction() as session:
        token = tokens.create(
            session, rt.settings, audit.Actor("test", None, Source.CLI), name="ci", username="olga"
        ).secret

    request = _request(first.url + "/api/v1/jobs", token, {"kind": "upgrade", "target": "head"})
    with urllib.request.urlopen(request, timeout=30) as answer:
        assert answer.status == 201
        job_id = json.loads(answer.read())["id"]

    seqs: list[int] = []
    done: dict[str, Any] = {}
    stream = _request(f"{second.url}/api/v1/jobs/{job_id}/events", token)
    with urllib.request.urlopen(stream, timeout=60) as answer:
        for event, ident, data in _sse_events(answer):
            if event == "line":
                line = json.loads(data)
                assert int(ident) == line["seq"]
                seqs.append(line["seq"])
                if "gated step" in line["text"]:
                    open_gate(gate)  # the job was still running: these lines came live
            elif event == "done":
                done = json.loads(data)
                break
    assert done == {"status": "succeeded"}
    with rt.reads() as session:
        stored = [line.seq for line in queue.lines(session, job_id, 0, 10_000)]
    assert seqs == stored == list(range(1, len(stored) + 1))

    # Both replicas read the same store: the same numbers on each.
    for server in (first, second):
        assert _metric(server.url, 'schema_admin_jobs{kind="upgrade",status="succeeded"}').endswith(
            " 1.0"
        )
        assert _metric(server.url, "schema_admin_pending_revisions ") == (
            "schema_admin_pending_revisions 0.0"
        )
