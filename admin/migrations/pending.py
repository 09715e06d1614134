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
"""

from __future__ import annotations

from admin.migrations.graph import Graph
from admin.migrations.toposort import walk


def upgrade_order(graph: Graph, current: tuple[str, ...]) -> tuple[str, ...] | None:
    """The ids an upgrade from ``current`` to the heads applies, in order; None: ask Alembic."""
    if not graph.load_order or any(rev.dependencies for rev in graph.revisions):
        return None
    applied = graph.ancestors(current)
    todo = {rev.id for rev in graph.revisions if rev.id not in applied}
    position = {rid: index for index, rid in enumerate(graph.load_order)}
    parents = {rid: tuple(dict.fromkeys(graph.by_id[rid].down_revisions)) for rid in todo}
    heads = sorted((rid for rid in graph.heads if rid in todo), key=position.__getitem__)
    order = walk(todo, parents, heads)
    return None if order is None else tuple(reversed(order))
