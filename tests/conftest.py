"""Shared fixtures: real PostgreSQL databases, SQLite files, small Alembic projects, the app."""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from helpers import TEST_SECRET_KEY
from projects import REPO_ROOT, Rev, write_project
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from admin.config import Settings, normalize_database_url

DEFAULT_TEST_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/postgres"

# Settings the tests must not inherit from the developer's shell or a .env file.
_SETTING_NAMES = {name.upper() for name in Settings.model_fields}


# Every panel, CLI and server the suite starts hashes passwords at argon2id's lowest
# allowed costs (a third of the default's work: the suite hashes thousands of passwords);
# test_auth_services holds the default costs and the rehash on a change of costs.
SUITE_SETTINGS = {"PASSWORD_HASH_MEMORY_KIB": "19456", "PASSWORD_HASH_TIME_COST": "2"}


@pytest.fixture(autouse=True, scope="session")
def _clean_environment() -> Iterator[None]:
    saved = {k: os.environ.pop(k) for k in list(os.environ) if k.upper() in _SETTING_NAMES}
    os.environ.update(SUITE_SETTINGS)
    yield
    for name in SUITE_SETTINGS:
        os.environ.pop(name, None)
    os.environ.update(saved)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Modules with more tests marked ``slow`` run first, each module's tests kept together
    and in their order: pytest-xdist (``--dist loadfile``) hands modules out in this order,
    so the long ones start at once and the short ones fill the end, instead of one long
    module running alone while the other workers are done."""
    slow: dict[str, int] = {}
    for item in items:
        module = item.nodeid.split("::", 1)[0]
        slow[module] = slow.get(module, 0) + (item.get_closest_marker("slow") is not None)
    order = {id(item): index for index, item in enumerate(items)}
    items.sort(key=lambda item: (-slow[item.nodeid.split("::", 1)[0]], order[id(item)]))


def _admin_url(url: str, database: str) -> str:
    return make_url(url).set(database=database).render_as_string(hide_password=False)


@pytest.fixture(scope="session")
def pg_server_url() -> str:
    """The PostgreSQL server tests create their databases on (TEST_DATABASE_URL)."""
    url = normalize_database_url(os.environ.get("TEST_DATABASE_URL", DEFAULT_TEST_DATABASE_URL))
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except OperationalError as exc:
        reason = f"PostgreSQL at {make_url(url).render_as_string()} is unreachable: {exc.orig}"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(reason)
        pytest.skip(reason)
    finally:
        engine.dispose()
    return url


@dataclass
class PgDatabases:
    """Creates fresh databases on the test server and drops them afterwards."""

    server_url: str
    created: list[str] = field(default_factory=list)

    def _execute(self, sql: str) -> None:
        engine = create_engine(self.server_url, isolation_level="AUTOCOMMIT")
        try:
            with engine.connect() as connection:
                connection.execute(text(sql))
        finally:
            engine.dispose()

    def create(self, prefix: str = "t") -> str:
        name = f"apex_{prefix}_{uuid.uuid4().hex[:10]}"
        self._execute(f'CREATE DATABASE "{name}"')
        self.created.append(name)
        return _admin_url(self.server_url, name)

    def url_for_missing(self, prefix: str = "missing") -> str:
        """The URL of a database that does not exist yet (dropped at the end if created)."""
        name = f"apex_{prefix}_{uuid.uuid4().hex[:10]}"
        self.created.append(name)
        return _admin_url(self.server_url, name)

    def drop_all(self) -> None:
        for name in reversed(self.created):
            self._execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        self.created.clear()


@pytest.fixture(scope="module")
def pg_databases(pg_server_url: str) -> Iterator[PgDatabases]:
    databases = PgDatabases(pg_server_url)
    yield databases
    databases.drop_all()


@pytest.fixture(scope="module")
def pg_url(pg_databases: PgDatabases) -> str:
    """A fresh PostgreSQL database for this test module."""
    return pg_databases.create("mod")


@pytest.fixture
def tcp_proxy(pg_server_url: str) -> Iterator[Any]:
    """A TCP proxy to the test PostgreSQL server that a test can black-hole or take down
    (``tests/tcp_proxy.py``); ``tcp_proxy.url(pg_url)`` reaches a database through it."""
    from tcp_proxy import TcpProxy

    parsed = make_url(pg_server_url)
    proxy = TcpProxy(parsed.host or "127.0.0.1", parsed.port or 5432).start()
    yield proxy
    proxy.close()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> Callable[[str], str]:
    def make(name: str = "db") -> str:
        return f"sqlite:///{tmp_path / (name + '.sqlite3')}"

    return make


@pytest.fixture
def make_settings(tmp_path: Path) -> Callable[..., Settings]:
    """Settings for a test: SQLite store and target under tmp_path unless overridden."""

    def make(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "database_url": f"sqlite:///{tmp_path / 'target.sqlite3'}",
            "admin_database_url": f"sqlite:///{tmp_path / 'store.sqlite3'}",
            "var_dir": tmp_path / "var",
            "backup_dir": tmp_path / "backups",
            "secret_key": TEST_SECRET_KEY,
            "alembic_config": REPO_ROOT / "alembic.ini",
        }
        values.update(overrides)
        return Settings(_env_file=None, **values)  # type: ignore[call-arg]

    return make


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    return make_settings()


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    """A 64 KiB file system (tmpfs); skipped where mounting is not allowed (not root)."""
    mount_point = tmp_path / "tiny"
    mount_point.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64k,mode=0700", "tmpfs", str(mount_point)],
        capture_output=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", str(mount_point)], check=False)


@pytest.fixture
def alembic_project(tmp_path: Path) -> Callable[..., Path]:
    """Write a small Alembic project into tmp_path; returns the path of its alembic.ini."""

    def make(revisions: list[Rev], url: str = "sqlite://", name: str = "project") -> Path:
        return write_project(tmp_path / name, revisions, url)

    return make


@pytest.fixture
def client(settings: Settings) -> Iterator[Any]:
    """A TestClient on an app built from ``settings`` (lifespan included)."""
    from fastapi.testclient import TestClient

    from admin.web.app import create_app

    with TestClient(create_app(settings)) as test_client:
        yield test_client


# Web: users of each role, and a real server in a subprocess (helpers in tests/helpers.py).


@pytest.fixture
def role_users(client: Any) -> dict[str, str]:
    """One user per role in ``client``'s store (``viewer-user``, ..., ``admin-user``), password
    ``helpers.PASSWORD``, no forced change: ``login(client, role_users["viewer"])``."""
    from helpers import create_user

    from admin.store.models import Role

    runtime = client.app.state.runtime
    return {role.value: create_user(runtime, f"{role.value}-user", role).username for role in Role}


@pytest.fixture
def make_live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., Any]]:
    """Start a fresh ``LiveServer`` (real uvicorn) for one test; stopped at its end."""
    from helpers import LiveServer

    started: list[LiveServer] = []

    def make(**env: str) -> LiveServer:
        server = LiveServer(tmp_path_factory.mktemp("live"), env_overrides=env).start()
        started.append(server)
        return server

    yield make
    for server in started:
        server.stop()


@pytest.fixture(scope="session")
def live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """One real uvicorn for the session (SSE, browser tests). Its first admin is left
    untouched: tests add their own users with ``live_server.add_user(name, role)``."""
    from helpers import LiveServer

    server = LiveServer(tmp_path_factory.mktemp("live-session")).start()
    yield server
    server.stop()
