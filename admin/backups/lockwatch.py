"""A lock watch: cancels a restore that waits on another session's lock for too long.

lock_timeout cannot be set for pg_restore or psql from outside: every pg_dump archive
starts with ``SET lock_timeout = 0``, which both replay. So a second connection looks at
the restore's backend (found by its unique application_name) about once a second, and
when it has waited on a lock past the limit, cancels its statement; the single
transaction then rolls back. The message names who held the lock.
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

from sqlalchemy import create_engine, text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.pool import NullPool

from admin.backups.conninfo import Target
from admin.errors import describe

_WAITING = text(
    "SELECT pid, query_start, pg_blocking_pids(pid) FROM pg_stat_activity "
    "WHERE application_name = :name AND wait_event_type = 'Lock'"
)
_HOLDERS = text(
    "SELECT pid, application_name, usename, state FROM pg_stat_activity "
    "WHERE pid = ANY(:pids) ORDER BY pid"
)


class LockWatch:
    """Call it about once a second while the watched program runs; see the module docstring."""

    def __init__(self, server: Target, application_name: str, limit: float, shown: str) -> None:
        self._engine = create_engine(server.url, isolation_level="AUTOCOMMIT", poolclass=NullPool)
        self._connection: Connection | None = None
        self._name = application_name
        self._limit = limit
        self._shown = shown  # the timeout as the caller wrote it, e.g. "10s"
        self._since: dict[tuple[int, datetime | None], float] = {}
        self._broken = False
        self.cancelled: str | None = None  # why the watched statement was cancelled

    def __call__(self) -> str | None:
        """Check once; a line for the log when something was done or went wrong."""
        if self.cancelled is not None or self._broken:
            return None
        try:
            if self._connection is None:
                self._connection = self._engine.connect()
            return self._check(self._connection)
        except SQLAlchemyError as exc:
            # The restore goes on without the watch rather than failing for it.
            self._broken = True
            return f"warning: the lock watch stopped: {describe(exc)}"

    def _check(self, connection: Connection) -> str | None:
        now = time.monotonic()
        seen: dict[tuple[int, datetime | None], float] = {}
        for pid, query_start, blockers in connection.execute(_WAITING, {"name": self._name}):
            key = (int(pid), query_start)
            seen[key] = first = self._since.get(key, now)
            if now - first < self._limit:
                continue
            holders = self._holders(connection, list(blockers or []))
            connection.execute(text("SELECT pg_cancel_backend(:pid)"), {"pid": pid})
            self.cancelled = (
                f"it waited longer than the lock timeout ({self._shown}) for a lock held by "
                f"{holders}"
            )
            return f"cancelling the restore: {self.cancelled}"
        self._since = seen
        return None

    @staticmethod
    def _holders(connection: Connection, pids: list[Any]) -> str:
        if not pids:
            return "another session"
        rows = connection.execute(_HOLDERS, {"pids": [int(p) for p in pids]}).all()
        described = [
            f"pid {pid} ({app or 'no application_name'}, user {user}, {state})"
            for pid, app, user, state in rows
        ]
        return ", ".join(described) or "another session"

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
        self._engine.dispose()
