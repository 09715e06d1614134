"""The one door to the engine's offline SQL for the analysis.

``rendered_steps`` gives the SQL of each revision's step in one direction, or why it cannot
be rendered offline. A few revisions are rendered as one-step plans, together in one child
process (``migrations.render_many``); many are rendered as one plan over the whole history,
which runs env.py once instead of once per revision. The engine keeps what it rendered per
plan, so a preview shown again (and the analysis of its steps) is not rendered again.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from admin import migrations
from admin.errors import AdminError
from admin.history import dialect_of, one_step_plan
from admin.migrations import Direction, Project, SqlScript

# Past this many revisions to render, one pass over the whole history is cheaper.
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


def _whole_history(project: Project, url: str, direction: Direction) -> dict[str, Rendered]:
    graph = project.graph()
    if direction is Direction.UPGRADE:
        plan = migrations.make_plan(project, direction, "heads", ())
    else:
        plan = migrations.make_plan(project, direction, "base", graph.heads)
    return from_script(migrations.render(project, plan, url, dialect_of(url)))


def rendered_steps(
    project: Project, revision_ids: Iterable[str], url: str, direction: Direction
) -> dict[str, Rendered]:
    """The SQL of each revision's ``direction`` step alone, for ``url``'s dialect."""
    wanted = list(dict.fromkeys(revision_ids))
    found: dict[str, Rendered] = {}
    if len(wanted) > ONE_BY_ONE:
        try:
            found = _whole_history(project, url, direction)
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
