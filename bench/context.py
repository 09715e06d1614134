"""What every measurement works with: the generated projects and their PostgreSQL databases."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from admin import migrations
from admin.config import normalize_database_url
from bench.projects import GeneratedProject, generate


def run_admin_sql(server_url: str, sql: str) -> None:
    """One statement outside a transaction (CREATE / DROP DATABASE) on the bench's server."""
    engine = create_engine(server_url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as connection:
            connection.execute(text(sql))
    finally:
        engine.dispose()


class Databases:
    """Fresh databases on the bench's server, dropped at the end."""

    def __init__(self, server_url: str) -> None:
        self.server_url = server_url
        self.created: list[str] = []

    def create(self, prefix: str, *, template: str | None = None) -> str:
        """A new database (a copy of the database ``template`` names, if given); its URL."""
        name = f"apex_bench_{prefix}_{uuid.uuid4().hex[:8]}"
        copy = f' TEMPLATE "{template}"' if template else ""
        run_admin_sql(self.server_url, f'CREATE DATABASE "{name}"{copy}')
        self.created.append(name)
        return make_url(self.server_url).set(database=name).render_as_string(hide_password=False)

    def drop_last(self) -> None:
        """Drop the newest database (a run's, once measured: a thousand tables each)."""
        migrations.dispose_engines()
        name = self.created.pop()
        run_admin_sql(self.server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def drop_all(self) -> None:
        migrations.dispose_engines()
        for name in self.created:
            run_admin_sql(self.server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        self.created.clear()


@dataclass
class Context:
    workdir: Path
    server_url: str
    sizes: tuple[int, ...]
    runs: int
    _projects: dict[int, GeneratedProject] = field(default_factory=dict)
    _databases: dict[int, str] = field(default_factory=dict)
    _created: list[str] = field(default_factory=list)

    def url(self, size: int) -> str:
        """The URL of the size's PostgreSQL database (created by ``database_at_head``)."""
        if size not in self._databases:
            name = f"apex_bench_{size}_{uuid.uuid4().hex[:8]}"
            self._databases[size] = (
                make_url(self.server_url).set(database=name).render_as_string(hide_password=False)
            )
        return self._databases[size]

    def project(self, size: int) -> GeneratedProject:
        if size not in self._projects:
            self._projects[size] = generate(self.workdir / f"p{size}", size, self.url(size))
        return self._projects[size]

    def database_at_head(self, size: int) -> str:
        """A PostgreSQL database at the head of the size's project (stamped: no DDL needed)."""
        url = self.url(size)
        name = make_url(url).database or ""
        if name not in self._created:
            run_admin_sql(self.server_url, f'CREATE DATABASE "{name}"')
            self._created.append(name)
            project = migrations.open_project(self.project(size).ini)
            engine = migrations.new_engine(url)
            try:
                with engine.connect() as connection:
                    migrations.run(
                        project, connection, migrations.Command.STAMP, "heads", on_event=_ignore
                    )
            finally:
                engine.dispose()
        return url

    def drop_databases(self) -> None:
        migrations.dispose_engines()
        for name in self._created:
            run_admin_sql(self.server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        self._created.clear()

    def server_version(self) -> str:
        engine = create_engine(self.server_url)
        try:
            with engine.connect() as connection:
                return str(connection.execute(text("SHOW server_version")).scalar())
        finally:
            engine.dispose()


def _ignore(event: object) -> None:
    return None


@contextmanager
def opened(workdir: Path, server_url: str, sizes: tuple[int, ...], runs: int) -> Iterator[Context]:
    ctx = Context(workdir, normalize_database_url(server_url), sizes, runs)
    try:
        yield ctx
    finally:
        ctx.drop_databases()
