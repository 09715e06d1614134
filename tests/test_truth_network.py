"""Target connections under network faults: a TCP proxy between the panel and PostgreSQL
that can black-hole (stop forwarding, close nothing), and the TCP options every target
connection carries (keepalives, user timeout, connect timeout from the settings).

A userland proxy keeps acknowledging what it no longer forwards, so TCP keepalives cannot
see this black hole (they would on a cut link): the bound here is the reads' own watchdog.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from helpers import LiveServer
from projects import Rev, write_project
from sqlalchemy import text
from tcp_proxy import TcpProxy
from truth_support import at_first_revision, in_thread

from admin import migrations

pytestmark = [pytest.mark.postgres]

PROJECT = [Rev("aaa111", None, "create a", "op.create_table('a', sa.Column('id', sa.Integer))")]


@pytest.fixture(scope="module")
def target(pg_databases: Any) -> str:
    url: str = pg_databases.create("net")
    at_first_revision(url)
    return url


@pytest.fixture(scope="module")
def project_ini(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_project(tmp_path_factory.mktemp("net") / "project", PROJECT)


@pytest.fixture
def options() -> Iterator[migrations.ConnectOptions]:
    chosen = migrations.ConnectOptions(
        connect_timeout=2,
        keepalives_idle=7,
        keepalives_interval=3,
        keepalives_count=4,
        tcp_user_timeout=11,
        read_timeout=1.0,
    )
    migrations.configure(chosen)
    yield chosen
    migrations.configure(migrations.ConnectOptions())


def _tcp_options(dbapi_connection: Any) -> dict[str, int]:
    duplicate = socket.socket(fileno=os.dup(dbapi_connection.fileno()))
    try:
        return {
            "keepalive": duplicate.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE),
            "idle": duplicate.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE),
            "interval": duplicate.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL),
            "count": duplicate.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT),
            "user_timeout_ms": duplicate.getsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT),
        }
    finally:
        duplicate.close()


def test_every_target_connection_carries_the_tcp_options(
    target: str, options: migrations.ConnectOptions
) -> None:
    expected = {"keepalive": 1, "idle": 7, "interval": 3, "count": 4, "user_timeout_ms": 11_000}
    engine = migrations.new_engine(target, application_name="a worker")
    try:
        with engine.connect() as connection:
            raw = connection.connection.dbapi_connection
            assert _tcp_options(raw) == expected
            assert raw.get_dsn_parameters()["connect_timeout"] == "2"  # type: ignore[union-attr]
    finally:
        engine.dispose()
    with migrations.engine_for(target).connect() as connection:
        assert _tcp_options(connection.connection.dbapi_connection) == expected
        limits = connection.execute(
            text("SELECT current_setting('lock_timeout'), current_setting('statement_timeout')")
        ).one()
        assert tuple(limits) == ("1s", "1s")


def test_a_black_holed_target_is_one_line_not_a_hang(
    target: str, project_ini: Path, tcp_proxy: TcpProxy, options: migrations.ConnectOptions
) -> None:
    project = migrations.open_project(project_ini)
    url = tcp_proxy.url(target)
    assert migrations.read_status(project, url).current == ("aaa111",)  # a pooled connection
    tcp_proxy.black_hole()
    # The pooled connection's read gets no answer: cut off by the watchdog.
    pooled = in_thread(migrations.read_status, project, url)
    assert pooled.state is migrations.State.UNREACHABLE and not pooled.blocked
    assert "did not answer within 2s" in pooled.message
    assert "\n" not in pooled.message
    # A new connection: TARGET_CONNECT_TIMEOUT (the server never answers the start-up).
    fresh = in_thread(migrations.read_status, project, url)
    assert fresh.state is migrations.State.UNREACHABLE
    assert "cannot reach the target" in fresh.message and "timeout expired" in fresh.message
    assert "\n" not in fresh.message
    tcp_proxy.heal()
    assert migrations.read_status(project, url).current == ("aaa111",)


def test_the_panel_answers_when_its_target_is_black_holed(
    target: str, project_ini: Path, tcp_proxy: TcpProxy, tmp_path: Path
) -> None:
    server = LiveServer(
        tmp_path / "server",
        env_overrides={
            "DATABASE_URL": tcp_proxy.url(target),
            "ALEMBIC_CONFIG": str(project_ini),
            "TARGET_READ_TIMEOUT": "1",
            "TARGET_CONNECT_TIMEOUT": "2",
        },
    ).start()
    try:
        with httpx.Client(base_url=server.url, timeout=60) as client:
            assert client.get("/readyz").json()["target"] == "up-to-date"
            tcp_proxy.black_hole()
            ready = client.get("/readyz")
            assert ready.status_code == 503
            reason = ready.json()["reason"]
            assert "did not answer within 2s" in reason and "\n" not in reason
            scrape = client.get("/metrics")
            assert scrape.status_code == 200 and "schema_admin_target_up 0.0" in scrape.text
    finally:
        server.stop()
