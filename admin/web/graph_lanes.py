"""The graph column of the history page: lanes for branches and merges, drawn as SVG.

The revisions come newest first (children before parents, as Alembic walks them). Each
row gets the lane (column) of its node and the line segments of its upper half (from the
lanes entering at the row's top edge to the middle) and lower half (from the middle to
the lanes leaving at the bottom edge), like ``git log --graph``:

- a revision nobody above waits for (a head) opens a lane;
- the lanes of its children end in its node; its first parent continues its lane;
- each further parent (a merge) gets a lane of its own, or joins a lane already
  waiting for that parent.

The layout depends only on ids and parents, so it is computed once per graph
fingerprint (``layout_for``). Nothing in the SVG comes from a revision file: only
numbers and class names, so it is safe markup.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field

from markupsafe import Markup

LANE_WIDTH = 14
ROW_HEIGHT = 28
NODE_RADIUS = 4
COLOURS = 8

Segment = tuple[int, int]


@dataclass(frozen=True)
class Row:
    """One revision's cell: its lane and the segments above and below its node."""

    column: int
    top: tuple[Segment, ...]
    bottom: tuple[Segment, ...]

    @property
    def width(self) -> int:
        """Lanes this row spans (at least the node's)."""
        columns = [self.column]
        for a, b in (*self.top, *self.bottom):
            columns += [a, b]
        return max(columns) + 1


@dataclass
class Layout:
    """Rows in the order of the revisions given, and where each id is."""

    rows: tuple[Row, ...]
    index: dict[str, int]
    width: int
    _svg: dict[tuple[int, str], Markup] = field(default_factory=dict, repr=False)

    def svg(self, position: int, classes: str = "") -> Markup:
        """The row's drawing (cached: rows are drawn on every page view)."""
        key = (position, classes)
        drawn = self._svg.get(key)
        if drawn is None:
            drawn = draw(self.rows[position], self.width, classes)
            self._svg[key] = drawn
        return drawn


def _free(lanes: list[str | None], taken: set[int]) -> int:
    for column, wanted in enumerate(lanes):
        if wanted is None and column not in taken:
            return column
    lanes.append(None)
    return len(lanes) - 1


def layout(revisions: Sequence[tuple[str, Sequence[str]]]) -> Layout:
    """Lanes for ``(id, parent ids)`` pairs given newest first."""
    lanes: list[str | None] = []
    rows: list[Row] = []
    index: dict[str, int] = {}
    for revision, parents in revisions:
        index[revision] = len(rows)
        incoming = [c for c, wanted in enumerate(lanes) if wanted == revision]
        column = incoming[0] if incoming else _free(lanes, set())
        top = tuple(
            (c, column if wanted == revision else c)
            for c, wanted in enumerate(lanes)
            if wanted is not None
        )
        for c in incoming:
            lanes[c] = None
        opened = {column}
        targets: list[int] = []
        if parents:
            lanes[column] = parents[0]
            targets.append(column)
            for parent in parents[1:]:
                waiting = [c for c, wanted in enumerate(lanes) if wanted == parent]
                if waiting:
                    targets.append(waiting[0])
                    continue
                lane = _free(lanes, opened)
                lanes[lane] = parent
                opened.add(lane)
                targets.append(lane)
        bottom = [(column, t) for t in targets]
        bottom += [
            (c, c) for c, wanted in enumerate(lanes) if wanted is not None and c not in opened
        ]
        while lanes and lanes[-1] is None:
            lanes.pop()
        rows.append(Row(column, top, tuple(sorted(set(bottom)))))
    width = max((row.width for row in rows), default=1)
    return Layout(tuple(rows), index, width)


def _x(column: int) -> int:
    return column * LANE_WIDTH + LANE_WIDTH // 2


def _line(x1: int, y1: int, x2: int, y2: int, column: int) -> str:
    return f'<line x1="{x1}" y1="{y1}" x2="{x2}" y2="{y2}" class="edge lane-{column % COLOURS}"/>'


def draw(row: Row, width: int, classes: str = "") -> Markup:
    """The SVG of one row, ``width`` lanes wide (the same for every row of a page)."""
    middle = ROW_HEIGHT // 2
    parts = []
    for a, b in row.top:
        # A lane keeps its colour; a lane ending in the node takes the node's.
        parts.append(_line(_x(a), 0, _x(b), middle, a))
    for a, b in row.bottom:
        parts.append(_line(_x(a), middle, _x(b), ROW_HEIGHT, b))
    node_classes = f"node lane-{row.column % COLOURS}"
    if classes:
        node_classes += " " + "".join(ch for ch in classes if ch.isalnum() or ch in " -_")
    parts.append(
        f'<circle cx="{_x(row.column)}" cy="{middle}" r="{NODE_RADIUS}" class="{node_classes}"/>'
    )
    pixels = max(width, 1) * LANE_WIDTH
    return Markup(
        f'<svg class="lanes" width="{pixels}" height="{ROW_HEIGHT}" '
        f'viewBox="0 0 {pixels} {ROW_HEIGHT}" aria-hidden="true" focusable="false">'
        + "".join(parts)
        + "</svg>"
    )


_cache: OrderedDict[str, Layout] = OrderedDict()
_cache_lock = threading.Lock()
_CACHE_SIZE = 4


def keep_only(fingerprint: str) -> None:
    """Forget the layouts of other graphs (the files were reloaded)."""
    with _cache_lock:
        for key in [key for key in _cache if key != fingerprint]:
            del _cache[key]


def layout_for(fingerprint: str, revisions: Sequence[tuple[str, Sequence[str]]]) -> Layout:
    """``layout`` of a graph, kept for its fingerprint (a changed file makes a new one)."""
    with _cache_lock:
        found = _cache.get(fingerprint)
        if found is not None:
            _cache.move_to_end(fingerprint)
            return found
    made = layout(revisions)
    with _cache_lock:
        _cache[fingerprint] = made
        while len(_cache) > _CACHE_SIZE:
            _cache.popitem(last=False)
    return made
