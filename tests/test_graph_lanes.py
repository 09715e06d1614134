"""The history's graph column: lanes computed in Python, drawn as SVG."""

from __future__ import annotations

import re
from pathlib import Path

from reading_support import CRM_INI, Rev, make_project

from admin import migrations
from admin.web import graph_lanes
from admin.web.graph_lanes import Row, layout


def _pairs(graph: migrations.Graph) -> list[tuple[str, tuple[str, ...]]]:
    return [(r.id, r.down_revisions) for r in graph.revisions]


def assert_joined(rows: tuple[Row, ...]) -> None:
    """Every lane leaving a row at the bottom enters the next row at the top, and back."""
    for upper, lower in zip(rows, rows[1:], strict=False):
        assert {b for _, b in upper.bottom} == {a for a, _ in lower.top}
    assert rows[0].top == ()
    assert rows[-1].bottom == ()


def test_a_line_stays_in_one_lane() -> None:
    result = layout([("c", ("b",)), ("b", ("a",)), ("a", ())])
    assert [row.column for row in result.rows] == [0, 0, 0]
    assert result.rows[0] == Row(0, (), ((0, 0),))
    assert result.rows[1] == Row(0, ((0, 0),), ((0, 0),))
    assert result.rows[2] == Row(0, ((0, 0),), ())
    assert result.width == 1 and result.index == {"c": 0, "b": 1, "a": 2}


def test_branch_and_merge_open_and_close_a_second_lane() -> None:
    # m merges x and y, which both come from a.
    result = layout([("m", ("x", "y")), ("x", ("a",)), ("y", ("a",)), ("a", ())])
    m, x, y, a = result.rows
    assert m.column == 0 and m.bottom == ((0, 0), (0, 1))
    assert x.column == 0 and x.top == ((0, 0), (1, 1))
    assert y.column == 1 and y.bottom == ((0, 0), (1, 1))
    # Both lanes end in the branch point.
    assert a.column == 0 and a.top == ((0, 0), (1, 0)) and a.bottom == ()
    assert result.width == 2
    assert_joined(result.rows)


def test_two_heads_get_two_lanes_until_their_branch_point() -> None:
    result = layout([("h1", ("b",)), ("h2", ("b",)), ("b", ())])
    assert [row.column for row in result.rows] == [0, 1, 0]
    assert result.rows[1].top == ((0, 0),)
    assert_joined(result.rows)


def test_a_merge_joins_a_lane_already_waiting_for_its_parent() -> None:
    # h's lane waits for p; m merges q and p: its second parent joins that lane.
    result = layout([("h", ("p",)), ("m", ("q", "p")), ("q", ("p",)), ("p", ())])
    h, m, q, p = result.rows
    assert (h.column, m.column) == (0, 1)
    assert (1, 0) in m.bottom and (0, 0) in m.bottom
    assert result.width == 2
    assert_joined(result.rows)


def test_the_crm_history_draws_its_branch_and_merge() -> None:
    graph = migrations.open_project(CRM_INI).graph()
    result = layout(_pairs(graph))
    assert result.width == 2
    merge = result.rows[result.index["b5f2c8d91e03"]]
    branch = result.rows[result.index["20240101000000"]]
    assert len(merge.bottom) == 2 and len(branch.top) == 2
    assert_joined(result.rows)


def test_generated_forks_merges_and_heads_always_join(tmp_path: Path) -> None:
    revisions: list[Rev] = [Rev("base0", None)]
    tip = "base0"
    for i in range(1, 8):
        left, right, merge = f"l{i}", f"r{i}", f"m{i}"
        revisions += [Rev(left, tip), Rev(right, tip), Rev(merge, (left, right))]
        tip = merge
    # Three unmerged heads at the end, one of them depending on an early revision.
    revisions += [Rev("h1", tip), Rev("h2", tip), Rev("h3", "l1")]
    graph = migrations.Project(make_project(tmp_path / "p", revisions)).graph()
    ids = [r.id for r in graph.revisions]
    # Alembic walks children before parents: what the lanes rely on.
    for rev in graph.revisions:
        assert all(ids.index(p) > ids.index(rev.id) for p in rev.down_revisions)
    result = layout(_pairs(graph))
    assert_joined(result.rows)
    assert result.width == 3
    assert sorted(result.rows[result.index[h]].column for h in ("h1", "h2", "h3")) == [0, 1, 2]


def test_svg_is_numbers_and_classes_only() -> None:
    result = layout([("m", ("x", "y")), ("x", ("a",)), ("y", ("a",)), ("a", ())])
    drawn = result.svg(0, "current")
    assert drawn.startswith('<svg class="lanes" width="28" height="28"')
    assert re.fullmatch(r'(<[a-z]+( [a-zA-Z0-9-]+="[0-9a-z -]*")*/?>|</svg>)+', str(drawn))
    assert 'class="node lane-0 current"' in drawn
    assert drawn.count("<line") == 2
    # Drawn once per row and class, then reused.
    assert result.svg(0, "current") is drawn


def test_layout_for_caches_by_fingerprint() -> None:
    pairs = [("b", ("a",)), ("a", ())]
    first = graph_lanes.layout_for("fp-test", pairs)
    assert graph_lanes.layout_for("fp-test", pairs) is first
    assert graph_lanes.layout_for("fp-other", pairs) is not first
