"""Helpers shared by the web, browser and packaging tests.

- ``page_soup(response)``: the HTML as BeautifulSoup (assert with selectors).
- ``login(client, username, password)``: sign in through the form; returns the 303.
- ``csrf_token(client)``: the signed-in session's CSRF token, read from a page.
- ``create_user(runtime, username, role, password)``: a user in the app's store.
- ``LiveServer``: real uvicorn in a subprocess (``python -m admin serve``) with its own
  SQLite store and target in a directory; ``add_user`` runs ``schema-admin user add``.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bs4 import BeautifulSoup
from projects import REPO_ROOT

from admin import audit
from admin.auth import users
from admin.runtime import Runtime
from admin.store.models import Role, Source, User

# A key that passes the production checks (random, not a placeholder).
TEST_SECRET_KEY = "Qm7vK2pX9rT4wZ8nB3cF6hJ1dL5sY0gA-Ue7iO2kN4tR9xV_Hb3"
# A password that passes the rules; every helper-made user has it unless told otherwise.
PASSWORD = "correct-horse-battery-9"


def page_soup(response: Any) -> BeautifulSoup:
    return BeautifulSoup(response.text, "html.parser")


def login(client: Any, username: str, password: str = PASSWORD, next: str = "/") -> Any:
    """Sign in through the form; the response (a 303 on success) is returned unfollowed."""
    return client.post(
        "/login",
        data={"username": username, "password": password, "next": next},
        follow_redirects=False,
    )


def csrf_token(client: Any, path: str = "/account/password") -> str:
    """The CSRF token of the client's session, from the hidden input of a page's form."""
    response = client.get(path)
    field_ = page_soup(response).select_one("input[name=csrf_token]")
    assert field_ is not None, f"no CSRF field on {path} ({response.status_code})"
    return str(field_["value"])


def body_csrf_header(response: Any) -> str | None:
    """The X-CSRF-Token that <body hx-headers> gives htmx, or None."""
    body = page_soup(response).body
    if body is None or not body.get("hx-headers"):
        return None
    headers = json.loads(str(body["hx-headers"]))
    return str(headers["X-CSRF-Token"])


def create_user(
    runtime: Runtime,
    username: str,
    role: Role | str,
    password: str = PASSWORD,
    *,
    must_change_password: bool = False,
) -> User:
    """A user straight in the store (audited as the 'tests' actor)."""
    actor_ = audit.Actor("tests", None, Source.CLI)
    with runtime.transaction() as session:
        return users.create(
            session,
            actor_,
            username,
            Role(role),
            password,
            must_change_password=must_change_password,
        )


def processes() -> Iterator[tuple[int, list[bytes], str]]:
    """Each process of the machine, from /proc: its pid, its argv and its state letter
    (``Z``: a zombie, not running); processes that end meanwhile are left out."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        yield int(entry.name), argv, state


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class LiveServer:
    """``python -m admin serve`` on a free port, its store and target in ``root``."""

    root: Path
    env_overrides: dict[str, str] = field(default_factory=dict)
    port: int = 0
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def store_url(self) -> str:
        return f"sqlite:///{self.root / 'store.sqlite3'}"

    @property
    def log_path(self) -> Path:
        return self.root / "server.log"

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            {
                "ADMIN_DATABASE_URL": self.store_url,
                "DATABASE_URL": f"sqlite:///{self.root / 'target.sqlite3'}",
                "VAR_DIR": str(self.root / "var"),
                "BACKUP_DIR": str(self.root / "backups"),
                "SECRET_KEY": TEST_SECRET_KEY,
                "ALEMBIC_CONFIG": str(REPO_ROOT / "alembic.ini"),
                "ENVIRONMENT": "development",
                "LOG_LEVEL": "WARNING",
            }
        )
        env.update(self.env_overrides)
        return env

    def command(self) -> list[str]:
        return [sys.executable, "-m", "admin", "serve", "--host", "127.0.0.1"]

    def start(self, timeout: float = 30.0) -> LiveServer:
        self.root.mkdir(parents=True, exist_ok=True)
        self.port = self.port or free_port()
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [*self.command(), "--port", str(self.port)],
            cwd=self.root,
            env=self.env(),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the server exited: {self.log_path.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(self.url + "/healthz", timeout=1) as answer:
                    if answer.status == 200:
                        return self
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(
            f"the server did not answer /healthz: {self.log_path.read_text()[-3000:]}"
        )

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)

    def initial_admin_password(self) -> str:
        """The first admin's one-time password, as the server wrote it."""
        lines = (self.root / "var" / "initial-admin-password").read_text().splitlines()
        return lines[1]

    def cli(self, *args: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
        """Run ``schema-admin`` against this server's store."""
        return subprocess.run(
            [sys.executable, "-m", "admin", *args],
            cwd=self.root,
            env=self.env(),
            input=input,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )

    def add_user(self, username: str, role: str = "viewer", password: str = PASSWORD) -> str:
        """Create a user with ``password`` (no forced change) through the CLI."""
        self.cli("user", "add", username, "--role", role, "--password-stdin", input=password + "\n")
        return password
