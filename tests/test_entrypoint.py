"""schema-admin entrypoint as the container runs it: real processes, real PostgreSQL.

Each test starts ``python -m admin entrypoint`` with settings in its environment, as the
image does, and looks at what it left: the databases, the store's jobs and audit trail,
the server it exec'd into, its exit code and its messages.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from helpers import free_port
from projects import REPO_ROOT, Rev, write_revision
from sqlalchemy import create_engine, select, text

from admin import audit, entrypoint, migrations
from admin.config import Settings
from admin.jobs import JobRequest, Runner
from admin.runtime import Runtime
from admin.store.models import AuditEvent, Job, JobKind, Source
from tests.conftest import TEST_SECRET_KEY

SETTING_NAMES = {name.upper() for name in Settings.model_fields}
CRM_INI = REPO_ROOT / "alembic.ini"

GOOD = Rev(
    "aaa111",
    None,
    "create a",
    "op.create_table('a', sa.Column('id', sa.Integer, primary_key=True))",
    "op.drop_table('a')",
)
BROKEN = Rev(
    "bbb222",
    "aaa111",
    "broken",
    "op.create_table('b', sa.Column('id', sa.Integer, primary_key=True))\n"
    "op.execute('SELECT * FROM no_such_table')",
    "op.drop_table('b')",
)
FIXED = Rev(
    "bbb222",
    "aaa111",
    "fixed",
    "op.create_table('b', sa.Column('id', sa.Integer, primary_key=True))",
    "op.drop_table('b')",
)
# Runs until the test lets go of advisory lock 4242 on the target.
GATE_KEY = 4242
GATED = Rev(
    "bbb222",
    "aaa111",
    "gated step",
    "op.create_table('b', sa.Column('id', sa.Integer, primary_key=True))\n"
    f"op.execute('SELECT pg_advisory_xact_lock({GATE_KEY})')",
    "op.drop_table('b')",
)


def entrypoint_env(root: Path, **settings: str) -> dict[str, str]:
    """A container's environment: only what is set here (nothing from the developer's)."""
    env = {k: v for k, v in os.environ.items() if k.upper() not in SETTING_NAMES}
    env.update(
        {
            "ADMIN_DATABASE_URL": f"sqlite:///{root / 'store.sqlite3'}",
            "VAR_DIR": str(root / "var"),
            "BACKUP_DIR": str(root / "backups"),
            "SECRET_KEY": TEST_SECRET_KEY,
            "ENVIRONMENT": "staging",
            "ALEMBIC_CONFIG": str(CRM_INI),
            "HOST": "127.0.0.1",
            "PORT": str(free_port()),
            "JOB_HEARTBEAT": "0.2",
            "LOG_LEVEL": "INFO",
        }
    )
    env.update(settings)
    return env


@dataclass
class Container:
    """One ``python -m admin entrypoint`` process, as a container would run it."""

    root: Path
    env: dict[str, str]
    args: tuple[str, ...] = ()
    process: subprocess.Popen[bytes] | None = None
    log_path: Path = field(init=False)

    def __post_init__(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.log_path = self.root / f"entrypoint-{self.env['PORT']}.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.env['PORT']}"

    def start(self) -> Container:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "admin", "entrypoint", *self.args],
                cwd=self.root,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_ready(self, timeout: float = 90.0) -> dict[str, Any]:
        assert self.process is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"the entrypoint exited: {self.log()[-3000:]}")
            try:
                with urllib.request.urlopen(self.url + "/readyz", timeout=5) as answer:
                    body: dict[str, Any] = json.loads(answer.read())
                    return body
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(0.2)
        raise AssertionError(f"/readyz never answered 200: {self.log()[-3000:]}")

    def wait_exit(self, timeout: float = 90.0) -> int:
        assert self.process is not None
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"the entrypoint did not exit: {self.log()[-3000:]}") from None

    def stop(self) -> int | None:
        """SIGTERM, as `docker stop` sends it; the exit code."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


@pytest.fixture
def containers(tmp_path: Path) -> Iterator[Callable[..., Container]]:
    made: list[Container] = []

    def make(env: dict[str, str], *args: str, name: str = "c") -> Container:
        container = Container(tmp_path / name, env, args)
        made.append(container)
        return container

    yield make
    for container in made:
        container.stop()


def store_runtime(url: str) -> Runtime:
    return Runtime.open(
        Settings(_env_file=None, admin_database_url=url, secret_key=TEST_SECRET_KEY)  # type: ignore[call-arg]
    )


def jobs_and_events(store_url: str) -> tuple[list[Job], list[AuditEvent]]:
    rt = store_runtime(store_url)
    try:
        with rt.reads() as session:
            jobs = list(session.scalars(select(Job).order_by(Job.id)))
            events = list(session.scalars(select(AuditEvent).order_by(AuditEvent.id)))
            session.expunge_all()
        return jobs, events
    finally:
        rt.close()


def version_of(url: str) -> set[str]:
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            return set(
                connection.execute(text("SELECT version_num FROM alembic_version")).scalars()
            )
    finally:
        engine.dispose()


def crm_heads() -> set[str]:
    return set(migrations.open_project(CRM_INI).graph(0).heads)


pytestmark = pytest.mark.slow
# How a server stopped by SIGTERM exits: 0, or killed by the signal uvicorn re-raises.
STOPPED = (0, -signal.SIGTERM)


@pytest.mark.postgres
def test_three_containers_on_a_fresh_server_one_migrates_as_a_job_all_serve(
    pg_databases: Any, containers: Callable[..., Container], tmp_path: Path
) -> None:
    """INIT_DB creates both databases; one job migrates the target; every container serves."""
    target = pg_databases.url_for_missing("ep_target")
    store = pg_databases.url_for_missing("ep_store")
    started = [
        containers(
            entrypoint_env(
                tmp_path / f"c{i}",
                DATABASE_URL=target,
                ADMIN_DATABASE_URL=store,
                INIT_DB="true",
                LOG_FORMAT="json",
            ),
            name=f"c{i}",
        ).start()
        for i in range(3)
    ]
    for container in started:
        assert container.wait_ready() == {
            "status": "ready",
            "store": "ok",
            "target": "up-to-date",
            "pending": 0,
            "degraded": None,
        }
    assert version_of(target) == crm_heads()

    jobs, events = jobs_and_events(store)
    assert len(jobs) == 1
    job = jobs[0]
    assert (job.kind, job.status, job.source, job.target_revision) == (
        "upgrade",
        "succeeded",
        "entrypoint",
        "heads",
    )
    assert set((job.revision_after or "").split(",")) == crm_heads()
    job_events = [e for e in events if e.job_id == job.id and e.action.startswith("job-")]
    assert [e.action for e in job_events] == ["job-queued", "job-started", "job-finished"]
    assert {e.source for e in job_events} == {"entrypoint"}
    starts = [e for e in events if e.action == "entrypoint-started"]
    assert len(starts) == 3
    assert sorted(str(e.details["job_id"]) for e in starts) == [str(job.id), "None", "None"]
    assert not any(e.details["degraded"] for e in starts)
    created = sorted(name for e in starts for name in e.details["created_databases"])
    assert created == [f"store {store.rsplit('/', 1)[1]}", f"target {target.rsplit('/', 1)[1]}"]
    assert [e.action for e in events].count("user-created") == 1  # one first admin
    rt = store_runtime(store)
    with rt.reads() as session:
        assert audit.verify(session).ok
    rt.close()

    # LOG_FORMAT=json: one JSON object per line; the job's lines carry its id.
    logs = [
        [json.loads(line) for line in c.log().splitlines() if line.startswith("{")] for c in started
    ]
    (migrator,) = [records for records in logs if any(r.get("job_id") == job.id for r in records)]
    assert any("job succeeded" in r["message"] for r in migrator if r.get("job_id") == job.id)
    assert all(any(r["logger"].startswith("uvicorn") for r in records) for records in logs)

    # `exec`: the process started as the entrypoint is the server (same pid), and SIGTERM
    # stops it gracefully (uvicorn re-raises the signal once it has shut down).
    for container in started:
        assert container.stop() in STOPPED
        assert container.process is not None
        assert f"Finished server process [{container.process.pid}]" in container.log()


def test_an_unreachable_database_gives_up_after_wait_timeout(
    containers: Callable[..., Container], tmp_path: Path
) -> None:
    env = entrypoint_env(
        tmp_path / "c",
        DATABASE_URL="postgresql://asia:s3cret-pw@127.0.0.1:1/asia_crm_staging",
        WAIT_TIMEOUT="1.5",
    )
    container = containers(env).start()
    began = time.monotonic()
    code = container.wait_exit(timeout=30)
    elapsed = time.monotonic() - began
    output = container.log()
    assert code == 1
    assert elapsed >= 1.5
    (message,) = [line for line in output.splitlines() if line.startswith("schema-admin:")]
    assert "127.0.0.1:1" in message
    assert "1.5s (WAIT_TIMEOUT)" in message
    assert "target" in message
    assert "s3cret-pw" not in output


def test_sigterm_while_waiting_stops_the_start(
    containers: Callable[..., Container], tmp_path: Path
) -> None:
    env = entrypoint_env(
        tmp_path / "c",
        DATABASE_URL="postgresql://asia:asia@127.0.0.1:1/asia_crm_staging",
        WAIT_TIMEOUT="60",
    )
    container = containers(env).start()
    deadline = time.monotonic() + 30
    while "waiting for the target" not in container.log():
        assert time.monotonic() < deadline, container.log()
        time.sleep(0.1)
    assert container.process is not None
    container.process.send_signal(signal.SIGTERM)
    assert container.wait_exit(timeout=15) == 143
    assert "stopped by SIGTERM" in container.log()


@pytest.mark.postgres
def test_a_failed_migration_stops_the_start_with_the_jobs_error(
    pg_databases: Any,
    containers: Callable[..., Container],
    alembic_project: Callable[..., Path],
    tmp_path: Path,
) -> None:
    ini = alembic_project([GOOD, BROKEN])
    target = pg_databases.create("ep_fail")
    env = entrypoint_env(tmp_path / "c", DATABASE_URL=target, ALEMBIC_CONFIG=str(ini))
    container = containers(env).start()
    assert container.wait_exit() == 1
    (message,) = [line for line in container.log().splitlines() if line.startswith("schema-admin:")]
    assert "the start-up migration (job 1) failed" in message
    assert "no_such_table" in message
    assert version_of(target) == {"aaa111"}  # the last good revision

    jobs, events = jobs_and_events(env["ADMIN_DATABASE_URL"])
    assert [(j.status, j.source) for j in jobs] == [("failed", "entrypoint")]
    (failed,) = [e for e in events if e.action == "entrypoint-failed"]
    assert failed.details["job_id"] == 1
    assert failed.outcome == "failure"
    assert "no_such_table" in failed.details["reason"]
    assert not [e for e in events if e.action == "entrypoint-started"]
    assert not (tmp_path / "c" / "var" / "degraded.json").exists()


@pytest.mark.postgres
def test_start_on_migration_failure_serves_degraded_until_a_good_start(
    pg_databases: Any,
    containers: Callable[..., Container],
    alembic_project: Callable[..., Path],
    tmp_path: Path,
) -> None:
    ini = alembic_project([GOOD, BROKEN])
    target = pg_databases.create("ep_degraded")
    env = entrypoint_env(
        tmp_path / "c",
        DATABASE_URL=target,
        ALEMBIC_CONFIG=str(ini),
        START_ON_MIGRATION_FAILURE="true",
    )
    container = containers(env, name="c").start()
    ready = container.wait_ready()
    assert ready["target"] == "behind"
    assert ready["degraded"]["job_id"] == 1
    assert "no_such_table" in ready["degraded"]["error"]
    with urllib.request.urlopen(container.url + "/metrics", timeout=10) as answer:
        assert "schema_admin_degraded 1.0" in answer.read().decode()
    _, events = jobs_and_events(env["ADMIN_DATABASE_URL"])
    (started,) = [e for e in events if e.action == "entrypoint-started"]
    assert started.outcome == "failure" and started.details["degraded"] is True
    assert container.stop() in STOPPED

    # The revision is fixed and deployed: the next start migrates and is no longer degraded.
    broken = next((ini.parent / "migrations" / "versions").glob("bbb222_*.py"))
    broken.unlink()
    write_revision(ini.parent / "migrations" / "versions", FIXED)
    same = Settings(_env_file=None, **{k.lower(): v for k, v in env.items() if k in SETTING_NAMES})
    assert entrypoint.read_degraded(same) is not None
    start = entrypoint.prepare(same, serving=False)
    migrations.dispose_engines()
    assert start.job is not None and start.job.status == "succeeded"
    assert version_of(target) == {"bbb222"}
    assert entrypoint.read_degraded(same) is None


@pytest.mark.postgres
def test_a_job_running_elsewhere_is_waited_for_not_repeated(
    pg_databases: Any,
    containers: Callable[..., Container],
    alembic_project: Callable[..., Path],
    tmp_path: Path,
) -> None:
    ini = alembic_project([GOOD, GATED])
    target = pg_databases.create("ep_wait")
    env = entrypoint_env(tmp_path / "c", DATABASE_URL=target, ALEMBIC_CONFIG=str(ini))
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None,
        database_url=target,
        admin_database_url=env["ADMIN_DATABASE_URL"],
        alembic_config=ini,
        var_dir=tmp_path / "panel-var",
        job_heartbeat=0.2,
        lock_timeout="0",
    )
    rt = Runtime.open(settings)
    rt.upgrade_store(audit.Actor("test", None, Source.CLI))
    runner = Runner(rt)
    gate = create_engine(target).connect()
    gate.execute(text("SELECT pg_advisory_lock(:k)"), {"k": GATE_KEY})
    try:
        # A panel replica is applying a migration (held at its gated step) ...
        panel_job = runner.submit(
            JobRequest(JobKind.UPGRADE, "head"), audit.Actor("alice", "operator", Source.WEB)
        )
        # ... when a container starts: it waits for that job instead of starting its own.
        container = containers(env, "--no-serve").start()
        deadline = time.monotonic() + 60
        while "waiting: job" not in container.log():
            assert container.process is not None and container.process.poll() is None, (
                container.log()
            )
            assert time.monotonic() < deadline, container.log()
            time.sleep(0.1)
        gate.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": GATE_KEY})
        assert container.wait_exit() == 0, container.log()
        assert runner.wait(panel_job.id, timeout=30)
    finally:
        gate.close()
        gate.engine.dispose()
        runner.stop()
        rt.close()
        migrations.dispose_engines()
    assert f"job {panel_job.id} (upgrade to head, started by alice via web)" in container.log()
    jobs, events = jobs_and_events(env["ADMIN_DATABASE_URL"])
    assert [(j.id, j.status, j.source) for j in jobs] == [(panel_job.id, "succeeded", "web")]
    (started,) = [e for e in events if e.action == "entrypoint-started"]
    assert started.details["job_id"] is None and started.details["state"] == "up-to-date"
    assert version_of(target) == {"bbb222"}


@pytest.mark.postgres
def test_a_migration_lock_held_outside_the_panel_is_waited_for(
    pg_databases: Any,
    containers: Callable[..., Container],
    alembic_project: Callable[..., Path],
    tmp_path: Path,
) -> None:
    ini = alembic_project([GOOD, FIXED])
    target = pg_databases.create("ep_lock")
    code = (
        "import sys, time; from admin.migrations import migration_lock\n"
        "with migration_lock(sys.argv[1], wait=0, owner='alembic upgrade by bob'):\n"
        "    print('held', flush=True); sys.stdin.readline()\n"
    )
    holder = subprocess.Popen(
        [sys.executable, "-c", code, target], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    assert holder.stdin is not None and holder.stdout is not None
    try:
        assert holder.stdout.readline().strip() == b"held"
        env = entrypoint_env(
            tmp_path / "c", DATABASE_URL=target, ALEMBIC_CONFIG=str(ini), MIGRATION_LOCK_WAIT="0.5"
        )
        container = containers(env, "--no-serve").start()
        deadline = time.monotonic() + 60
        while "waiting: another migration is running" not in container.log():
            assert time.monotonic() < deadline, container.log()
            time.sleep(0.1)
        holder.stdin.write(b"go\n")
        holder.stdin.flush()
        assert container.wait_exit() == 0, container.log()
    finally:
        holder.kill()
        holder.wait()
        holder.stdin.close()
        holder.stdout.close()
    jobs, _ = jobs_and_events(env["ADMIN_DATABASE_URL"])
    assert [(j.status, j.exit_code) for j in jobs] == [("failed", 3), ("succeeded", 0)]
    assert "alembic upgrade by bob" in (jobs[0].error or "")
    assert version_of(target) == {"bbb222"}


def test_migrate_on_start_false_leaves_pending_revisions(
    make_settings: Callable[..., Settings], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = make_settings(init_db=True, migrate_on_start=False)
    with caplog.at_level(logging.INFO, logger="admin.entrypoint"):
        start = entrypoint.prepare(settings, serving=False)
    migrations.dispose_engines()
    assert start.state == "empty" and start.job is None
    assert "MIGRATE_ON_START=false" in caplog.text
    assert (tmp_path / "target.sqlite3").exists()  # INIT_DB created it
    jobs, events = jobs_and_events(settings.admin_database_url)
    assert jobs == []
    (started,) = [e for e in events if e.action == "entrypoint-started"]
    assert started.details["state"] == "empty"


def test_a_missing_target_without_init_db_says_what_to_do(
    make_settings: Callable[..., Settings],
) -> None:
    settings = make_settings()
    with pytest.raises(migrations.TargetMissing, match="does not exist.*INIT_DB=true"):
        entrypoint.prepare(settings, serving=False)
    migrations.dispose_engines()
    _, events = jobs_and_events(settings.admin_database_url)
    (failed,) = [e for e in events if e.action == "entrypoint-failed"]
    assert "INIT_DB=true" in failed.details["reason"]
