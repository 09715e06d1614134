"""What the history, a revision's page and the dashboard show of the analysis: badges,
squawk's findings and applied files that changed, ready for the templates."""

from __future__ import annotations

from typing import Any

from admin.analysis import applied, lint
from admin.analysis.risk import analyze
from admin.errors import AdminError
from admin.migrations import Direction, Project, read_current
from admin.runtime import Runtime

# How long a list waits for the background analysis before showing what the files alone
# tell (a small project is analysed within it; a large one is not held up). Only the first
# request for revisions waits: the page's polls while they are analysed do not.
LIST_PATIENCE = 1.5


def for_revisions(
    runtime: Runtime, project: Project, ids: list[str], *, wait: bool = True
) -> dict[str, Any]:
    """``risks`` and ``drift`` (by revision id) for a list of revisions; without ``wait``
    (lists: the history, the dashboard) what is not analysed within ``LIST_PATIENCE`` is
    marked provisional and analysed in the background."""
    settings = runtime.settings
    risks = analyze(
        project,
        settings.database_url,
        ids,
        var_dir=settings.var_dir,
        wait=wait,
        patience=None if wait else LIST_PATIENCE,
        patience_again=False,
    )
    with runtime.reads() as session:
        drift = applied.drift(session, settings, project, ids)
    return {"risks": risks, "drift": drift}


def for_revision(runtime: Runtime, project: Project, revision: str) -> dict[str, Any]:
    """A revision's badges each way, squawk's findings each way, and its drift."""
    settings = runtime.settings
    url = settings.database_url
    context = for_revisions(runtime, project, [revision])
    options = lint.options_for(settings)
    found: dict[str, list[lint.Finding]] = {}
    reason = None
    for direction in Direction:
        report = lint.lint(project, url, [revision], direction, options, var_dir=settings.var_dir)
        found[direction.value] = report.for_step(revision, direction.value)
        reason = report.reason
    context.update(
        risk=context["risks"].get(revision),
        lint_upgrade=found["upgrade"],
        lint_downgrade=found["downgrade"],
        lint_reason=reason,
    )
    return context


def applied_changes(
    runtime: Runtime, project: Project, current: tuple[str, ...] | None = None
) -> dict[str, applied.Drift]:
    """Applied revisions whose file changed since (the dashboard's notice); ``current``:
    the target's heads when the caller has just read them (not read twice per page)."""
    settings = runtime.settings
    if current is None:
        try:
            _, current = read_current(project, settings.database_url)
        except AdminError:  # an unreachable target: the dashboard says so elsewhere
            return {}
    with runtime.reads() as session:
        return applied.applied_drift(session, settings, project, current)
