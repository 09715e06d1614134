"""REQUIRE_REHEARSAL: which rehearsal clears an Apply (job submission asks, ``admin.jobs.queue``).

An upgrade requested from the panel or the API (an Apply) needs a successful rehearsal of
the same plan fingerprint (ordered revisions and file hashes: a changed file makes a new
one) and SQL fingerprint, restored from a backup taken at the target's current revision.
The command line and the entrypoint are not held to it: whoever runs them has the shell
(as for restores in production).
"""

from __future__ import annotations

from admin import migrations
from admin.errors import Conflict
from admin.jobs.protocol import heads_text
from admin.rehearsal import records
from admin.runtime import Runtime
from admin.store.models import Source

BOUND_SOURCES = (Source.WEB, Source.API)


class RehearsalRequired(Conflict):
    """REQUIRE_REHEARSAL: no successful rehearsal of this plan on a current backup."""

    title = "Rehearsal required"


def sql_fingerprint(rt: Runtime, project: migrations.Project, plan: migrations.Plan) -> str | None:
    """The plan's SQL fingerprint (the offline render is cached per plan)."""
    url = rt.settings.database_url
    dialect = "postgresql" if url.startswith("postgresql") else "sqlite"
    try:
        return migrations.render(project, plan, url, dialect).fingerprint
    except migrations.MigrationError:
        return None


def clearing(
    rt: Runtime, project: migrations.Project, plan: migrations.Plan, source: Source
) -> int | None:
    """The rehearsal that clears an upgrade of ``plan`` (None when none is required);
    RehearsalRequired when none does."""
    if not rt.settings.rehearsal_required or plan.is_empty or source not in BOUND_SOURCES:
        return None
    sql = sql_fingerprint(rt, project, plan)
    key = migrations.target_key(rt.settings.database_url)
    current = heads_text(plan.current)
    with rt.reads() as session:
        row = records.newest_for(session, key, plan.fingerprint, sql, succeeded=True)
        if row is not None and row.backup_revision == current:
            return row.id
    raise RehearsalRequired(
        "REQUIRE_REHEARSAL: this plan has no successful rehearsal with the same plan and SQL "
        f"fingerprints on a backup taken at the target's current revision ({current}); a "
        "changed revision file needs a new one. Rehearse it first: the preview's Rehearse "
        "button, POST /api/v1/rehearsals or `schema-admin rehearse TARGET`"
    )
