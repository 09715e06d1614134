"""A plan's safety, as the preview, the Apply form and job submission see it.

For each step: its badges in the plan's direction and squawk's findings; for the plan: a
summary of the badges, whether it can finish (``gate.blocked``), what an operator must type
to confirm a destructive or irreversible upgrade, and whether a backup is offered first.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.orm import Session

from admin.analysis import lint
from admin.analysis.badges import BACKUP_KINDS, CONFIRMED_KINDS, Badge, Kind
from admin.analysis.gate import Blocked, blocked
from admin.analysis.lint import Finding, LintReport
from admin.analysis.rendering import Rendered, from_script, rendered_steps
from admin.analysis.risk import StepRisk, analyze
from admin.config import Settings
from admin.migrations import Direction, Plan, Project, SqlScript

# Objects named in a confirmation phrase before it says "and N more".
PHRASE_OBJECTS = 3
# How long a job submission waits for its plan's analysis (a preview has done it already);
# past it, what the files alone show decides (a rendering that hangs never holds a request).
SUBMIT_PATIENCE = 15.0


@dataclass(frozen=True)
class PlanSafety:
    direction: Direction
    steps: dict[str, StepRisk]
    blocked: Blocked | None
    confirm_phrase: str | None
    report: LintReport | None

    def badges(self, revision: str) -> tuple[Badge, ...]:
        step = self.steps.get(revision)
        return step.badges if step is not None else ()

    @property
    def summary(self) -> list[tuple[Kind, int]]:
        """How many steps carry each badge, worst kind first."""
        counts = Counter(b.kind for step in self.steps.values() for b in step.badges)
        return sorted(counts.items(), key=lambda item: item[0].order)

    @property
    def flagged(self) -> list[StepRisk]:
        return [step for step in self.steps.values() if step.badges]

    @property
    def backup_default(self) -> bool:
        """Offer "take and verify a backup first" ticked (destructive, irreversible, data)."""
        return any(
            b.kind in BACKUP_KINDS and (b.kind is not Kind.IRREVERSIBLE or b.objects)
            for step in self.steps.values()
            for b in step.badges
        )

    def findings(self, revision: str) -> list[Finding]:
        if self.report is None:
            return []
        return self.report.for_step(revision, self.direction.value)


def confirm_phrase(plan: Plan, steps: dict[str, StepRisk]) -> str | None:
    """What an upgrade with destructive or irreversible steps asks to type: what it drops
    (``clients.passport_number``), or the irreversible revision's id."""
    if plan.direction is not Direction.UPGRADE:
        return None
    named: list[str] = []
    for step in plan.steps:
        risk = steps.get(step.revision)
        for badge in risk.badges if risk is not None else ():
            # An irreversible badge names its revision only when the downgrade raises; a
            # downgrade that merely does nothing is shown, not asked about.
            if badge.kind in CONFIRMED_KINDS:
                named += list(badge.objects)
    # What is dropped first, then the revisions that cannot be undone.
    named.sort(key=lambda name: name in plan.revision_ids)
    named = list(dict.fromkeys(named))
    if not named:
        return None
    shown = ", ".join(named[:PHRASE_OBJECTS])
    extra = len(named) - PHRASE_OBJECTS
    return shown + (f" and {extra} more" if extra > 0 else "")


def plan_safety(
    settings: Settings,
    project: Project,
    plan: Plan,
    *,
    script: SqlScript | None = None,
    session: Session | None = None,
    with_lint: bool = True,
) -> PlanSafety:
    """Everything the preview shows about a plan's risks (``script``: its rendered SQL)."""
    url = settings.database_url
    var_dir: Path = settings.var_dir
    rendered: dict[str, Rendered] = from_script(script) if script is not None else {}
    risks = analyze(
        project, url, plan.revision_ids, var_dir=var_dir, rendered={plan.direction: rendered}
    )
    steps = {rid: risks[rid].step(plan.direction) for rid in plan.revision_ids if rid in risks}
    report = None
    if with_lint and not plan.is_empty:
        report = lint.lint(
            project,
            url,
            plan.revision_ids,
            plan.direction,
            lint.options_for(settings),
            var_dir=var_dir,
            rendered=rendered,
        )
    return PlanSafety(
        direction=plan.direction,
        steps=steps,
        blocked=blocked(project, url, plan, session=session, var_dir=var_dir),
        confirm_phrase=confirm_phrase(plan, steps),
        report=report,
    )


@dataclass(frozen=True)
class StepView:
    """One step of a plan as its fragment shows it: SQL (or why none), badges, findings."""

    revision: str
    direction: Direction
    sql: str | None
    error: str | None
    badges: tuple[Badge, ...]
    findings: list[Finding]
    lint_reason: str | None


def step_view(
    settings: Settings, project: Project, revision: str, direction: Direction
) -> StepView:
    """One revision's step alone: its SQL, badges and squawk's findings."""
    url = settings.database_url
    piece = rendered_steps(project, [revision], url, direction)[revision]
    risk = analyze(project, url, [revision], var_dir=settings.var_dir)[revision].step(direction)
    report = lint.lint(
        project,
        url,
        [revision],
        direction,
        lint.options_for(settings),
        var_dir=settings.var_dir,
        rendered={revision: piece},
    )
    return StepView(
        revision=revision,
        direction=direction,
        sql=piece.sql,
        error=piece.error,
        badges=risk.badges,
        findings=report.for_step(revision, direction.value),
        lint_reason=report.reason,
    )


def required_phrase(settings: Settings, target: str) -> str | None:
    """What an upgrade to ``target`` from where the database stands asks to type, if
    anything (a target that does not plan is left to the job's own checks)."""
    from admin import migrations
    from admin.errors import AdminError

    try:
        project = migrations.open_project(settings.alembic_config, settings.cache_dir)
        _, current = migrations.read_current(project, settings.database_url)
        plan = migrations.make_plan(project, Direction.UPGRADE, target, current, max_age=0)
    except AdminError:
        return None
    risks = analyze(
        project,
        settings.database_url,
        plan.revision_ids,
        var_dir=settings.var_dir,
        patience=SUBMIT_PATIENCE,
    )
    steps = {rid: risks[rid].upgrade for rid in plan.revision_ids if rid in risks}
    return confirm_phrase(plan, steps)


def same_phrase(typed: str | None, phrase: str) -> bool:
    return " ".join((typed or "").split()) == " ".join(phrase.split())
