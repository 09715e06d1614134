"""Support for the reading pages' tests (dashboard, history, revision, preview, API).

Signing in costs an argon2 hash, so a module makes one ``Panel``: one store with a user
per role signed in once, and apps on as many targets as it needs that share the store
(sessions live there), so every client of every app is already signed in.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from helpers import REPO_ROOT, TEST_SECRET_KEY, create_user, login
from projects import Rev, write_project
from sqlalchemy import create_engine, select, text

from admin.config import Settings
from admin.store.models import AuditEvent, Role
from admin.web.app import create_app

CRM_INI = REPO_ROOT / "alembic.ini"
# The CRM project, oldest first (tests/test_crm_project.py knows them too).
CRM_ORDER = (
    "196dfdb50f6c",
    "20240101000000",
    "8a1d4e6f0c27",
    "3c9e1f7a2b4d",
    "b5f2c8d91e03",
    "e47a90b3d6f1",
    "5d0c7be2a918",
    "f19b3a6c4e85",
)
CRM_HEAD = CRM_ORDER[-1]
IRREVERSIBLE = "e47a90b3d6f1"


@dataclass
class Apps:
    """One app on one target, with a signed-in client per role (and one signed out)."""

    app: Any
    clients: dict[str, TestClient]
    anonymous: TestClient

    def __getitem__(self, role: str) -> TestClient:
        return self.clients[role]

    @property
    def runtime(self) -> Any:
        return self.app.state.runtime


@dataclass
class Panel:
    root: Path
    cookies: dict[str, dict[str, str]] = field(default_factory=dict)

    def settings(self, **overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "database_url": f"sqlite:///{self.root / 'target.sqlite3'}",
            "admin_database_url": f"sqlite:///{self.root / 'store.sqlite3'}",
            "var_dir": self.root / "var",
            "backup_dir": self.root / "backups",
            "secret_key": TEST_SECRET_KEY,
            "alembic_config": CRM_INI,
        }
        values.update(overrides)
        return Settings(_env_file=None, **values)  # type: ignore[call-arg]

    @contextmanager
    def open(self, **overrides: Any) -> Iterator[Apps]:
        """An app on these settings; the first one creates the users and signs them in."""
        app = create_app(self.settings(**overrides))
        with ExitStack() as stack:
            main = stack.enter_context(TestClient(app))
            if not self.cookies:
                for role in Role:
                    username = f"{role.value}-user"
                    create_user(app.state.runtime, username, role)
                    client = TestClient(app)
                    assert login(client, username).status_code == 303
                    self.cookies[role.value] = dict(client.cookies)
                    client.close()
            clients = {
                role: stack.enter_context(TestClient(app, cookies=jar))
                for role, jar in self.cookies.items()
            }
            yield Apps(app=app, clients=clients, anonymous=main)


def sqlite_target(path: Path, heads: tuple[str, ...] | None) -> str:
    """A SQLite file: ``None`` leaves it without a version table, else stamped at ``heads``."""
    url = f"sqlite:///{path}"
    stamp(url, heads)
    return url


def stamp(url: str, heads: tuple[str, ...] | None) -> None:
    """Write the version table by hand (what `alembic stamp` leaves); ``None``: no table."""
    engine = create_engine(url)
    try:
        with engine.begin() as connection:
            connection.execute(text("SELECT 1"))
            if heads is None:
                connection.execute(text("DROP TABLE IF EXISTS alembic_version"))
                return
            connection.execute(
                text(
                    "CREATE TABLE IF NOT EXISTS alembic_version "
                    "(version_num VARCHAR(32) NOT NULL PRIMARY KEY)"
                )
            )
            connection.execute(text("DELETE FROM alembic_version"))
            for rev in heads:
                connection.execute(
                    text("INSERT INTO alembic_version (version_num) VALUES (:v)"), {"v": rev}
                )
    finally:
        engine.dispose()


def audit_events(runtime: Any, action: str) -> list[AuditEvent]:
    with runtime.sessions() as session:
        rows = session.scalars(
            select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.id)
        ).all()
        session.expunge_all()
        return list(rows)


def make_project(root: Path, revisions: list[Rev]) -> Path:
    """A small Alembic project in ``root``; file names are the ids, so a message may be
    anything (markup, slashes)."""
    return write_project(root, revisions, id_file_names=True)


def linear(count: int, prefix: str = "r") -> list[Rev]:
    """``count`` revisions in a line, ids ``<prefix>00000``..., each creating a table."""
    revisions = []
    down: str | None = None
    for i in range(count):
        rid = f"{prefix}{i:05d}"
        revisions.append(
            Rev(
                rid,
                down,
                f"step {i}",
                upgrade=f"op.create_table('t_{rid}', sa.Column('id', sa.Integer))",
                downgrade=f"op.drop_table('t_{rid}')",
            )
        )
        down = rid
    return revisions


_TINY = '''"""{message}

Revision ID: {rev}
Revises: {down}
Create Date: 2024-01-01 00:00:00
"""

revision = {rev!r}
down_revision = {down!r}
branch_labels = None
depends_on = None


def upgrade():
    pass


def downgrade():
    pass
'''


def many_revisions(root: Path, count: int) -> Path:
    """A project of ``count`` revisions in a line (``n00000``...), written as fast as it goes.

    Revision ids are ``n`` and five digits; messages ``revision <i>``.
    """
    ini = make_project(root, [])
    versions = root / "migrations" / "versions"
    down: str | None = None
    for i in range(count):
        rev = f"n{i:05d}"
        (versions / f"{rev}.py").write_text(
            _TINY.format(message=f"revision {i}", rev=rev, down=down)
        )
        down = rev
    return ini
