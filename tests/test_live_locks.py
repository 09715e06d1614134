"""The live view against real PostgreSQL: a session holds a conflicting lock while a job
runs; the job's API and page name the blocker, the log keeps the summary, a lock timeout
names table, mode, blocker and timeout; lock retries get through once the blocker commits;
sessions queued behind the job are counted; CREATE INDEX CONCURRENTLY shows its progress."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg2
import pytest
from fastapi.testclient import TestClient
from helpers import create_user, csrf_token, login, page_soup
from projects import Rev
from test_ops import scrape, value

from admin import audit
from admin.config import Settings
from admin.jobs import JobRequest, queue
from admin.live import schedule
from admin.store.models import Job, JobKind, JobLine, Role, Source
from admin.web.app import create_app

# Each of these tests takes seconds (processes started, jobs run): run them first.
pytestmark = pytest.mark.slow

ALICE = audit.Actor("alice", "operator", Source.WEB, "10.1.1.1")
# The generous wait for something the panel samples about once a second.
PATIENCE = 60.0

REVISIONS = [
    Rev(
        "aaa111",
        None,
        "create clients",
        "op.create_table('clients', sa.Column('id', sa.Integer, primary_key=True))\n"
        "op.execute('INSERT INTO clients SELECT generate_series(1, 5)')",
        "op.drop_table('clients')",
    ),
    Rev(
        "bbb222",
        "aaa111",
        "add a column",
        "op.add_column('clients', sa.Column('note', sa.Text))",
        "op.drop_column('clients', 'note')",
    ),
]
BIG = [
    Rev(
        "aaa111",
        None,
        "a big table",
        "op.execute('CREATE TABLE big AS SELECT g AS id, md5(g::text) AS v "
        "FROM generate_series(1, 3000000) g')",
        "op.drop_table('big')",
    ),
    Rev(
        "bbb222",
        "aaa111",
        "index it concurrently",
        "with op.get_context().autocommit_block():\n"
        "        op.execute('CREATE INDEX CONCURRENTLY ix_big_v ON big (v)')",
        "op.drop_index('ix_big_v', 'big')",
    ),
]


def _dsn(url: str) -> str:
    return url.replace("postgresql+psycopg2://", "postgresql://")


class Holder:
    """A session outside the panel (an application) holding a lock in an open transaction."""

    def __init__(self, url: str, sql: str, application: str = "crm-api") -> None:
        self.connection = psycopg2.connect(_dsn(url), application_name=application)
        self.cursor = self.connection.cursor()
        self.cursor.execute("SELECT pg_backend_pid()")
        self.pid = int(self.cursor.fetchone()[0])
        self.cursor.execute(sql)

    def commit(self) -> None:
        self.connection.commit()

    def close(self) -> None:
        self.connection.close()


@pytest.fixture
def make_app(
    make_settings: Callable[..., Settings], alembic_project: Callable[..., Path], pg_databases: Any
) -> Iterator[Callable[..., TestClient]]:
    clients: list[TestClient] = []

    def make(revisions: list[Rev], **overrides: Any) -> TestClient:
        settings = make_settings(
            database_url=pg_databases.create("live"),
            alembic_config=alembic_project(revisions),
            job_heartbeat=0.5,
            **overrides,
        )
        client = TestClient(create_app(settings))
        client.__enter__()
        clients.append(client)
        user = create_user(client.app.state.runtime, "olga", Role.OPERATOR)
        login(client, user.username)
        return client

    yield make
    for client in clients:
        client.__exit__(None, None, None)


def _submit(client: TestClient, target: str, **options: Any) -> int:
    request = JobRequest(JobKind.UPGRADE, target, None, dict(options))
    return client.app.state.runner.submit(request, ALICE).id


def _job(client: TestClient, job_id: int) -> Job:
    with client.app.state.runtime.reads() as session:
        return queue.get(session, job_id)


def _lines(client: TestClient, job_id: int) -> list[JobLine]:
    with client.app.state.runtime.reads() as session:
        return queue.lines(session, job_id, 0, 10_000)


def _wait_for(what: Callable[[], Any], patience: float = PATIENCE) -> Any:
    deadline = time.monotonic() + patience
    while time.monotonic() < deadline:
        found = what()
        if found:
            return found
        time.sleep(0.2)
    raise AssertionError(f"not seen within {patience:g} s")


def _ended(client: TestClient, job_id: int) -> Job:
    return _wait_for(lambda: (j := _job(client, job_id)).finished_at is not None and j)


def _first(client: TestClient, target: str = "aaa111") -> None:
    job = _ended(client, _submit(client, target))
    assert job.status == "succeeded", job.error


def _api_blockers(client: TestClient, job_id: int) -> list[dict[str, Any]]:
    live = client.get(f"/api/v1/jobs/{job_id}").json()["live"]
    return list((live or {}).get("blockers") or [])


def test_a_held_lock_is_shown_summarised_and_named_in_the_error(
    make_app: Callable[..., TestClient],
) -> None:
    client = make_app(REVISIONS, lock_timeout="4s")
    _first(client)
    holder = Holder(client.app.state.settings.database_url, "LOCK TABLE clients IN SHARE MODE")
    queued: list[str] = []
    try:
        job_id = _submit(client, "head")
        blockers = _wait_for(lambda: _api_blockers(client, job_id))
        assert blockers[0]["pid"] == holder.pid
        assert "LOCK TABLE clients" in blockers[0]["query"]
        assert blockers[0]["application"] == "crm-api"
        live = client.get(f"/api/v1/jobs/{job_id}").json()["live"]
        assert live["waiting"]["mode"] == "AccessExclusiveLock"
        assert live["waiting"]["relation"] == "clients"
        # The job page's status block shows the same.
        page = page_soup(client.get(f"/jobs/{job_id}"))
        row = page.select_one(f"#live-blockers tr.live-blocker[data-pid='{holder.pid}']")
        assert row is not None and "LOCK TABLE clients" in row.get_text()
        assert "ACCESS EXCLUSIVE" in page.select_one("#live-waiting").get_text()

        # A reader behind the job's ALTER queues behind the job: counted.
        def read() -> None:
            reader = Holder(
                client.app.state.settings.database_url, "SET statement_timeout = '20s'", "reader"
            )
            try:
                reader.cursor.execute("SELECT count(*) FROM clients")
            except psycopg2.Error as exc:
                queued.append(str(exc))
            finally:
                reader.close()

        threading.Thread(target=read, daemon=True).start()
        job = _ended(client, job_id)
    finally:
        holder.close()
    assert job.status == "failed"
    error = job.error or ""
    for said in ("55P03", "ACCESS EXCLUSIVE on clients", f"pid {holder.pid}", "crm-api"):
        assert said in error, error
    assert "lock_timeout 4s" in error and "LOCK TABLE clients" in error
    texts = [line.text for line in _lines(client, job_id)]
    assert any(t.startswith("waited ") and "ACCESS EXCLUSIVE on clients" in t for t in texts)
    assert any("queue behind the job" in t for t in texts), texts
    # Once the job has ended there is nothing live to show.
    assert client.get(f"/api/v1/jobs/{job_id}").json()["live"] is None
    assert page_soup(client.get(f"/jobs/{job_id}")).select_one("#job-live-view") is None


def test_lock_retries_get_through_once_the_blocker_commits(
    make_app: Callable[..., TestClient],
) -> None:
    client = make_app(REVISIONS, lock_timeout="30s", lock_retry_pause=0.5)
    _first(client)
    holder = Holder(client.app.state.settings.database_url, "LOCK TABLE clients IN SHARE MODE")
    try:
        job_id = _submit(client, "head", lock_retries="20x1s")

        def retries() -> list[str]:
            return [ln.text for ln in _lines(client, job_id) if ln.text.startswith("lock retry")]

        _wait_for(lambda: len(retries()) >= 2)
        holder.commit()
        job = _ended(client, job_id)
    finally:
        holder.close()
    assert job.status == "succeeded", job.error
    said = retries()
    assert said[0].startswith("lock retry: attempt 1 of 20 (lock_timeout 1s)")
    assert any(f"blocked by pid {holder.pid}" in text for text in said), said
    steps = client.get(f"/api/v1/jobs/{job_id}").json()["steps"]
    assert [s["step"] for s in steps] == [1]
    assert steps[0]["lock_wait_seconds"] > 0
    samples = scrape(client)
    assert value(samples, "schema_admin_lock_retries_total") == len(said)
    assert value(samples, "schema_admin_lock_wait_seconds_count") >= 1
    # The first job's step and this one's.
    assert value(samples, "schema_admin_step_duration_seconds_count") == 2


def test_a_bad_lock_retry_schedule_is_refused(make_app: Callable[..., TestClient]) -> None:
    client = make_app(REVISIONS)
    answer = client.post(
        "/jobs",
        data={
            "csrf_token": csrf_token(client),
            "kind": "upgrade",
            "target": "head",
            "plan_fingerprint": "x" * 64,
            "lock_retries": "often",
        },
        headers={"Origin": "http://testserver", "HX-Request": "true"},
    )
    assert answer.status_code == 400
    message = page_soup(answer).select_one(".error-message")
    assert message is not None
    assert message.get_text().startswith("lock retries: 'often' is not a lock retry step")
    with client.app.state.runtime.reads() as session:
        assert queue.recent(session, limit=5) == []
    assert schedule.parse("5x3s") == ("3s",) * 5
    assert schedule.parse("1s, 2x500ms") == ("1s", "500ms", "500ms")
    assert schedule.parse("off") == ()
    with pytest.raises(ValueError, match="above 0"):
        schedule.parse("3x0s")


def test_create_index_concurrently_shows_its_phase_and_progress(
    make_app: Callable[..., TestClient],
) -> None:
    client = make_app(BIG)
    _first(client)
    job_id = _submit(client, "head")

    def progress() -> dict[str, Any] | None:
        live = client.get(f"/api/v1/jobs/{job_id}").json()["live"] or {}
        found = live.get("progress")
        return found if found and found.get("total") else None

    seen = _wait_for(progress)
    assert seen["command"] == "CREATE INDEX CONCURRENTLY"
    assert seen["phase"] and seen["relation"] == "big"
    assert 0 <= seen["done"] <= seen["total"]
    job = _ended(client, job_id)
    assert job.status == "succeeded", job.error
    texts = [line.text for line in _lines(client, job_id)]
    assert any(t.startswith("CREATE INDEX CONCURRENTLY on big: ") for t in texts), texts


DEADLOCK = [
    Rev(
        "aaa111",
        None,
        "two tables",
        "op.execute('CREATE TABLE left_side (id int)')\n"
        "op.execute('CREATE TABLE right_side (id int)')",
        "op.execute('DROP TABLE left_side, right_side')",
    ),
    Rev(
        "bbb222",
        "aaa111",
        "lock both",
        "op.execute('LOCK TABLE left_side IN ACCESS EXCLUSIVE MODE')\n"
        "op.execute('SELECT pg_sleep(3)')\n"
        "op.execute('LOCK TABLE right_side IN ACCESS EXCLUSIVE MODE')",
    ),
]


def test_a_deadlock_names_both_sides(make_app: Callable[..., TestClient]) -> None:
    client = make_app(DEADLOCK, lock_timeout="0")
    _first(client)
    url = client.app.state.settings.database_url
    # The other side waits longer before it checks: the job's backend finds the deadlock.
    other = Holder(url, "SET deadlock_timeout = '30s'", "crm-worker")
    try:
        other.cursor.execute("LOCK TABLE right_side IN ACCESS EXCLUSIVE MODE")
        job_id = _submit(client, "head")
        _wait_for(
            lambda: any("LOCK TABLE left_side" in line.text for line in _lines(client, job_id))
        )
        time.sleep(0.5)
        with contextlib.suppress(psycopg2.Error):
            other.cursor.execute("LOCK TABLE left_side IN ACCESS EXCLUSIVE MODE")
        job = _ended(client, job_id)
    finally:
        other.close()
    assert job.status == "failed"
    error = job.error or ""
    assert "[SQLSTATE 40P01] deadlock detected" in error, error
    assert "ACCESS EXCLUSIVE on relation right_side" in error, error
    assert "ACCESS EXCLUSIVE on relation left_side" in error, error
    assert f"blocked by process {other.pid}" in error, error
    assert "this job's statement: LOCK TABLE right_side" in error, error


def test_a_statement_timeout_names_the_statement_and_the_timeout(
    make_app: Callable[..., TestClient],
) -> None:
    slow = [Rev("aaa111", None, "slow", "op.execute('SELECT pg_sleep(5)')")]
    client = make_app(slow, statement_timeout="1s")
    job = _ended(client, _submit(client, "head"))
    assert job.status == "failed"
    assert job.error == (
        "[SQLSTATE 57014] statement timeout (statement_timeout 1s): the statement ran too "
        "long: SELECT pg_sleep(5)"
    ), job.error


def test_a_lock_timeout_in_an_autocommit_block_is_not_retried(
    make_app: Callable[..., TestClient],
) -> None:
    revisions = [
        REVISIONS[0],
        Rev(
            "bbb222",
            "aaa111",
            "outside a transaction",
            "with op.get_context().autocommit_block():\n"
            "        op.execute('CREATE TABLE side (id int)')\n"
            "        op.execute('ALTER TABLE clients ADD COLUMN note text')",
        ),
    ]
    client = make_app(revisions, lock_retry_pause=0.2)
    _first(client)
    holder = Holder(client.app.state.settings.database_url, "LOCK TABLE clients IN SHARE MODE")
    try:
        job = _ended(client, _submit(client, "head", lock_retries="3x1s"))
    finally:
        holder.close()
    assert job.status == "failed"
    assert "ACCESS EXCLUSIVE on clients" in (job.error or ""), job.error
    texts = [line.text for line in _lines(client, job.id)]
    assert not any(text.startswith("lock retry") for text in texts), texts
    assert any("autocommit block" in t and "not retried" in t for t in texts), texts
