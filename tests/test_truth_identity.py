"""A target is what its server says it is: two spellings of one database share one
active-job slot and one migration lock.

Real PostgreSQL (reached as ``127.0.0.1``, ``localhost`` and through a TCP proxy on another
port, and by a role that is not a superuser), real SQLite files (a symlink, a relative path).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from tcp_proxy import TcpProxy

from admin import audit, migrations
from admin.config import Settings
from admin.errors import Conflict, Unavailable
from admin.jobs import JobRequest, queue
from admin.runtime import Runtime
from admin.store.models import JobKind, Source

ALICE = audit.Actor("alice", "operator", Source.CLI)


def _spelled(url: str, **parts: Any) -> str:
    return make_url(url).set(**parts).render_as_string(hide_password=False)


def _execute(url: str, *statements: str) -> None:
    engine = create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as connection:
            for statement in statements:
                connection.execute(text(statement))
    finally:
        engine.dispose()


@pytest.fixture
def runtimes(make_settings: Callable[..., Settings]) -> Iterator[Callable[[str], Runtime]]:
    """Runtimes that share one store, each with its own spelling of the target."""
    opened: list[Runtime] = []

    def make(url: str) -> Runtime:
        rt = Runtime.open(make_settings(database_url=url))
        rt.upgrade_store(ALICE)
        opened.append(rt)
        return rt

    yield make
    for rt in opened:
        rt.close()
    migrations.dispose_engines()


@pytest.mark.postgres
def test_a_role_without_superuser_reads_the_identity(pg_url: str, pg_server_url: str) -> None:
    role = f"apex_truth_{uuid.uuid4().hex[:8]}"
    database = make_url(pg_url).database
    _execute(pg_server_url, f'CREATE ROLE "{role}" LOGIN NOSUPERUSER')
    try:
        _execute(pg_server_url, f'GRANT CONNECT ON DATABASE "{database}" TO "{role}"')
        as_role = _spelled(pg_url, username=role, host="localhost")
        engine = create_engine(pg_server_url)
        try:
            with engine.connect() as connection:
                system = connection.execute(
                    text("SELECT system_identifier FROM pg_control_system()")
                ).scalar_one()
                assert (
                    connection.execute(
                        text("SELECT rolsuper FROM pg_roles WHERE rolname = :r"), {"r": role}
                    ).scalar_one()
                    is False
                )
        finally:
            engine.dispose()
        identity = migrations.target_identity(as_role)
        assert identity == f"postgresql:{system}/{database}"
        assert migrations.target_identity(pg_url) == identity
    finally:
        _execute(
            pg_server_url,
            f'REVOKE CONNECT ON DATABASE "{database}" FROM "{role}"',
            f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '{role}'",
            f'DROP ROLE "{role}"',
        )


@pytest.mark.postgres
def test_two_spellings_of_one_database_share_one_active_job_slot(
    pg_url: str, tcp_proxy: TcpProxy, runtimes: Callable[[str], Runtime]
) -> None:
    direct = _spelled(pg_url, host="127.0.0.1")
    spellings = [_spelled(pg_url, host="localhost"), tcp_proxy.url(pg_url)]
    first = runtimes(direct)
    job = queue.submit(first, JobRequest(JobKind.BACKUP, options={"reason": "manual"}), ALICE)
    for url in spellings:
        with pytest.raises(Conflict) as refused:
            queue.submit(runtimes(url), JobRequest(JobKind.BACKUP), ALICE)
        assert f"job {job.id}" in str(refused.value)
    # A different database on the same server has a slot of its own.
    other = pg_url + "_other"
    _execute(_spelled(pg_url, database="postgres"), f'CREATE DATABASE "{make_url(other).database}"')
    try:
        assert queue.submit(runtimes(other), JobRequest(JobKind.BACKUP), ALICE).id != job.id
    finally:
        migrations.dispose_engines()
        _execute(
            _spelled(pg_url, database="postgres"),
            f'DROP DATABASE "{make_url(other).database}" WITH (FORCE)',
        )


@pytest.mark.postgres
def test_a_missing_database_is_identified_on_its_server(pg_url: str) -> None:
    missing = _spelled(pg_url, database=f"apex_never_{uuid.uuid4().hex[:8]}")
    identity = migrations.target_identity(missing)
    server = migrations.target_identity(pg_url).split("/")[0]
    assert identity == f"{server}/{make_url(missing).database}"


def test_an_unreachable_server_is_one_line(tmp_path: Path) -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again: nothing listens there
    url = f"postgresql+psycopg2://someone:secret@127.0.0.1:{port}/crm"
    with pytest.raises(Unavailable) as failed:
        migrations.target_identity(url)
    message = str(failed.value)
    assert message.startswith("cannot tell which database the target ")
    assert "secret" not in message and "\n" not in message and "refused" in message


def test_sqlite_spellings_share_one_slot_and_one_lock(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, runtimes: Callable[[str], Runtime]
) -> None:
    real = tmp_path / "data" / "crm.sqlite3"
    real.parent.mkdir()
    migrations.create_database(f"sqlite:///{real}")
    link = tmp_path / "crm-link.sqlite3"
    link.symlink_to(real)
    monkeypatch.chdir(tmp_path)
    spellings = [f"sqlite:///{link}", "sqlite:///data/../data/crm.sqlite3"]
    identity = migrations.target_identity(f"sqlite:///{real}")
    assert identity == f"sqlite:{os.path.realpath(real)}"
    assert {migrations.target_identity(url) for url in spellings} == {identity}

    with migrations.migration_lock(f"sqlite:///{real}", wait=0, owner="first run"):
        for url in spellings:
            with (
                pytest.raises(migrations.LockHeld) as held,
                migrations.migration_lock(url, wait=0, owner="second run"),
            ):
                pass
            assert "first run" in str(held.value)

    job = queue.submit(runtimes(f"sqlite:///{real}"), JobRequest(JobKind.BACKUP), ALICE)
    with pytest.raises(Conflict) as refused:
        queue.submit(runtimes(spellings[0]), JobRequest(JobKind.BACKUP), ALICE)
    assert f"job {job.id}" in str(refused.value)
