"""The store down: pages and the API answer 503 naming the store; ``schema-admin serve``
waits for it like the entrypoint and otherwise stops with one line, also when the store's
database does not exist.

Real uvicorn (``python -m admin serve``), a PostgreSQL store reached through a TCP proxy
that is taken down (every connection dropped, the port refusing) and brought back.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from helpers import PASSWORD, TEST_SECRET_KEY, LiveServer, free_port, login, page_soup
from projects import REPO_ROOT
from sqlalchemy.engine import make_url
from tcp_proxy import TcpProxy

pytestmark = [pytest.mark.postgres]


def _serve(root: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """``schema-admin serve`` that is expected to stop by itself."""
    environment = {
        "PATH": "/usr/bin:/bin",
        "DATABASE_URL": f"sqlite:///{root / 'target.sqlite3'}",
        "VAR_DIR": str(root / "var"),
        "SECRET_KEY": TEST_SECRET_KEY,
        "ALEMBIC_CONFIG": str(REPO_ROOT / "alembic.ini"),
        **env,
    }
    return subprocess.run(
        [sys.executable, "-m", "admin", "serve", "--port", str(free_port())],
        cwd=root,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_pages_and_api_answer_503_naming_the_store(
    pg_databases: Any, tcp_proxy: TcpProxy, tmp_path: Path
) -> None:
    store = tcp_proxy.url(pg_databases.create("store"))
    shown = make_url(store).render_as_string(hide_password=True)
    server = LiveServer(tmp_path / "server", env_overrides={"ADMIN_DATABASE_URL": store}).start()
    try:
        server.add_user("store-viewer", "viewer")
        with httpx.Client(base_url=server.url, timeout=30) as browser:
            assert login(browser, "store-viewer", PASSWORD).status_code == 303
            assert browser.get("/api/v1/me").status_code == 200
            tcp_proxy.down()
            api = browser.get("/api/v1/me")
            assert api.status_code == 503, api.text
            assert api.json()["title"] == "Store unavailable"
            assert api.json()["detail"].startswith(f"the store {shown} does not answer: ")
            page = browser.get("/jobs")
            assert page.status_code == 503
            message = page_soup(page).select_one("main")
            assert message is not None and f"the store {shown} does not answer" in message.text
            signing_in = httpx.post(
                server.url + "/login", data={"username": "x", "password": "y"}, timeout=30
            )
            assert signing_in.status_code == 503
            tcp_proxy.up()
            assert browser.get("/api/v1/me").status_code == 200
    finally:
        server.stop()


def test_serve_waits_for_the_store_to_come_up(
    pg_databases: Any, tcp_proxy: TcpProxy, tmp_path: Path
) -> None:
    store = tcp_proxy.url(pg_databases.create("late"))
    tcp_proxy.down()
    server = LiveServer(
        tmp_path / "server",
        env_overrides={"ADMIN_DATABASE_URL": store, "WAIT_TIMEOUT": "30", "LOG_LEVEL": "INFO"},
    )
    waited = threading.Event()

    def up_once_waited_for() -> None:
        """The store's server comes up once the panel says it waits for it."""
        for _ in range(400):
            if server.log_path.exists() and "waiting for the store" in server.log_path.read_text():
                waited.set()
                break
            time.sleep(0.05)
        tcp_proxy.up()

    threading.Thread(target=up_once_waited_for, daemon=True).start()
    server.start(timeout=40)
    try:
        assert waited.is_set()
        assert httpx.get(server.url + "/readyz", timeout=30).json()["store"] == "ok"
    finally:
        server.stop()


def test_serve_gives_up_after_wait_timeout_with_one_line(tmp_path: Path) -> None:
    port = free_port()  # nothing listens there
    done = _serve(
        tmp_path,
        ADMIN_DATABASE_URL=f"postgresql://admin:secret@127.0.0.1:{port}/panel",
        WAIT_TIMEOUT="1",
    )
    assert done.returncode == 1
    assert "Traceback" not in done.stderr and "secret" not in done.stderr + done.stdout
    # Progress notes are log lines; the end is one line that says what happened.
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith(
        f"schema-admin: gave up waiting for the store database at 127.0.0.1:{port} after 1s "
        "(WAIT_TIMEOUT): OperationalError: "
    )
    assert last.endswith("Connection refused")


def test_a_missing_store_database_is_one_line_saying_how_to_create_it(
    pg_server_url: str, tmp_path: Path
) -> None:
    name = f"apex_nostore_{uuid.uuid4().hex[:8]}"
    store = make_url(pg_server_url).set(database=name).render_as_string(hide_password=False)
    done = _serve(tmp_path, ADMIN_DATABASE_URL=store, WAIT_TIMEOUT="5")
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith(f"schema-admin: the store database '{name}' does not exist on ")
    assert f"createdb -h 127.0.0.1 -p 5432 -U postgres {name}" in lines[0]
    # Any other command that opens the store says the same.
    listing = subprocess.run(
        [sys.executable, "-m", "admin", "user", "list"],
        cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin", "ADMIN_DATABASE_URL": store, "VAR_DIR": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert listing.returncode == 1 and "Traceback" not in listing.stderr
    assert listing.stderr.strip().splitlines() == lines
