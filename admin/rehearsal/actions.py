"""Asking for a rehearsal, and REQUIRE_REHEARSAL: which rehearsal clears an Apply."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from admin import migrations
from admin.errors import Conflict
from admin.jobs.protocol import heads_text
from admin.jobs.queue import JobRequest
from admin.rehearsal import records
from admin.runtime import Runtime
from admin.store.models import JobKind, Rehearsal, utcnow


class RehearsalRequired(Conflict):
    """REQUIRE_REHEARSAL: no successful rehearsal of this plan on a current backup."""

    title = "Rehearsal required"


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


def sql_fingerprint(rt: Runtime, project: migrations.Project, plan: migrations.Plan) -> str | None:
    """The plan's SQL fingerprint (the offline render is cached per plan)."""
    url = rt.settings.database_url
    dialect = "postgresql" if url.startswith("postgresql") else "sqlite"
    try:
        return migrations.render(project, plan, url, dialect).fingerprint
    except migrations.MigrationError:
        return None


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


def clearing(rt: Runtime, project: migrations.Project, plan: migrations.Plan) -> int | None:
    """The rehearsal that clears an upgrade of ``plan`` under REQUIRE_REHEARSAL (None when
    the setting is off); RehearsalRequired when none does."""
    if not rt.settings.rehearsal_required or plan.is_empty:
        return None
    sql = sql_fingerprint(rt, project, plan)
    key = migrations.target_key(rt.settings.database_url)
    current = heads_text(plan.current)
    with rt.reads() as session:
        row = records.newest_for(session, key, plan.fingerprint, sql, succeeded=True)
        if row is not None and row.backup_revision == current:
            return row.id
    raise RehearsalRequired(
        "REQUIRE_REHEARSAL: this plan has no successful rehearsal on a backup taken at the "
        f"target's current revision ({current}) with the same plan and SQL fingerprints "
        "(a changed revision file needs a new one): rehearse it first, from the preview, "
        "the API or `schema-admin rehearse`"
    )
