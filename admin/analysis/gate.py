"""Plans that cannot finish are refused before anything runs.

A downgrade that crosses a revision whose downgrade is proven to raise would run the steps
above it and stop there, leaving the database half-way down. ``blocked`` finds that step
and says how far the database can go (the lowest target a downgrade reaches) and how to go
further: restore the backup taken before that revision was applied, named when the panel
has one. ``check_plan`` is what job submission calls (409, audited by the queue).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from admin.analysis import applied
from admin.analysis.risk import analyze
from admin.errors import Conflict
from admin.history import ancestors
from admin.migrations import Direction, Graph, Plan, Project, target_key
from admin.runtime import Runtime
from admin.store.models import Backup, BackupStatus


class Unfinishable(Conflict):
    """A step of the plan is proven to fail: nothing is run."""

    title = "Plan cannot finish"


@dataclass(frozen=True)
class Blocked:
    """Where a plan stops, and how far it could go."""

    revision: str
    reason: str
    lowest: tuple[str, ...]
    backup_id: int | None = None
    backup_revision: str | None = None

    @property
    def lowest_text(self) -> str:
        return ",".join(self.lowest) if self.lowest else "base"

    @property
    def message(self) -> str:
        further = f"restore the backup taken before {self.revision} was applied"
        if self.backup_id is not None:
            further += f" (backup {self.backup_id}, at {self.backup_revision or 'base'})"
        else:
            further += " (the panel has no verified backup of this database from before it)"
        return (
            f"this downgrade cannot finish: revision {self.revision} cannot be downgraded "
            f"({self.reason}). The lowest it can reach is {self.lowest_text}: downgrade to "
            f"that instead; to go further, {further}."
        )


def _before(plan: Plan, index: int) -> tuple[str, ...]:
    """The database's heads after the plan's steps before ``index``."""
    heads = list(plan.current)
    for step in plan.steps[:index]:
        heads = [h for h in heads if h not in step.from_revisions]
        heads += [r for r in step.to_revisions if r not in heads]
    return tuple(heads)


def backup_before(session: Session, graph: Graph, url: str, revision: str) -> Backup | None:
    """The newest verified backup of the target taken while ``revision`` was not applied."""
    rows = session.scalars(
        select(Backup)
        .where(
            Backup.target_key == target_key(url),
            Backup.status == BackupStatus.VERIFIED.value,
        )
        .order_by(Backup.id.desc())
        .limit(200)
    )
    for backup in rows:
        text = backup.revision or ""
        heads = tuple(h for h in text.split(",") if h and h != "base")
        if any(h not in graph.by_id for h in heads):
            continue
        if revision not in ancestors(graph, heads):
            return backup
    return None


def blocked(
    project: Project,
    url: str,
    plan: Plan,
    *,
    session: Session | None = None,
    var_dir: Path | None = None,
) -> Blocked | None:
    """The first step of a downgrade proven to fail, or None when the plan can finish."""
    if plan.direction is not Direction.DOWNGRADE or plan.is_empty:
        return None
    risks = analyze(project, url, plan.revision_ids, var_dir=var_dir)
    for index, step in enumerate(plan.steps):
        risk = risks.get(step.revision)
        if risk is None or not risk.downgrade.fails:
            continue
        reason = next(b.reason for b in risk.downgrade.badges if b.fails)
        backup = None
        if session is not None:
            backup = backup_before(session, project.graph(), url, step.revision)
        return Blocked(
            revision=step.revision,
            reason=reason,
            lowest=_before(plan, index),
            backup_id=backup.id if backup else None,
            backup_revision=backup.revision if backup else None,
        )
    return None


def check_plan(rt: Runtime, project: Project, plan: Plan | None) -> None:
    """Refuse (409) a plan with a step proven to fail, and in production a plan on a
    database whose applied revision files changed since (unacknowledged)."""
    if plan is None:
        return
    settings = rt.settings
    with rt.reads() as session:
        found = blocked(
            project, settings.database_url, plan, session=session, var_dir=settings.var_dir
        )
        if found is not None:
            raise Unfinishable(found.message)
        applied.refuse_drift(session, settings, project, plan.current)
