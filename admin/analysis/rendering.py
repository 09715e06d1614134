"""The one door to the engine's offline SQL for the analysis.

``rendered_steps`` gives the SQL of each revision's step in one direction, or why it cannot
be rendered offline. A few revisions are rendered as one-step plans, together in one child
process (``migrations.render_many``); many are rendered as one plan over the part of the
history that holds them (from below the lowest to the highest: a page of the history, the
pending revisions), which runs env.py once instead of once per revision. Alembic's offline
run costs more per step the longer the plan (each step walks its ancestors), so the plan
is never longer than the revisions asked for need: a page of 100 at 5,000 revisions renders
100 steps, not 5,000. The engine keeps what it rendered per
plan, so a preview shown again (and the analysis of its steps) is not rendered again.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from admin import migrations
from admin.errors import AdminError
from admin.history import dialect_of, one_step_plan
from admin.migrations import Direction, Graph, Plan, Project, SqlScript
from admin.migrations.renderer import RenderStopped

# Past this many revisions to render, one pass over their span is cheaper.
ONE_BY_ONE = 24


@dataclass(frozen=True)
class Rendered:
    """One step's SQL, or why it has none."""

    sql: str | None
    error: str | None


def from_script(script: SqlScript) -> dict[str, Rendered]:
    """Each step of a rendered plan, by revision (empty when the script was not cut)."""
    found = {}
    for piece in script.steps:
        if piece.sql is None and piece.error is None:
            return {}
        found[piece.step.revision] = Rendered(piece.sql, piece.error)
    return found


def span(graph: Graph, wanted: Iterable[str]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The smallest run that holds ``wanted``: (its tops, what lies below it). Upgrading
    from the second to the first runs ``wanted`` and the revisions between them, nothing
    else: the ancestors of the tops that are not below every revision asked for."""
    asked = {rid for rid in wanted if rid in graph.by_id}
    covering = graph.ancestors(sorted(asked))

    def parents(rid: str) -> tuple[str, ...]:
        rev = graph.by_id[rid]
        return tuple(p for p in (*rev.down_revisions, *rev.dependencies) if p in graph.by_id)

    inside: set[str] = set()
    # Oldest first (the graph lists newest first): a revision is inside when it was asked
    # for or stands on one that is.
    for rev in reversed(graph.revisions):
        if rev.id in covering and (rev.id in asked or any(p in inside for p in parents(rev.id))):
            inside.add(rev.id)
    below = covering - inside
    under_inside = {p for rid in inside for p in parents(rid)}
    under_below = {p for rid in below for p in parents(rid)}
    tops = tuple(sorted(rid for rid in inside if rid not in under_inside))
    floor = tuple(sorted(rid for rid in below if rid not in under_below))
    return tops, floor


def _spanning_plan(project: Project, wanted: list[str], direction: Direction) -> Plan:
    """One plan whose steps are the span of ``wanted`` (the whole history when the span has
    several tops or several revisions below it: Alembic's commands take one target)."""
    graph = project.graph()
    tops, floor = span(graph, wanted)
    if len(tops) == 1 and len(floor) <= 1:
        if direction is Direction.UPGRADE:
            plan = migrations.make_plan(project, direction, tops[0], floor)
        else:
            plan = migrations.make_plan(project, direction, floor[0] if floor else "base", tops)
        if set(wanted) <= set(plan.revision_ids):
            return plan
    if direction is Direction.UPGRADE:
        return migrations.make_plan(project, direction, "heads", ())
    return migrations.make_plan(project, direction, "base", graph.heads)


def _together(
    project: Project, wanted: list[str], url: str, direction: Direction
) -> dict[str, Rendered]:
    plan = _spanning_plan(project, wanted, direction)
    return from_script(migrations.render(project, plan, url, dialect_of(url)))


def rendered_steps(
    project: Project, revision_ids: Iterable[str], url: str, direction: Direction
) -> dict[str, Rendered]:
    """The SQL of each revision's ``direction`` step alone, for ``url``'s dialect."""
    wanted = list(dict.fromkeys(revision_ids))
    found: dict[str, Rendered] = {}
    if len(wanted) > ONE_BY_ONE:
        try:
            found = _together(project, wanted, url, direction)
        except RenderStopped:
            raise
        except AdminError:
            found = {}
    graph = project.graph()
    missing = [rid for rid in wanted if rid not in found and rid in graph.by_id]
    plans = {}
    for revision_id in missing:
        try:
            plans[revision_id] = one_step_plan(project, graph.by_id[revision_id], direction)[2]
        except AdminError as exc:
            found[revision_id] = Rendered(None, str(exc))
    if plans:
        try:
            scripts = migrations.render_many(project, list(plans.values()), url, dialect_of(url))
        except AdminError as exc:
            scripts = []
            found.update({rid: Rendered(None, str(exc)) for rid in plans})
        for revision_id, script in zip(plans, scripts, strict=False):
            found[revision_id] = _alone(script, revision_id)
    return {rid: found[rid] for rid in wanted if rid in found}


def _alone(script: SqlScript, revision_id: str) -> Rendered:
    """A one-step plan's SQL (the whole script when it could not be cut)."""
    for piece in script.steps:
        if piece.step.revision == revision_id:
            if piece.sql is None and piece.error is None:
                return Rendered(script.text, None)
            return Rendered(piece.sql, piece.error)
    return Rendered(None, "Alembic plans no step for it")
