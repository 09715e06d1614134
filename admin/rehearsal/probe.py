"""What a rehearsal's run is measured with.

Per statement the migration's connection sends: its duration, the rows it affected, and
the relation locks its backend holds when it ends (``pg_locks`` of its own pid, read on
the same connection, inside the same transaction). Per step, from a second connection
(an observer) between steps: tables rewritten (their relfilenode changed), indexes built,
WAL written (``pg_current_wal_lsn`` before and after: the whole server's, so other work on
it counts too) and each ACCESS EXCLUSIVE lock on a table that existed before the step,
with the time it was held: from the start of the statement that took it until the commit
that released it.

Statements are told apart from the panel's own reads by the engine itself: only those it
reports as the migration's SQL (``EventKind.SQL``) are measured.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, Engine, event, text

from admin import migrations

ACCESS_EXCLUSIVE = "AccessExclusiveLock"
_SQL_KEPT = 400

_LOCKS = """SELECT COALESCE(n.nspname || '.' || c.relname, l.relation::text), l.mode
FROM pg_locks l LEFT JOIN pg_class c ON c.oid = l.relation
LEFT JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE l.pid = pg_backend_pid() AND l.locktype = 'relation' AND l.granted
  AND COALESCE(n.nspname, '') NOT IN ('pg_catalog', 'information_schema')
  AND COALESCE(n.nspname, '') NOT LIKE 'pg\\_%'
ORDER BY 1, 2"""

_RELATIONS = """SELECT c.oid, n.nspname || '.' || c.relname, c.relkind, c.relfilenode,
       GREATEST(c.reltuples, 0)::bigint
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p', 'm', 'i')
  AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_%'"""


@dataclass
class Relations:
    """pg_class between two steps: oid -> (name, kind, relfilenode, estimated rows)."""

    rows: dict[int, tuple[str, str, int, int]]
    wal: str | None

    def tuples(self, name: str) -> int | None:
        for relname, kind, _, tuples in self.rows.values():
            if relname == name and kind in ("r", "p", "m"):
                return tuples
        return None


@dataclass
class StepStats:
    step: int
    revision: str
    label: str
    started: float
    duration: float = 0.0
    statements: list[dict[str, Any]] = field(default_factory=list)
    holds: dict[str, float] = field(default_factory=dict)  # relation -> seconds (AE)
    rewrites: list[str] = field(default_factory=list)
    indexes_built: list[str] = field(default_factory=list)
    wal_bytes: int | None = None

    def as_dict(self, rows_of: Callable[[str], int | None]) -> dict[str, Any]:
        locks = sorted({(rel, mode) for s in self.statements for rel, mode in s["locks"]})
        return {
            "step": self.step,
            "revision": self.revision,
            "label": self.label,
            "duration": round(self.duration, 4),
            # The migration's own rows: the version table's bookkeeping left out.
            "rows": sum(
                s["rows"]
                for s in self.statements
                if s["rows"] and s["rows"] > 0 and not s.get("version_table")
            ),
            "locks": [list(lock) for lock in locks],
            "access_exclusive": [
                {"relation": rel, "seconds": round(held, 4), "rows": rows_of(rel)}
                for rel, held in sorted(self.holds.items(), key=lambda item: -item[1])
            ],
            "rewrites": self.rewrites,
            "indexes_built": self.indexes_built,
            "wal_bytes": self.wal_bytes,
            "statements": self.statements,
        }


class Probe:
    """Listens to one run (``watch``) and keeps its measures (``steps``)."""

    def __init__(
        self,
        observer: Connection | None,
        on_line: Callable[[str], None],
        version_table: str = "alembic_version",
    ) -> None:
        self.observer = observer  # None: SQLite, durations and rows only
        self.on_line = on_line
        self.version_table = version_table
        self.steps: list[StepStats] = []
        self.first: Relations | None = None
        self._before: Relations | None = None
        self._pending: tuple[Any, str, float] | None = None
        self._migration_sql = False
        self._holds: dict[str, float] = {}
        self._tables: set[str] = set()

    # The engine's events (on_event of migrations.run).

    def on_event(self, event_: migrations.EngineEvent) -> None:
        kind = event_.kind
        if kind is migrations.EventKind.SQL:
            self._migration_sql = True
        elif kind is migrations.EventKind.STEP_STARTED:
            self._close_step()
            self._before = self._relations()
            if self._before is not None:
                self._tables = {
                    name for name, kind, _, _ in self._before.rows.values() if kind in "rpm"
                }
            if self.first is None:
                self.first = self._before
            self.steps.append(
                StepStats(
                    event_.step or len(self.steps) + 1,
                    event_.revision or "",
                    event_.text.removeprefix("Running "),
                    time.monotonic(),
                )
            )

    def finish(self) -> Relations | None:
        """After the run: the last step's measures; pg_class as the run left it."""
        return self._close_step()

    # Statement events (SQLAlchemy), the migration's only.

    def _before_execute(self, conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        self._pending = (cursor, statement, time.monotonic())
        self._migration_sql = False

    def _after_execute(self, conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        pending, self._pending = self._pending, None
        if pending is None or pending[0] is not cursor or not self._migration_sql or not self.steps:
            return
        self._migration_sql = False
        ended = time.monotonic()
        rows = cursor.rowcount if isinstance(cursor.rowcount, int) else -1
        locks = self._locks(cursor) if self.observer is not None else []
        began = pending[2]
        # Holds that matter: on tables others could read (existing before the step), not on
        # what the step itself creates (a new index or table nobody sees until commit).
        held_now = {rel for rel, mode in locks if mode == ACCESS_EXCLUSIVE and rel in self._tables}
        for rel in held_now - self._holds.keys():
            self._holds[rel] = began
        for rel in list(self._holds.keys() - held_now):
            self._release(rel, ended)  # committed meanwhile (an autocommit block)
        sql = " ".join(statement.split())
        self.steps[-1].statements.append(
            {
                "sql": sql[:_SQL_KEPT],
                "version_table": self.version_table in sql[:120],
                "duration": round(ended - began, 4),
                "rows": rows,
                "locks": [list(lock) for lock in locks],
            }
        )

    def _on_commit(self, conn: Any) -> None:
        now = time.monotonic()
        for rel in list(self._holds):
            self._release(rel, now)

    def _release(self, rel: str, when: float) -> None:
        since = self._holds.pop(rel)
        if self.steps:
            step = self.steps[-1]
            step.holds[rel] = max(step.holds.get(rel, 0.0), when - since)

    @contextmanager
    def listening(self) -> Iterator[None]:
        # Registered before the run registers its own: ours see each statement first.
        event.listen(Engine, "before_cursor_execute", self._before_execute)
        event.listen(Engine, "after_cursor_execute", self._after_execute)
        event.listen(Engine, "commit", self._on_commit)
        try:
            yield
        finally:
            event.remove(Engine, "commit", self._on_commit)
            event.remove(Engine, "after_cursor_execute", self._after_execute)
            event.remove(Engine, "before_cursor_execute", self._before_execute)

    # Reads.

    @staticmethod
    def _locks(cursor: Any) -> list[tuple[str, str]]:
        # The DBAPI connection itself: no SQLAlchemy event, the migration's own transaction.
        own = cursor.connection.cursor()
        try:
            own.execute(_LOCKS)
            return [(str(rel), str(mode)) for rel, mode in own.fetchall()]
        finally:
            own.close()

    def _relations(self) -> Relations | None:
        if self.observer is None:
            return None
        rows = {
            int(oid): (str(name), str(kind), int(node), int(tuples))
            for oid, name, kind, node, tuples in self.observer.execute(text(_RELATIONS))
        }
        wal = self.observer.execute(text("SELECT pg_current_wal_lsn()::text")).scalar()
        return Relations(rows, str(wal) if wal is not None else None)

    def _close_step(self) -> Relations | None:
        now = time.monotonic()
        for rel in list(self._holds):
            self._release(rel, now)
        after = self._relations()
        if not self.steps or self.steps[-1].duration:
            return after
        step = self.steps[-1]
        step.duration = now - step.started
        before = self._before
        if before is not None and after is not None:
            for oid, (name, kind, node, _) in after.rows.items():
                was = before.rows.get(oid)
                if kind == "i" and (was is None or was[2] != node):
                    step.indexes_built.append(name if was is None else f"{name} (rebuilt)")
                elif kind in ("r", "p", "m") and was is not None and was[2] != node:
                    step.rewrites.append(name)
            if before.wal and after.wal and self.observer is not None:
                step.wal_bytes = int(
                    self.observer.execute(
                        text("SELECT pg_wal_lsn_diff(:a, :b)"), {"a": after.wal, "b": before.wal}
                    ).scalar_one()
                )
        self.on_line(
            f"step {step.step} ({step.revision}): {step.duration:.3f}s, "
            f"{len(step.statements)} statement(s)"
            + (f", rewrote {', '.join(step.rewrites)}" if step.rewrites else "")
            + (f", built {', '.join(step.indexes_built)}" if step.indexes_built else "")
            + (
                "; ACCESS EXCLUSIVE: "
                + ", ".join(f"{rel} {held:.3f}s" for rel, held in step.holds.items())
                if step.holds
                else ""
            )
        )
        return after
