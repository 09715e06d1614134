"""The backup gate: in production (or with BACKUP_BEFORE_MIGRATE=true, or when the requester
ticked "take and verify a backup first") an upgrade or downgrade job first takes and
verifies a backup; if that fails, no SQL of the migration runs.

``admin.jobs.worker`` runs ``before_migration`` under the migration lock, before the
migration's first statement, so the backup holds exactly the state the migration starts
from. The backup's id reaches jobs.backup_id (the job's page and its JobFinished audit
event link it); the backup row names the job it protected.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from admin.backups.errors import BackupFailed
from admin.backups.handlers import take_and_verify
from admin.errors import AdminError

if TYPE_CHECKING:
    from admin.jobs.worker import Context

REASON = "before-migrate"


class GateFailed(BackupFailed):
    """The backup a migration needs first failed: the migration did not start."""

    title = "Backup failed"


def before_migration(ctx: Context) -> None:
    """Take and verify a backup: the settings gate migrations on one, or the requester
    asked for one (the Apply form's "take and verify a backup first", job option
    ``backup``); the worker calls this only then."""
    settings = ctx.settings
    if settings.backups_gate_migrations:
        why = "production" if settings.is_production else "BACKUP_BEFORE_MIGRATE=true"
    else:
        why = "asked for when the job was submitted"
    ctx.out.log(f"backup gate ({why}): taking and verifying a backup before any migration SQL")
    try:
        backup_id, _ = take_and_verify(ctx, reason=REASON, fmt=settings.backup_format)
    except AdminError as exc:
        raise GateFailed(
            f"backup failed: {exc} (the migration was not started: no SQL was run)"
        ) from None
    ctx.out.log(f"backup gate passed: backup {backup_id} is verified; migrating")
