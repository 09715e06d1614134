"""Asking for a rehearsal, and the newest one of a plan as the preview and Apply show it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from admin import migrations
from admin.jobs.protocol import heads_text
from admin.jobs.queue import JobRequest
from admin.rehearsal import records
from admin.rehearsal.gate import RehearsalRequired, clearing, sql_fingerprint
from admin.runtime import Runtime
from admin.store.models import JobKind, Rehearsal, utcnow


def rehearsal_request(target: str | None, plan_fingerprint: str | None = None) -> JobRequest:
    """A rehearsal of the upgrade to ``target`` (default: heads) from where the target is."""
    return JobRequest(
        JobKind.REHEARSAL,
        target_revision=(target or "heads").strip() or "heads",
        plan_fingerprint=plan_fingerprint or None,
    )


@dataclass(frozen=True)
class Shown:
    """The newest rehearsal of a plan, as the preview and the Apply form show it."""

    rehearsal: Rehearsal
    backup_age: str | None
    at_current_revision: bool

    @property
    def clears(self) -> bool:
        return self.rehearsal.status == records.SUCCEEDED and self.at_current_revision


def _age(when: datetime | None) -> str | None:
    if when is None:
        return None
    seconds = max(0, int((utcnow() - when).total_seconds()))
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    if seconds < 172800:
        return f"{seconds // 3600} h"
    return f"{seconds // 86400} days"


def newest(rt: Runtime, plan: migrations.Plan, sql: str | None) -> Shown | None:
    """The newest rehearsal of ``plan`` (and ``sql``) on this target, and its backup's age."""
    if plan.is_empty:
        return None
    key = migrations.target_key(rt.settings.database_url)
    with rt.reads() as session:
        row = records.newest_for(session, key, plan.fingerprint, sql)
        if row is None:
            return None
        session.expunge(row)
    current = heads_text(plan.current)
    return Shown(row, _age(row.backup_taken_at), row.backup_revision == current)


__all__ = [
    "RehearsalRequired",
    "Shown",
    "clearing",
    "newest",
    "rehearsal_request",
    "sql_fingerprint",
]
