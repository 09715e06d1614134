"""The run's EnvironmentContext: what the panel learns and checks while env.py runs.

env.py files are written many ways: some use the connection the panel hands over
(``config.attributes["connection"]``), the ``alembic init`` templates build their own engine
from ``sqlalchemy.url`` (the panel sets it to the target), others build one from their own
settings. Whatever they do, they end up calling ``context.configure(connection=...)``:
``PanelEnvironment.configure`` is where the panel

- proves the connection env.py chose is the target: the same PostgreSQL server and
  database (it sees the run's own backend, by pid and start time, in its database), or
  the same SQLite file; otherwise the run stops before its first step, naming both;
- gives that connection the run's session settings (timeouts, WAL flush, application
  name) when it is not the panel's own, and reports its backend pid (so a cancel reaches
  its statement);
- adds its own ``on_version_apply`` hook to env.py's (progress from Alembic itself, not
  from hooks env.py must pass on), and takes Alembic's logging back (``capture``).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from alembic.runtime.environment import EnvironmentContext
from alembic.runtime.migration import MigrationContext
from alembic.util import to_tuple
from sqlalchemy import Connection, Select, column, select, table, text
from sqlalchemy.exc import DBAPIError

from admin.migrations.capture import Capture
from admin.migrations.errors import MigrationError
from admin.urls import mask_url

# PostgreSQL's SQLSTATE for a relation that does not exist.
UNDEFINED_TABLE = "42P01"


class WrongDatabase(MigrationError):
    """env.py connected to a database that is not the job's target."""

    status = 409
    title = "env.py used another database"


class NotWhereExpected(MigrationError):
    """The target's version table is not where the run's steps left it."""

    status = 409
    title = "The database is not where the plan says"


def describe_connection(connection: Connection) -> str:
    """Where a connection is, as far as a person needs it (password masked)."""
    url = mask_url(connection.engine.url)
    if connection.dialect.name != "postgresql":
        return url
    return f"{url} (database {connection.engine.url.database!r})"


def _session_id(connection: Connection) -> tuple[int, Any]:
    row = connection.execute(
        text("SELECT pid, backend_start FROM pg_stat_activity WHERE pid = pg_backend_pid()")
    ).one()
    return int(row.pid), row.backend_start


def _sqlite_file(connection: Connection) -> str | None:
    for row in connection.exec_driver_sql("PRAGMA database_list").fetchall():
        if row[1] == "main":
            return os.path.realpath(row[2]) if row[2] else None
    return None


@dataclass
class Watch:
    """The run's side of env.py: its target connection, and what Alembic reports."""

    target: Connection
    session_setup: Callable[[Connection], None]
    capture: Capture
    on_backend: Callable[[int], None]
    on_applied: Callable[[set[str]], None]
    migration: Connection | None = None
    version_table: str = "alembic_version"
    version_table_schema: str | None = None
    heads_after: list[set[str]] = field(default_factory=list)
    one_transaction: bool = False
    quiet: bool = False

    def adopt(self, connection: Connection) -> None:
        """Check ``connection`` (env.py's choice) is the target, and prepare it."""
        self.migration = connection
        if connection is self.target:
            return
        where = self._other(connection)
        if where is not None:
            raise WrongDatabase(
                f"env.py connected to {where}, not to the job's target "
                f"{describe_connection(self.target)}: nothing was applied. The panel gives "
                "env.py the target as the sqlalchemy.url option and as "
                "config.attributes['connection']; make env.py use one of them"
            )
        was_in_transaction = connection.in_transaction()
        with self.silenced():
            self.session_setup(connection)
            if connection.dialect.name == "postgresql":
                pid = connection.execute(text("SELECT pg_backend_pid()")).scalar()
                self.on_backend(int(pid or 0))
            if not was_in_transaction and connection.in_transaction():
                connection.commit()

    def _other(self, connection: Connection) -> str | None:
        """None when ``connection`` reaches the target's database; else where it is."""
        if connection.dialect.name != self.target.dialect.name:
            return describe_connection(connection)
        was_in_transaction = connection.in_transaction()
        with self.silenced():
            try:
                if connection.dialect.name == "postgresql":
                    pid, started = _session_id(self.target)
                    seen = connection.execute(
                        text(
                            "SELECT count(*) FROM pg_stat_activity WHERE pid = :pid AND "
                            "backend_start = :started AND datid = "
                            "(SELECT oid FROM pg_database WHERE datname = current_database())"
                        ),
                        {"pid": pid, "started": started},
                    ).scalar()
                    same = bool(seen)
                else:
                    same = _sqlite_file(connection) == _sqlite_file(self.target)
            finally:
                if not was_in_transaction and connection.in_transaction():
                    connection.rollback()
                if self.target.in_transaction():
                    self.target.rollback()
        return None if same else describe_connection(connection)

    @contextmanager
    def silenced(self) -> Any:
        """The panel's own queries are not the migration's SQL."""
        before, self.quiet = self.quiet, True
        try:
            yield
        finally:
            self.quiet = before

    def version_applied(
        self, *, ctx: MigrationContext, step: Any, heads: set[str], **_: Any
    ) -> None:
        """Alembic's ``on_version_apply``: the step's version-table change is written."""
        self.heads_after.append(set(heads))
        self.on_applied(set(heads))

    def current_heads(self, context: MigrationContext) -> set[str]:
        """The version table as the migration's own connection sees it (its transaction).

        Between two revisions of a run with a transaction per revision, nothing is open:
        the table is read at once, where Alembic's ``get_current_heads`` first asks the
        catalog whether it exists (a round trip more per revision: one in seven of a
        downgrade whose revisions each drop a table and an index). Should the table be gone,
        that read's own transaction is rolled back and Alembic's way answers, as it does
        inside an open transaction.
        """
        connection = context.connection
        with self.silenced():
            if connection is not None and not connection.in_transaction():
                query = _version_query(self.version_table, self.version_table_schema)
                try:
                    return set(connection.execute(query).scalars())
                except DBAPIError as exc:
                    if exc.connection_invalidated or _code(exc) not in (None, UNDEFINED_TABLE):
                        raise
                    connection.rollback()
            return set(context.get_current_heads())

    def check(self, context: MigrationContext, step: int, total: int) -> None:
        """After step ``step`` of ``total``: the target's version table must say what Alembic
        recorded for it."""
        if not self.heads_after:
            return
        expected = self.heads_after[-1]
        found = self.current_heads(context)
        if found != expected:
            raise NotWhereExpected(
                f"after step {step}/{total} the target's version table holds "
                f"{_heads(found)}, not {_heads(expected)} as the step recorded: stopping"
            )

    def final_heads(self) -> tuple[str, ...]:
        """The target's heads read on the panel's own connection, after the run."""
        with self.silenced():
            if self.target.in_transaction():
                self.target.rollback()
            context = MigrationContext.configure(
                self.target,
                opts={
                    "version_table": self.version_table,
                    "version_table_schema": self.version_table_schema,
                },
            )
            heads = tuple(context.get_current_heads())
            self.target.rollback()
        return heads


@lru_cache(maxsize=8)
def _version_query(name: str, schema: str | None) -> Select[Any]:
    """The read of a version table, built once (a thousand-step run reads it a thousand
    times)."""
    return select(table(name, column("version_num"), schema=schema).c.version_num)


def _code(exc: DBAPIError) -> str | None:
    """PostgreSQL's SQLSTATE of an error (None elsewhere)."""
    return getattr(exc.orig, "pgcode", None)


def _heads(heads: set[str] | tuple[str, ...]) -> str:
    return ", ".join(sorted(heads)) if heads else "base (no revision)"


def panel_environment(*args: Any, watch: Watch, **kwargs: Any) -> EnvironmentContext:
    """The EnvironmentContext env.py sees as ``alembic.context`` during a panel run: its
    ``configure`` goes through ``watch`` first (an instance attribute, which Alembic's
    module proxy picks up like the method; a subclass would not get the proxy)."""
    environment = EnvironmentContext(*args, **kwargs)
    configure = environment.configure

    def configure_for_panel(connection: Connection | None = None, **kw: Any) -> None:
        watch.capture.reclaim()
        if connection is not None:
            watch.adopt(connection)
        watch.version_table = kw.get("version_table") or watch.version_table
        watch.version_table_schema = kw.get("version_table_schema")
        watch.one_transaction = not kw.get("transaction_per_migration", False)
        hooks = to_tuple(kw.pop("on_version_apply", None), default=())
        # Alembic keeps every hook it is given (it stores them as a tuple).
        callbacks = (*hooks, watch.version_applied)
        configure(connection=connection, on_version_apply=callbacks, **kw)  # type: ignore[arg-type]

    environment.configure = configure_for_panel  # type: ignore[method-assign,assignment]
    return environment
