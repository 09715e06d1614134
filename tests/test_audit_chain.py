"""The audit core: a hash chain that verifies, names a tampered row, and never forks."""

from __future__ import annotations

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from admin import audit
from admin.runtime import Runtime
from admin.store.models import Source


@pytest.fixture(params=["sqlite", "postgresql"])
def runtime(request: pytest.FixtureRequest, make_settings) -> Runtime:  # type: ignore[no-untyped-def]
    if request.param == "sqlite":
        settings = make_settings()
    else:
        url = request.getfixturevalue("pg_databases").create("audit")
        settings = make_settings(admin_database_url=url)
    rt = Runtime.open(settings)
    rt.upgrade_store(audit.Actor("test", None, Source.CLI))
    yield rt
    rt.close()


ALICE = audit.Actor("alice", "admin", Source.WEB, "10.0.0.1")


def _append(rt: Runtime, n: int) -> None:
    for i in range(n):
        with rt.transaction() as session:
            audit.record(session, audit.UserCreated(username=f"u{i}", role="viewer"), ALICE)


def test_chain_verifies_and_records_context(runtime: Runtime) -> None:
    _append(runtime, 5)
    with runtime.sessions() as session:
        report = audit.verify(session)
        assert report.ok
        assert report.count == 6  # the store upgrade is audited too
        rows = session.execute(text("SELECT actor, source, client_addr, action FROM audit_events"))
        assert ("alice", "web", "10.0.0.1", "user-created") in [tuple(r) for r in rows]


def test_event_rolled_back_with_its_change(runtime: Runtime) -> None:
    with pytest.raises(RuntimeError), runtime.transaction() as session:
        audit.record(session, audit.Logout(username="bob"), ALICE)
        raise RuntimeError("the change failed")
    with runtime.sessions() as session:
        assert audit.verify(session).count == 1


def test_event_types_are_a_closed_set() -> None:
    assert audit.EVENT_TYPES["login-failed"] is audit.LoginFailed
    with pytest.raises(TypeError):

        class Again(audit.Event):  # noqa: F841
            action = "login-failed"


def _cli_verify(rt: Runtime) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "ADMIN_DATABASE_URL": rt.settings.admin_database_url,
        "VAR_DIR": str(rt.settings.var_dir),
    }
    return subprocess.run(
        [sys.executable, "-m", "admin", "audit", "verify"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_tampered_sqlite_row_is_named_by_audit_verify(make_settings) -> None:  # type: ignore[no-untyped-def]
    rt = Runtime.open(make_settings())
    try:
        rt.upgrade_store(audit.Actor("test", None, Source.CLI))
        _append(rt, 4)
        ok = _cli_verify(rt)
        assert ok.returncode == 0, ok.stderr
        assert "5 events" in ok.stdout
        with rt.store_engine.begin() as connection:
            target = connection.execute(
                text("SELECT id FROM audit_events ORDER BY id LIMIT 1 OFFSET 2")
            ).scalar_one()
            connection.execute(
                text("UPDATE audit_events SET actor = 'mallory' WHERE id = :id"), {"id": target}
            )
        broken = _cli_verify(rt)
        assert broken.returncode == 1
        assert f"broken at event {target}" in broken.stdout
    finally:
        rt.close()


def test_deleted_row_breaks_the_link(make_settings) -> None:  # type: ignore[no-untyped-def]
    rt = Runtime.open(make_settings())
    try:
        rt.upgrade_store(audit.Actor("test", None, Source.CLI))
        _append(rt, 3)
        with rt.store_engine.begin() as connection:
            connection.execute(text("DELETE FROM audit_events WHERE id = 2"))
        with rt.sessions() as session:
            report = audit.verify(session)
        assert report.broken_id == 3
        assert "deleted" in (report.problem or "")
    finally:
        rt.close()


def test_postgresql_refuses_update_and_delete(make_settings, pg_databases) -> None:  # type: ignore[no-untyped-def]
    rt = Runtime.open(make_settings(admin_database_url=pg_databases.create("ro")))
    try:
        rt.upgrade_store(audit.Actor("test", None, Source.CLI))
        for statement in (
            "UPDATE audit_events SET actor = 'mallory'",
            "DELETE FROM audit_events",
            "TRUNCATE audit_events",
        ):
            with pytest.raises(DBAPIError, match="append-only"), rt.store_engine.begin() as c:
                c.execute(text(statement))
        with rt.sessions() as session:
            assert audit.verify(session).ok
    finally:
        rt.close()


APPENDER = """
import sys
from admin import audit
from admin.config import Settings
from admin.runtime import Runtime
from admin.store.models import Source
rt = Runtime.open(Settings(_env_file=None, admin_database_url=sys.argv[1], var_dir=sys.argv[2]))
actor = audit.Actor(sys.argv[3], None, Source.CLI)
for i in range(int(sys.argv[4])):
    with rt.transaction() as session:
        audit.record(session, audit.Logout(username=f"{sys.argv[3]}-{i}"), actor)
rt.close()
"""


def test_two_processes_appending_at_once_leave_one_chain(runtime: Runtime, tmp_path: Path) -> None:
    per_process = 40

    def run(name: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [
                sys.executable,
                "-c",
                APPENDER,
                runtime.settings.admin_database_url,
                str(tmp_path / "var"),
                name,
                str(per_process),
            ],
            capture_output=True,
            text=True,
            timeout=180,
        )

    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(run, ["p1", "p2"]))
    assert all(r.returncode == 0 for r in results), [r.stderr for r in results]
    with runtime.sessions() as session:
        report = audit.verify(session)
    assert report.ok, report
    assert report.count == 1 + 2 * per_process
