"""Scale (issue 21): what is pending, from the panel's graph, in exactly the order of
Alembic's plan to the heads, on random histories with forks and merges (the status no longer
builds Alembic's revision map for it)."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from alembic.script.revision import RevisionMap
from test_toposort import maps, random_history

from admin.migrations.graph import Graph, Revision
from admin.migrations.pending import light_steps, upgrade_order


def _graph(
    alembic_map: RevisionMap,
    specs: list[tuple[str, tuple[str, ...], tuple[str, ...], tuple[str, ...]]],
) -> Graph:
    revisions = tuple(
        Revision(
            id=rid,
            message="",
            down_revisions=down,
            children=(),
            branch_labels=labels,
            dependencies=deps,
            create_date=None,
            file=f"{rid}.py",
            docstring="",
            sha256="",
            is_head=False,
            is_base=not down,
            is_branch_point=False,
            is_merge_point=len(down) > 1,
        )
        for rid, down, labels, deps in specs
    )
    return Graph(
        revisions=revisions,
        heads=tuple(alembic_map.heads),
        bases=tuple(alembic_map.bases),
        fingerprint="test",
        by_id={r.id: r for r in revisions},
        load_order=tuple(r.id for r in revisions),
    )


def _alembic(alembic_map: RevisionMap, current: tuple[str, ...]) -> list[str] | None:
    try:
        revs = alembic_map.iterate_revisions("heads", current, implicit_base=True)
        return [r.revision for r in reversed(list(revs))]
    except Exception:
        return None


Specs = list[tuple[str, tuple[str, ...], tuple[str, ...], tuple[str, ...]]]


def _random_case(rng: random.Random) -> tuple[Specs, RevisionMap, Graph, list[tuple[str, ...]]]:
    """A random history without dependencies, its Alembic map, its graph, and positions to
    plan from (base, the heads, single revisions, pairs)."""
    specs: Specs = [
        (rid, down, labels, ()) for rid, down, labels, _ in random_history(rng, rng.randint(3, 60))
    ]
    alembic_map, _ = maps(specs)
    ids = [s[0] for s in specs]
    positions: list[tuple[str, ...]] = [(), tuple(alembic_map.heads)]
    positions += [(rng.choice(ids),) for _ in range(8)]
    positions += [tuple(rng.sample(ids, 2)) for _ in range(4)]
    return specs, alembic_map, _graph(alembic_map, specs), positions


@pytest.mark.parametrize("seed", range(80))
def test_pending_in_alembics_order_on_random_histories(seed: int) -> None:
    rng = random.Random(seed)
    _, alembic_map, graph, positions = _random_case(rng)
    compared = 0
    for current in positions:
        expected = _alembic(alembic_map, current)
        if expected is None:  # Alembic refuses (one current revision above the other)
            continue
        ours = upgrade_order(graph, current)
        assert ours is not None and list(ours) == expected, current
        compared += 1
    assert compared >= 3


def _alembic_steps(
    alembic_map: RevisionMap, upgrade: bool, target: str, current: tuple[str, ...]
) -> list[tuple[str, tuple[str, ...], tuple[str, ...]]] | None:
    """What ``ScriptDirectory._upgrade_revs`` / ``_downgrade_revs`` plan, as light steps."""
    try:
        if upgrade:
            revs = alembic_map.iterate_revisions(target, current, implicit_base=True)
            ordered = reversed(list(revs))
            return [(r.revision, r._normalized_down_revisions, (r.revision,)) for r in ordered]
        revs = alembic_map.iterate_revisions(current, target, select_for_downgrade=True)
        return [(r.revision, (r.revision,), r._normalized_down_revisions) for r in revs]
    except Exception:
        return None


@pytest.mark.parametrize("seed", range(80))
def test_plans_without_alembics_map_are_alembics_plans(seed: int) -> None:
    """The plans the panel makes unasked (upgrade to the head(s), downgrade to base, one
    revision alone, a run between two revisions) are Alembic's own steps, from and to the
    same revisions, or left to Alembic."""
    rng = random.Random(500 + seed)
    specs, alembic_map, graph, positions = _random_case(rng)
    plans = [
        (current, upgrade, target)
        for current in positions
        for upgrade, target in ((True, "heads"), (True, "head"), (False, "base"))
    ]
    for rid, down, _, _ in specs:  # one revision alone, each way (its analysis)
        plans.append((down, True, rid))
        if len(down) == 1:
            plans.append(((rid,), False, down[0]))
    planned = 0
    for current, upgrade, target in plans:
        expected = _alembic_steps(alembic_map, upgrade, target, current)
        ours = light_steps(graph, upgrade, target, current)
        if ours is not None:
            assert ours == expected, (upgrade, target, current)
            planned += 1
        elif expected is not None:  # left to Alembic only where it must be
            several = target == "head" and len(graph.heads) > 1
            assert several or len(current) > 1, (upgrade, target, current)
    assert planned >= 10
    # A run between two revisions, each way (a page's analysis): where it is a line of
    # revisions, Alembic's steps; elsewhere (a merge on the way, a floor not below the
    # top) left to Alembic.
    ids = [rid for rid, *_ in specs]
    for _ in range(40):
        top, floor = rng.choice(ids), rng.choice([None, *ids])
        for current, upgrade, target in (
            ((floor,) if floor else (), True, top),
            ((top,), False, floor or "base"),
        ):
            ours = light_steps(graph, upgrade, target, current)
            if ours is not None:
                assert ours == _alembic_steps(alembic_map, upgrade, target, current)


def test_dependencies_are_left_to_alembic() -> None:
    rng = random.Random(7)
    specs = random_history(rng, 40)
    assert any(deps for *_, deps in specs)
    alembic_map, _ = maps(specs)
    assert upgrade_order(_graph(alembic_map, specs), ()) is None
    assert light_steps(_graph(alembic_map, specs), True, "heads", ()) is None


@pytest.mark.parametrize("seed", range(12))
def test_the_graph_without_alembics_map_is_alembics_graph(seed: int, tmp_path: Path) -> None:
    """A reload derives the graph from the files' declarations alone (no revision map):
    the same walk order, heads, bases, children and markers as Alembic's."""
    from projects import Rev, write_project

    from admin.migrations import catalog, graph, lazy, project

    rng = random.Random(1000 + seed)
    specs = random_history(rng, rng.randint(3, 60))
    revs = [
        Rev(rid, None if not down else (down[0] if len(down) == 1 else down), f"m {rid}")
        for rid, down, _, _ in specs
    ]
    # Files named so that the load order differs from the history's.
    ini = write_project(tmp_path, revs, id_file_names=True)
    opened = project.Project(ini)
    base = opened._base_directory()
    entries, _ = catalog.scan(opened._files(), {})
    derived = graph.from_entries(entries)
    assert derived is not None
    alembic_graph, alembic_kept = graph.from_script(lazy.script_directory(base, entries), entries)
    ours, kept = derived
    assert kept == alembic_kept
    assert ours == alembic_graph
