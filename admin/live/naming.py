"""Errors and waits in words: which lock, on what, held by whom, for how long.

Light on purpose (the job worker imports it): plain functions over the dictionaries the
sampler reads from ``pg_stat_activity`` / ``pg_locks``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

LOCK_TIMEOUT = "55P03"
STATEMENT_TIMEOUT = "57014"
DEADLOCK = "40P01"
# The longest statement quoted in an error or a summary.
QUOTE = 200

_RELATION = re.compile(r"relation (\d+) of database \d+")


def lock_mode(mode: str | None) -> str:
    """``AccessExclusiveLock`` as PostgreSQL's documentation and LOCK TABLE say it."""
    if not mode:
        return "a lock"
    words = re.findall(r"[A-Z][a-z]*", mode.removesuffix("Lock"))
    return " ".join(words).upper() or mode


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    if seconds < 60:
        return f"{seconds:.1f} s"
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def quote(statement: str | None, limit: int = QUOTE) -> str:
    text = " ".join((statement or "").split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def lock_target(waiting: Mapping[str, Any]) -> str:
    """``ACCESS EXCLUSIVE on clients`` (or on a transaction, a tuple...)."""
    what = waiting.get("relation") or waiting.get("locktype") or "an object"
    return f"{lock_mode(waiting.get('mode'))} on {what}"


def blocker(b: Mapping[str, Any]) -> str:
    """``pid 4242, crm-api, idle in transaction for 12 min (user app from 10.0.0.5):
    LOCK TABLE clients``."""
    parts = [f"pid {b.get('pid')}"]
    if b.get("application"):
        parts.append(str(b["application"]))
    state = b.get("state") or "state unknown"
    since = b.get("state_seconds")
    if b.get("xact_seconds") is not None and state.startswith("idle in transaction"):
        since = b.get("xact_seconds")
    parts.append(f"{state} for {duration(since)}" if since is not None else state)
    who = [f"user {b['user']}"] if b.get("user") else []
    if b.get("client"):
        who.append(f"from {b['client']}")
    text = ", ".join(parts) + (f" ({' '.join(who)})" if who else "")
    if b.get("query"):
        text += f": {quote(b['query'], 120)}"
    return text


def blockers(items: Sequence[Mapping[str, Any]]) -> str:
    if not items:
        return "no blocking session seen"
    return "blocked by " + "; ".join(blocker(b) for b in items)


def waited(waiting: Mapping[str, Any], seconds: float, items: Sequence[Mapping[str, Any]]) -> str:
    """``waited 8.2 s for ACCESS EXCLUSIVE on clients, blocked by pid 4242, ...``."""
    return f"waited {duration(seconds)} for {lock_target(waiting)}, {blockers(items)}"


def lock_timeout_error(
    lock_timeout: str | None,
    statement: str | None,
    waiting: Mapping[str, Any] | None,
    items: Sequence[Mapping[str, Any]],
) -> str:
    """A lock timeout with the relation, the mode, the blocker and the timeout in force."""
    timeout = f" (lock_timeout {lock_timeout})" if lock_timeout else ""
    what = lock_target(waiting) if waiting else "a lock"
    text = f"lock timeout{timeout}: gave up waiting for {what}"
    if waiting is not None or items:
        text += f", {blockers(items)}"
    if statement:
        text += f"; the statement was: {quote(statement)}"
    return text


def db_error(
    code: str | None,
    first_line: str,
    *,
    detail: str | None = None,
    statement: str | None = None,
    lock_timeout: str | None = None,
    statement_timeout: str | None = None,
    relation_name: Callable[[int], str | None] | None = None,
) -> str:
    """A database error as the job's error says it: named timeouts and deadlocks, and the
    SQLSTATE for everything else."""
    if code == LOCK_TIMEOUT:
        return f"[SQLSTATE {code}] " + lock_timeout_error(lock_timeout, statement, None, [])
    if code == STATEMENT_TIMEOUT and "statement timeout" in first_line:
        timeout = f" (statement_timeout {statement_timeout})" if statement_timeout else ""
        said = f": {quote(statement)}" if statement else ""
        return f"[SQLSTATE {code}] statement timeout{timeout}: the statement ran too long{said}"
    if code == DEADLOCK:
        sides = _deadlock_sides(detail or "", relation_name)
        said = f"; this job's statement: {quote(statement)}" if statement else ""
        return f"[SQLSTATE {code}] deadlock detected: {sides}{said}"
    return f"[SQLSTATE {code}] {first_line}" if code else first_line


def _deadlock_sides(detail: str, relation_name: Callable[[int], str | None] | None) -> str:
    """PostgreSQL's DETAIL ("Process 1 waits for ShareLock on ...; blocked by process 2.")
    with relation names instead of oids."""

    def named(match: re.Match[str]) -> str:
        name = relation_name(int(match.group(1))) if relation_name else None
        return f"relation {name}" if name else match.group(0)

    lines = [line.strip() for line in detail.splitlines() if line.strip()]
    if not lines:
        return "PostgreSQL gave no detail"
    lines = [re.sub(r"(\w+)Lock\b", lambda m: lock_mode(m.group(0)), line) for line in lines]
    return " ".join(_RELATION.sub(named, line) for line in lines)
