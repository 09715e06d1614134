"""What is pending, in the order an upgrade to the heads runs it, from the panel's graph.

Alembic's plan (``make_plan(..., "heads", current)``) builds Alembic's whole revision map
first: seconds at 20,000 revisions, and memory the web process then keeps. The status needs
only the order of the revisions not applied, which follows from the graph: the revisions
above where the database stands (Alembic's ``needs``: every revision less the ancestors of
the current heads), sorted as ``FastRevisionMap`` sorts them (the same heads in load order,
the same child counters, the same walk up to the first current head above a waiting one),
then reversed. A history with dependencies (``depends_on``: Alembic normalises them into
the edges) or a case the walk cannot settle returns None: then Alembic's plan decides.
tests/test_scale_pending.py compares it with Alembic's plan on random histories.

``light_steps`` gives, the same way, the steps of the plans the panel makes without anyone
asking (the dashboard's Apply plan to the head, the background analysis's whole history
each way, a line of revisions each way and its revisions one at a time), so the web
process never builds Alembic's map for them; other plans ask Alembic.
"""

from __future__ import annotations

from collections.abc import Iterable

from admin.migrations.graph import Graph
from admin.migrations.toposort import walk

# (revision, from revisions, to revisions): what Alembic's RevisionStep says of a step.
LightStep = tuple[str, tuple[str, ...], tuple[str, ...]]


def upgrade_order(graph: Graph, current: tuple[str, ...]) -> tuple[str, ...] | None:
    """The ids an upgrade from ``current`` to the heads applies, in order; None: ask Alembic."""
    if not graph.load_order or any(rev.dependencies for rev in graph.revisions):
        return None
    applied = graph.ancestors(current)
    todo = {rev.id for rev in graph.revisions if rev.id not in applied}
    order = _sorted(graph, todo, graph.heads)
    return None if order is None else tuple(reversed(order))


def _sorted(graph: Graph, todo: set[str], heads: Iterable[str]) -> list[str] | None:
    """``todo`` newest first as ``FastRevisionMap`` sorts it from ``heads``."""
    position = {rid: index for index, rid in enumerate(graph.load_order)}
    parents = {rid: _parents(graph, rid) for rid in todo}
    return walk(todo, parents, sorted({h for h in heads if h in todo}, key=position.__getitem__))


def _parents(graph: Graph, rid: str) -> tuple[str, ...]:
    # Alembic's ``_normalized_down_revisions`` when there are no dependencies.
    return tuple(dict.fromkeys(graph.by_id[rid].down_revisions))


def light_steps(
    graph: Graph, upgrade: bool, target: str, current: tuple[str, ...]
) -> list[LightStep] | None:
    """The steps of an upgrade to ``heads`` (or ``head``, with one head), a downgrade to
    ``base``, or one revision's step alone (up from its parents, down to its only parent)
    from ``current``, as Alembic's plan gives them; None for any other plan, a
    history with dependencies, or a position Alembic would refuse (one current revision
    below another): Alembic then decides, with its words."""
    if not graph.load_order or any(rev.dependencies for rev in graph.revisions):
        return None
    if any(rid not in graph.by_id for rid in current) or _overlapping(graph, current):
        return None
    if upgrade and (target == "heads" or target == "head" and len(graph.heads) == 1):
        order = upgrade_order(graph, current)
        return None if order is None else [(rid, _parents(graph, rid), (rid,)) for rid in order]
    if not upgrade and target == "base":
        down = _sorted(graph, set(graph.ancestors(current)), current)
        return None if down is None else [(rid, (rid,), _parents(graph, rid)) for rid in down]
    # One revision alone (what its analysis renders): up from its parents, down to its parent.
    if upgrade and target in graph.by_id and set(current) == set(_parents(graph, target)):
        return [(target, _parents(graph, target), (target,))]
    if not upgrade and len(current) == 1 and _parents(graph, current[0]) == (target,):
        return [(current[0], current, (target,))]
    # A line of revisions (what the analysis renders of a page or of the pending ones): up
    # from its floor to its top, down from its top to its floor; a line has one order only.
    if upgrade and target in graph.by_id and len(current) <= 1:
        line = _line(graph, target, current[0] if current else None)
        return None if line is None else [(r, _parents(graph, r), (r,)) for r in reversed(line)]
    if not upgrade and len(current) == 1 and (target == "base" or target in graph.by_id):
        line = _line(graph, current[0], None if target == "base" else target)
        return None if line is None else [(r, (r,), _parents(graph, r)) for r in line]
    return None


def _line(graph: Graph, top: str, floor: str | None) -> list[str] | None:
    """``top`` and the revisions below it down to ``floor`` (left out; None: to the base),
    top first, when each has one parent (no merge on the way); else None."""
    line: list[str] = []
    rid: str | None = top
    while rid != floor:
        if rid is None:  # the base passed without meeting the floor
            return None
        parents = _parents(graph, rid)
        if len(parents) > 1:
            return None
        line.append(rid)
        rid = parents[0] if parents else None
    return line


def _overlapping(graph: Graph, current: tuple[str, ...]) -> bool:
    if len(current) < 2:
        return False
    return any(rid in graph.ancestors([o for o in current if o != rid]) for rid in current)
