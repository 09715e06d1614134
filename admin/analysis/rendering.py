"""The one door to the engine's offline SQL for the analysis (swap in a batch renderer here).

``rendered_steps`` gives the SQL of each revision's step in one direction, or why it cannot
be rendered offline. A few revisions are rendered one by one (``history.one_step``); many
are rendered as one plan over the whole history, which runs env.py once instead of once per
revision. ``render_plan`` keeps the last rendered plans, so a preview shown again (and the
analysis of its steps) does not render them again.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass

from admin import migrations
from admin.errors import AdminError
from admin.history import dialect_of, one_step
from admin.migrations import Direction, Plan, Project, SqlScript

# Past this many revisions to render, one pass over the whole history is cheaper.
ONE_BY_ONE = 24
_PLANS = 16


@dataclass(frozen=True)
class Rendered:
    """One step's SQL, or why it has none."""

    sql: str | None
    error: str | None


_plans: OrderedDict[tuple[object, ...], SqlScript] = OrderedDict()
_lock = threading.Lock()


def _env_stamp(project: Project) -> int:
    try:
        return (project.config_path.parent / "env.py").stat().st_mtime_ns
    except OSError:
        return 0


def render_plan(project: Project, plan: Plan, url: str, dialect: str) -> SqlScript:
    """``migrations.render`` with the last plans kept (the plan fingerprint binds the files)."""
    key = (str(project.config_path), plan.fingerprint, plan.current, url, _env_stamp(project))
    with _lock:
        found = _plans.get(key)
        if found is not None:
            _plans.move_to_end(key)
            return found
    script = migrations.render(project, plan, url, dialect)
    with _lock:
        _plans[key] = script
        while len(_plans) > _PLANS:
            _plans.popitem(last=False)
    return script


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
    return from_script(render_plan(project, plan, url, dialect_of(url)))


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
    for revision_id in wanted:
        if revision_id in found or revision_id not in graph.by_id:
            continue
        step = one_step(project, graph.by_id[revision_id], direction, url)
        found[revision_id] = Rendered(step.sql, step.error)
    return {rid: found[rid] for rid in wanted if rid in found}
