"""admin.migrations.toposort: Alembic's revision order without its quadratic cost.

The fast sort must give exactly Alembic's order (and Alembic's errors) on every history:
compared here with Alembic's own RevisionMap on random histories with forks, merges,
branch labels and cross-branch dependencies, for the full walk and for upgrade and
downgrade plans between random points of them. The same histories check the downgrade
step (``admin.migrations.plan.DowngradeStep``) against Alembic's.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from types import SimpleNamespace

import pytest
from alembic.runtime.migration import RevisionStep
from alembic.script.revision import Revision, RevisionMap
from projects import ancestor_visits

from admin.migrations.plan import DowngradeStep
from admin.migrations.toposort import FastRevisionMap

Spec = tuple[str, tuple[str, ...], tuple[str, ...], tuple[str, ...]]


def random_history(rng: random.Random, size: int) -> list[Spec]:
    """(id, down revisions, branch labels, dependencies) in load order."""
    specs: list[Spec] = []
    heads: list[str] = []
    labels = 0
    for n in range(size):
        rid = f"r{n:03d}"
        if not specs:
            down: tuple[str, ...] = ()
        elif len(heads) > 1 and rng.random() < 0.3:
            down = tuple(rng.sample(heads, 2))
        elif rng.random() < 0.2:
            down = (rng.choice(specs)[0],)  # a fork from an older revision
        else:
            down = (rng.choice(heads),)
        for parent in down:
            if parent in heads:
                heads.remove(parent)
        heads.append(rid)
        label: tuple[str, ...] = ()
        if down and len(down) == 1 and rng.random() < 0.1:
            labels += 1
            label = (f"label{labels}",)
        deps: tuple[str, ...] = ()
        if len(specs) > 3 and rng.random() < 0.15:
            deps = (rng.choice(specs[: len(specs) - 2])[0],)
        specs.append((rid, down, label, deps))
    # Load order is file order, not history order.
    rng.shuffle(specs)
    return specs


def maps(specs: list[Spec]) -> tuple[RevisionMap, RevisionMap]:
    def revisions() -> Iterator[Revision]:
        for rid, down, labels, deps in specs:
            yield Revision(
                rid,
                down if len(down) > 1 else (down[0] if down else None),
                branch_labels=labels,
                dependencies=deps,
            )

    return RevisionMap(revisions), FastRevisionMap(revisions)


def outcome(call: object) -> tuple[str, object]:
    """The ordered revisions, or the error (its words as a set: Alembic lists the revisions
    of some messages in set order, which differs between two maps)."""
    try:
        return "ok", [r.revision for r in call()]  # type: ignore[operator]
    except Exception as exc:
        words = sorted(str(exc).replace(",", " ").split())
        return "error", (type(exc).__name__, words)


@pytest.mark.parametrize("seed", range(60))
def test_the_fast_sort_gives_alembics_order_on_random_histories(seed: int) -> None:
    rng = random.Random(seed)
    specs = random_history(rng, rng.randint(3, 45))
    alembic_map, fast_map = maps(specs)
    walk = outcome(lambda: alembic_map.iterate_revisions("heads", "base"))
    if walk[0] == "error":  # a random dependency made a cycle: both must refuse alike
        assert outcome(lambda: fast_map.iterate_revisions("heads", "base")) == walk
        return
    assert outcome(lambda: fast_map.iterate_revisions("heads", "base")) == walk

    ids = [spec[0] for spec in specs]
    targets = ["heads", "base", *rng.sample(ids, min(6, len(ids)))]
    for _ in range(12):
        current = tuple(rng.sample(ids, min(len(ids), rng.choice([0, 1, 1, 2, 3]))))
        target = rng.choice(targets)
        up = outcome(
            lambda t=target, c=current: alembic_map.iterate_revisions(t, c, implicit_base=True)
        )
        assert (
            outcome(
                lambda t=target, c=current: fast_map.iterate_revisions(t, c, implicit_base=True)
            )
            == up
        ), (target, current)
        down = outcome(
            lambda t=target, c=current: alembic_map.iterate_revisions(
                c, t, select_for_downgrade=True
            )
        )
        assert (
            outcome(
                lambda t=target, c=current: fast_map.iterate_revisions(
                    c, t, select_for_downgrade=True
                )
            )
            == down
        ), (target, current)


def test_a_long_history_with_periodic_forks_is_sorted_in_linear_time() -> None:
    """5,000 revisions forking and merging every 10: Alembic's sort recomputes ancestor sets
    at each of the 500 forks; the fast one does not (counted, not timed)."""
    specs: list[Spec] = []
    previous = None
    for n in range(5000):
        if n % 10 == 5:
            specs.append((f"a{n}", (previous,), (), ()))
            specs.append((f"b{n}", (previous,), (), ()))
            previous = None
            continue
        down = (previous,) if previous else ((f"a{n - 1}", f"b{n - 1}") if n % 10 == 6 else ())
        specs.append((f"n{n}", down, (), ()))
        previous = f"n{n}"
    _, fast_map = maps(specs)
    with ancestor_visits(fast_map) as visits:
        walked = list(fast_map.iterate_revisions("heads", "base"))
    assert len(walked) == len(specs)
    assert visits[0] < 10 * len(specs)


@pytest.mark.parametrize("seed", range(40))
def test_downgrade_steps_leave_alembics_heads_on_random_histories(seed: int) -> None:
    """What a reverted revision leaves as heads (and whether its row is deleted), asked
    with the heads a downgrade can meet: the panel's step and Alembic's give the same."""
    rng = random.Random(seed)
    specs = random_history(rng, rng.randint(3, 45))
    alembic_map, _ = maps(specs)
    try:
        alembic_map.heads  # noqa: B018 (builds the map; a random cycle is refused here)
    except Exception:
        return
    module = SimpleNamespace(upgrade=None, downgrade=None)
    ids = [spec[0] for spec in specs]
    for rid in ids:
        revision = alembic_map.get_revision(rid)
        assert revision is not None
        revision.module = module  # type: ignore[attr-defined]
        theirs = RevisionStep(alembic_map, revision, False)  # type: ignore[arg-type]
        ours = DowngradeStep(alembic_map, revision, False)  # type: ignore[arg-type]
        for others in ([], *(rng.sample(ids, min(len(ids), k)) for k in (1, 1, 2, 3))):
            heads = {rid, *(o for o in others if o != rid)}
            assert ours._unmerge_to_revisions(heads) == theirs._unmerge_to_revisions(heads)
            assert ours.should_delete_branch(heads) == theirs.should_delete_branch(heads)
