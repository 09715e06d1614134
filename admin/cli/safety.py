"""What `schema-admin migrate` says and asks before a risky upgrade.

The plan's destructive and irreversible steps are named on stderr with their reasons; in
production such an upgrade needs ``--confirm`` with what it drops, as the panel's Apply
form asks for it typed.
"""

from __future__ import annotations

from admin import migrations
from admin.analysis import plans
from admin.analysis.badges import CONFIRMED_KINDS
from admin.analysis.risk import analyze
from admin.cli import target
from admin.config import Settings
from admin.errors import AdminError, InvalidInput
from admin.migrations import Direction


def check_upgrade(settings: Settings, target_revision: str, confirm: str | None) -> None:
    """Name the risky steps; refuse (exit 1) a production run without ``--confirm``."""
    try:
        project = target.project(settings)
        _, current = migrations.read_current(project, settings.database_url)
        plan = migrations.make_plan(project, Direction.UPGRADE, target_revision, current)
    except AdminError:
        return  # the run itself says what is wrong with the target
    risks = analyze(project, settings.database_url, plan.revision_ids, var_dir=settings.var_dir)
    steps = {rid: risks[rid].upgrade for rid in plan.revision_ids if rid in risks}
    for rid, step in steps.items():
        for badge in step.badges:
            if badge.kind in CONFIRMED_KINDS:
                target.note(f"{rid}: [{badge.kind.value}] {badge.reason}")
    phrase = plans.confirm_phrase(plan, steps)
    if phrase is None or plans.same_phrase(confirm, phrase):
        return
    if settings.is_production:
        raise InvalidInput(
            f"this upgrade drops data or cannot be undone: in production pass --confirm "
            f"'{phrase}' to run it"
        )
