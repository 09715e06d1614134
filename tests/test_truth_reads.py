"""Reads of the target never stall the panel: a session holds ACCESS EXCLUSIVE on the
version table (a revision that alters it, VACUUM FULL, a restore) while the panel reads.

Real PostgreSQL, a real uvicorn (``python -m admin serve``) and the real CLI. The lock is
held for the whole of each test: every answer checked here arrives while it is held, which
the panel before this change could not give (its reads waited for the lock's end).
"""

from __future__ import annotations

import concurrent.futures
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from helpers import LiveServer
from projects import Rev, write_project
from sqlalchemy import Connection, create_engine, text
from truth_support import at_first_revision, bearer, in_thread

from admin import migrations

pytestmark = [pytest.mark.postgres]

PROJECT = [
    Rev("aaa111", None, "create a", "op.create_table('a', sa.Column('id', sa.Integer))"),
    Rev("bbb222", "aaa111", "create b", "op.create_table('b', sa.Column('id', sa.Integer))"),
]
LOCKER = "apex truth locker"
CONCURRENT = 50


class Locker:
    """A session that holds ACCESS EXCLUSIVE on alembic_version until released."""

    def __init__(self, url: str) -> None:
        self.engine = create_engine(url, connect_args={"application_name": LOCKER})
        self.connection: Connection = self.engine.connect()
        self.transaction = self.connection.begin()
        self.pid = int(self.connection.connection.dbapi_connection.get_backend_pid())  # type: ignore[union-attr]
        self.connection.execute(text("LOCK TABLE alembic_version IN ACCESS EXCLUSIVE MODE"))

    def release(self) -> None:
        if self.connection.closed:
            return
        self.transaction.rollback()
        self.connection.close()
        self.engine.dispose()


@pytest.fixture(scope="module")
def target(pg_databases: Any) -> str:
    url: str = pg_databases.create("reads")
    at_first_revision(url)
    return url


@pytest.fixture(scope="module")
def project_ini(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_project(tmp_path_factory.mktemp("reads") / "project", PROJECT)


@pytest.fixture
def locked(target: str) -> Iterator[Locker]:
    locker = Locker(target)
    try:
        yield locker
    finally:
        locker.release()


@pytest.fixture
def short_reads() -> Iterator[None]:
    migrations.configure(migrations.ConnectOptions(read_timeout=1.0))
    yield
    migrations.configure(migrations.ConnectOptions())


def test_status_names_the_lock_holder_while_it_holds(
    target: str, project_ini: Path, locked: Locker, short_reads: None
) -> None:
    project = migrations.open_project(project_ini)
    status = in_thread(migrations.read_status, project, target)
    assert status.state is migrations.State.UNREACHABLE
    assert status.blocked
    message = status.message
    assert f"the version table alembic_version is locked by pid {locked.pid}" in message
    assert "LOCK TABLE alembic_version IN ACCESS EXCLUSIVE MODE [idle in transaction]" in message
    assert LOCKER in message and "since " in message and "TARGET_READ_TIMEOUT" in message
    assert "\n" not in message
    # A submission's read of the target says the same, as a 503.
    refused = in_thread(_raising, migrations.read_current, project, target)
    assert isinstance(refused, migrations.TargetLocked)
    assert refused.status == 503 and f"pid {locked.pid}" in str(refused)
    # Once released, the same pool reads at once again.
    locked.release()
    assert migrations.read_status(project, target).current == ("aaa111",)


def _raising(call: Any, *args: Any) -> Any:
    try:
        return call(*args)
    except Exception as exc:  # noqa: BLE001 - handed back to the test thread
        return exc


def test_cli_status_answers_with_one_line(
    target: str, project_ini: Path, locked: Locker, tmp_path: Path
) -> None:
    env = {
        "DATABASE_URL": target,
        "ALEMBIC_CONFIG": str(project_ini),
        "ADMIN_DATABASE_URL": f"sqlite:///{tmp_path / 'store.sqlite3'}",
        "VAR_DIR": str(tmp_path / "var"),
        "TARGET_READ_TIMEOUT": "1",
        "PATH": "/usr/bin:/bin",
    }
    done = subprocess.run(
        [sys.executable, "-m", "admin", "status"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert f"locked by pid {locked.pid}" in lines[0] and "LOCK TABLE" in lines[0]


@pytest.fixture(scope="module")
def reads_server(
    tmp_path_factory: pytest.TempPathFactory, target: str, project_ini: Path
) -> Iterator[tuple[LiveServer, str]]:
    server = LiveServer(
        tmp_path_factory.mktemp("reads-server"),
        env_overrides={
            "DATABASE_URL": target,
            "ALEMBIC_CONFIG": str(project_ini),
            "TARGET_READ_TIMEOUT": "2",
            "TARGET_READ_POOL": "4",
        },
    ).start()
    server.add_user("reads-operator", "operator")
    yield server, bearer(server, "reads-operator")
    server.stop()


def test_store_only_requests_do_not_queue_behind_status_calls(
    reads_server: tuple[LiveServer, str], locked: Locker
) -> None:
    """Fifty status calls wait on the locked target; /api/v1/me answers before any of them.

    Each status call waits at least TARGET_READ_TIMEOUT (2 s) for the lock or for one of the
    4 read connections; before this change each held one of the 40 threads every request
    shares until the lock ended, and /api/v1/me queued behind them.
    """
    server, secret = reads_server
    headers = {"Authorization": f"Bearer {secret}"}
    finished: list[str] = []
    order_lock = threading.Lock()
    started = threading.Barrier(CONCURRENT + 1)

    clients = [
        httpx.Client(base_url=server.url, timeout=60, headers=headers) for _ in range(CONCURRENT)
    ]

    def status_call(client: httpx.Client) -> httpx.Response:
        started.wait()
        answer = client.get("/api/v1/status")
        with order_lock:
            finished.append("status")
        return answer

    with concurrent.futures.ThreadPoolExecutor(CONCURRENT) as pool:
        calls = [pool.submit(status_call, client) for client in clients]
        started.wait()
        with httpx.Client(base_url=server.url, timeout=60, headers=headers) as client:
            # Let the status calls reach the server before asking who we are.
            assert client.get("/healthz").status_code == 200
            me = client.get("/api/v1/me")
        with order_lock:
            finished.append("me")
        answers = [call.result(timeout=90) for call in calls]
    for client in clients:
        client.close()

    assert me.status_code == 200 and me.json()["username"] == "reads-operator"
    assert finished.index("me") == 0, f"/api/v1/me answered after {finished.index('me')} calls"
    bodies = [answer.json() for answer in answers]
    assert {answer.status_code for answer in answers} == {200}
    assert {body["state"] for body in bodies} == {"unreachable"}
    named = [body for body in bodies if f"locked by pid {locked.pid}" in body["message"]]
    assert named, bodies[0]["message"]
    for body in bodies:
        assert "locked" in body["message"] or "slow to answer" in body["message"]


def test_readiness_metrics_and_submission_under_the_lock(
    reads_server: tuple[LiveServer, str], locked: Locker
) -> None:
    server, secret = reads_server
    with httpx.Client(
        base_url=server.url, timeout=60, headers={"Authorization": f"Bearer {secret}"}
    ) as client:
        # A locked version table is the target's state, not the panel's: still ready.
        ready = client.get("/readyz")
        assert ready.status_code == 200, ready.text
        assert ready.json()["target"] == "blocked"
        assert f"pid {locked.pid}" in ready.json()["target_message"]
        scrape = client.get("/metrics")
        assert scrape.status_code == 200
        assert "schema_admin_target_up 0.0" in scrape.text
        assert "schema_admin_store_up 1.0" in scrape.text
        # A job's submission reads where the target stands: refused with the holder named.
        refused = client.post("/api/v1/jobs", json={"kind": "upgrade", "target": "head"})
        assert refused.status_code == 503, refused.text
        assert f"locked by pid {locked.pid}" in refused.json()["detail"]
    locked.release()
    with httpx.Client(
        base_url=server.url, timeout=60, headers={"Authorization": f"Bearer {secret}"}
    ) as client:
        assert client.get("/api/v1/status").json()["current"] == ["aaa111"]
