"""Reads of the target for pages, status, metrics, readiness and the CLI, bounded in time.

``run(url, read)`` calls ``read(connection)`` on a connection of ``database.engine_for``'s
pool, and every way it can stall ends within ``TARGET_READ_TIMEOUT`` (plus a second at
most) in one line (an ``Unavailable``, 503):

- no free connection in that time (every one waits on the target): ``TargetBusy``, which
  repeats what the last blocked read found; while every connection waits and a read found
  the table locked less than TARGET_READ_TIMEOUT ago, at once; a read that got its
  connection after another found the table locked gives that answer instead of waiting
  again (so no answer takes much more than TARGET_READ_TIMEOUT);
- a lock wait or a statement longer than that (the server's ``lock_timeout`` and
  ``statement_timeout``): ``TargetLocked``, naming the session that holds the version table
  ("the version table alembic_version is locked by pid N (query; user, since ...)");
- no answer at all (a black-holed link): the watchdog cuts the connection off.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.pool import QueuePool

from admin.errors import Unavailable
from admin.migrations import database, watchdog

T = TypeVar("T")
# Beyond the server's own timeouts: how long a silent server is waited for.
GRACE = 1.0
# A busy pool repeats what a blocked read found this recently.
_REMEMBER = 30.0
_LOCK_TIMEOUT, _STATEMENT_TIMEOUT = "55P03", "57014"
_QUERY_SHOWN = 120

_last_blocked: dict[str, tuple[float, str]] = {}
_last_lock = threading.Lock()


class TargetBusy(Unavailable):
    """Every read connection to the target stayed busy for the whole wait."""

    title = "Target busy"


class TargetLocked(Unavailable):
    """A read waited out its lock or statement timeout on the target."""

    title = "Target locked"


def run(url: str, read: Callable[[Connection], T], *, table: str = "alembic_version") -> T:
    """``read(connection)`` within the bounds above; a dropped pooled connection is retried."""
    database.check_exists(url)
    for attempt in (1, 2):
        try:
            return _once(url, read, table)
        except _Dropped as dropped:
            if attempt == 2:
                raise database.unreachable(url, dropped.error) from dropped.error
    raise AssertionError("not reached")


class _Dropped(Exception):
    """The server had closed a pooled connection (a restart): worth one more try."""

    def __init__(self, error: DBAPIError) -> None:
        super().__init__(str(error))
        self.error = error


def _once(url: str, read: Callable[[Connection], T], table: str) -> T:
    timeout = database.options().read_timeout
    started = time.monotonic()
    engine = database.engine_for(url)
    if _found_blocked(url, timeout) and _exhausted(engine):
        # Every connection already waits on what a read found moments ago: say so now
        # rather than add this caller to the queue (fifty dashboards on a locked table).
        raise _busy(url)
    try:
        connection = engine.connect()
    except PoolTimeout as exc:
        raise _busy(url) from exc
    except SQLAlchemyError as exc:
        raise database.unreachable(url, exc) from exc
    found = _found_since(url, started)
    if found is not None:
        # Another read found the table locked while this one waited for a connection:
        # its answer is as fresh as this one's would be, and waiting again would double it.
        connection.close()
        raise TargetLocked(found)
    failure: DBAPIError | None = None
    with connection:
        raw = connection.connection.dbapi_connection
        with watchdog.deadline(raw, timeout + GRACE) as guard:
            try:
                return read(connection)
            except DBAPIError as exc:
                failure = exc
            except SQLAlchemyError as exc:
                raise database.unreachable(url, exc) from exc
        assert failure is not None
        if guard is not None and guard.fired:
            connection.invalidate()
            raise Unavailable(
                f"the target {database.masked(url)} did not answer within {timeout + GRACE:g}s "
                "(TARGET_READ_TIMEOUT + 1s): the server or the network to it is not responding"
            ) from failure
        code = getattr(failure.orig, "pgcode", None)
        if code in (_LOCK_TIMEOUT, _STATEMENT_TIMEOUT):
            raise _blocked(url, connection, table, code) from failure
        if _sqlite_locked(failure):
            message = (
                f"the SQLite database {database.masked(url)} is locked by another process "
                f"(a migration or a restore) for longer than {timeout:g}s (TARGET_READ_TIMEOUT)"
            )
            _remember(url, message)
            raise TargetLocked(message) from failure
        if failure.connection_invalidated:
            raise _Dropped(failure) from failure
        raise database.unreachable(url, failure) from failure


def _sqlite_locked(exc: DBAPIError) -> bool:
    return "database is locked" in str(exc.orig)


def _remember(url: str, message: str) -> None:
    with _last_lock:
        _last_blocked[url] = (time.monotonic(), message)


def _found_blocked(url: str, within: float) -> bool:
    return _found_since(url, time.monotonic() - within) is not None


def _found_since(url: str, since: float) -> str | None:
    """What a read found blocking it, if it found it after ``since`` (monotonic)."""
    with _last_lock:
        seen = _last_blocked.get(url)
    return seen[1] if seen is not None and seen[0] >= since else None


def _exhausted(engine: Engine) -> bool:
    pool = engine.pool
    return isinstance(pool, QueuePool) and pool.checkedout() >= pool.size()


def _busy(url: str) -> TargetBusy:
    opts = database.options()
    message = (
        f"the target {database.masked(url)} is slow to answer: all {opts.read_pool} read "
        f"connections (TARGET_READ_POOL) stayed busy for {opts.read_timeout + 0.5:g}s "
        "(TARGET_READ_TIMEOUT)"
    )
    with _last_lock:
        seen = _last_blocked.get(url)
    if seen is not None and time.monotonic() - seen[0] < _REMEMBER:
        message += f"; the last read found that {seen[1]}"
    return TargetBusy(message)


_HOLDER = text(
    "SELECT a.pid, l.granted, a.usename, a.application_name, a.query, a.state, a.xact_start, "
    "now() AS now, pg_blocking_pids(a.pid) AS blockers "
    "FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
    "WHERE l.locktype = 'relation' AND l.relation = to_regclass(:table) "
    "AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()) "
    "AND l.mode = 'AccessExclusiveLock' AND l.pid <> pg_backend_pid() "
    "ORDER BY l.granted DESC, a.xact_start NULLS LAST LIMIT 1"
)


def _blocked(url: str, connection: Connection, table: str, code: str) -> TargetLocked:
    """What a read that timed out waited for, in one line (remembered for busy answers)."""
    timeout = database.options().read_timeout
    holder = None
    try:
        with watchdog.deadline(connection.connection.dbapi_connection, GRACE + timeout) as guard:
            holder = connection.execute(_HOLDER, {"table": table}).first()
        if guard is not None and guard.fired:
            connection.invalidate()
    except SQLAlchemyError:
        holder = None
    limit = f"reads of it give up after {timeout:g}s (TARGET_READ_TIMEOUT)"
    if holder is not None:
        who = _session(holder)
        if holder.granted:
            message = f"the version table {table} is locked by {who}: {limit}"
        else:
            behind = ", ".join(f"pid {pid}" for pid in holder.blockers or []) or "another session"
            message = (
                f"the version table {table} is locked: {who} waits for ACCESS EXCLUSIVE on it "
                f"behind {behind}: {limit}"
            )
    elif code == _LOCK_TIMEOUT:
        message = f"the version table {table} was locked for over {timeout:g}s (lock_timeout)"
    else:
        message = (
            f"the target {database.masked(url)} did not finish a read within {timeout:g}s "
            "(TARGET_READ_TIMEOUT, statement_timeout)"
        )
    _remember(url, message)
    return TargetLocked(message)


def _session(row: Any) -> str:
    """'pid 12 (VACUUM FULL alembic_version; postgres, psql, since 2026-... UTC, 35s ago)'."""
    query = re.sub(r"\s+", " ", row.query or "").strip() or "no query"
    if len(query) > _QUERY_SHOWN:
        query = query[: _QUERY_SHOWN - 1] + "…"
    if row.state and row.state != "active":
        query += f" [{row.state}]"  # 'idle in transaction': the query is its last one
    parts = [query, row.usename or "?", row.application_name or "no application name"]
    started: datetime | None = row.xact_start
    if started is not None:
        age = max(0.0, (row.now - started).total_seconds())
        since = started.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        parts.append(f"since {since}, {age:.0f}s ago")
    return f"pid {row.pid} ({parts[0]}; {', '.join(parts[1:])})"
