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

from collections import defaultdict

from admin.migrations.graph import Graph
from admin.migrations.toposort import FastRevisionMap


def upgrade_order(graph: Graph, current: tuple[str, ...]) -> tuple[str, ...] | None:
    """The ids an upgrade from ``current`` to the heads applies, in order; None: ask Alembic."""
    if not graph.load_order or any(rev.dependencies for rev in graph.revisions):
        return None
    applied = graph.ancestors(current)
    todo = {rev.id for rev in graph.revisions if rev.id not in applied}
    position = {rid: index for index, rid in enumerate(graph.load_order)}
    parents = {rid: tuple(dict.fromkeys(graph.by_id[rid].down_revisions)) for rid in todo}
    heads = sorted((rid for rid in graph.heads if rid in todo), key=position.__getitem__)
    children: dict[str, list[str]] = defaultdict(list)
    waiting: dict[str, int] = defaultdict(int)
    for rid in todo:
        for parent in parents[rid]:
            children[parent].append(rid)
            waiting[parent] += 1
    output: list[str] = []
    index = 0
    while heads:
        candidate = heads[index]
        if waiting[candidate]:
            above = FastRevisionMap._first_head_above(candidate, heads, children, todo, index)
            if above is None:
                return None
            index = above
            continue
        output.append(candidate)
        todo.discard(candidate)
        for parent in parents[candidate]:
            waiting[parent] -= 1
        to_add = [r for r in parents[candidate] if r in todo and r not in heads]
        if not to_add:
            del heads[index]
            index = max(index - 1, 0)
        else:
            heads[index] = to_add[0]
            heads.extend(to_add[1:])
    if todo:
        return None
    return tuple(reversed(output))
