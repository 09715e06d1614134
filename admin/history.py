"""The history as the panel shows it: every revision with its markers, filtered and paged.

Markers come from the graph (head, base, branch point, merge point) and from where the
target database stands (*current*: its heads; *applied*: those and all their ancestors,
dependencies included, as Alembic counts them; *pending*: the rest). What depends only
on the graph (lanes, search keys) is computed once per graph fingerprint; the database
is read on each call (one short query) and may be unreachable: then the page says so
and shows the history without the database's markers.
"""

from __future__ import annotations

import re
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, TypeVar

from markupsafe import Markup

from admin import migrations
from admin.errors import AdminError, InvalidInput, NotFound
from admin.migrations import Direction, Graph, Project, Revision
from admin.migrations.database import is_postgresql
from admin.web import graph_lanes

PER_PAGE = 100
MAX_PER_PAGE = 500
MAX_QUERY = 100
# The history filtered to one side of where the database stands (``?state=pending``).
STATES = ("applied", "pending")
StateName = Literal["applied", "pending"]
_REVISION_ID = re.compile(r"^[0-9A-Za-z_]{1,64}$")


@dataclass(frozen=True)
class Position:
    """Where the target database stands, as far as the history needs it."""

    known: bool
    current: tuple[str, ...] = ()
    problem: str | None = None


def read_position(project: Project, url: str) -> Position:
    """The database's heads; an unreachable or missing database is a position, not an error."""
    try:
        _, current = migrations.read_current(project, url)
    except AdminError as exc:
        return Position(known=False, problem=str(exc))
    return Position(known=True, current=current)


def ancestors(graph: Graph, heads: tuple[str, ...]) -> frozenset[str]:
    """``heads`` and everything below them (parents and dependencies), as far as known."""
    return graph.ancestors(heads)


@dataclass(frozen=True)
class _Indexed:
    """What is computed once per graph: lanes and lower-cased search keys."""

    lanes: graph_lanes.Layout
    ids: tuple[str, ...]
    messages: tuple[str, ...]


_K = TypeVar("_K")
_V = TypeVar("_V")
_indexed: OrderedDict[str, _Indexed] = OrderedDict()
_applied: OrderedDict[tuple[str, tuple[str, ...]], frozenset[str]] = OrderedDict()
_lock = threading.Lock()
_CACHE_SIZE = 8


def _remember(cache: OrderedDict[_K, _V], key: _K, value: _V) -> None:
    with _lock:
        cache[key] = value
        while len(cache) > _CACHE_SIZE:
            cache.popitem(last=False)


def _index(graph: Graph) -> _Indexed:
    found = _indexed.get(graph.fingerprint)
    if found is None:
        found = _Indexed(
            lanes=graph_lanes.layout_for(
                graph.fingerprint, [(r.id, r.down_revisions) for r in graph.revisions]
            ),
            ids=tuple(r.id.lower() for r in graph.revisions),
            messages=tuple(r.message.casefold() for r in graph.revisions),
        )
        _remember(_indexed, graph.fingerprint, found)
    return found


@migrations.on_new_graph
def _prepare(graph: Graph) -> None:
    """The lanes, search keys and applied sets of a reloaded graph, before requests see it."""
    _index(graph)
    for current in migrations.recent_positions():
        if set(current) <= graph.by_id.keys():
            applied_set(graph, Position(known=True, current=current))
    # What was kept of the graphs before it goes: memory after a reload is what it was.
    with _lock:
        for fingerprint in [key for key in _indexed if key != graph.fingerprint]:
            del _indexed[fingerprint]
        for position in [key for key in _applied if key[0] != graph.fingerprint]:
            del _applied[position]
        for side in [side for side in _sides if side[0] != graph.fingerprint]:
            del _sides[side]
    graph_lanes.keep_only(graph.fingerprint)


def applied_set(graph: Graph, position: Position) -> frozenset[str] | None:
    """The revisions applied to the database (None when its position is unknown)."""
    if not position.known:
        return None
    key = (graph.fingerprint, tuple(sorted(position.current)))
    found = _applied.get(key)
    if found is None:
        found = ancestors(graph, position.current)
        _remember(_applied, key, found)
    return found


@dataclass(frozen=True)
class Entry:
    """One revision as a row of the history."""

    revision: Revision
    is_current: bool
    applied: bool | None
    lanes: Markup | None

    @property
    def state(self) -> Literal["applied", "pending"] | None:
        if self.applied is None:
            return None
        return "applied" if self.applied else "pending"

    @property
    def markers(self) -> list[str]:
        rev = self.revision
        names = []
        if rev.is_head:
            names.append("head")
        if self.is_current:
            names.append("current")
        if rev.is_base:
            names.append("base")
        if rev.is_branch_point:
            names.append("branch point")
        if rev.is_merge_point:
            names.append("merge point")
        if self.applied is not None:
            names.append("applied" if self.applied else "pending")
        return names


@dataclass(frozen=True)
class HistoryPage:
    entries: tuple[Entry, ...]
    query: str
    state: StateName | None
    page: int
    pages: int
    per_page: int
    matching: int
    total: int
    heads: tuple[str, ...]
    position: Position
    unknown_current: tuple[str, ...]

    @property
    def previous_page(self) -> int | None:
        return self.page - 1 if self.page > 1 else None

    @property
    def next_page(self) -> int | None:
        return self.page + 1 if self.page < self.pages else None

    @property
    def first_number(self) -> int:
        return (self.page - 1) * self.per_page + 1 if self.entries else 0

    @property
    def last_number(self) -> int:
        return (self.page - 1) * self.per_page + len(self.entries)


def clean_query(query: str | None) -> str:
    text = (query or "").strip()
    if len(text) > MAX_QUERY:
        raise InvalidInput(f"the filter is too long: at most {MAX_QUERY} characters")
    return text


def _matches(index: _Indexed, query: str) -> list[int]:
    if not query:
        return list(range(len(index.ids)))
    lowered = query.lower()
    folded = query.casefold()
    return [
        i
        for i, (rid, message) in enumerate(zip(index.ids, index.messages, strict=True))
        if rid.startswith(lowered) or folded in message
    ]


_sides: OrderedDict[tuple[str, tuple[str, ...], str], tuple[int, ...]] = OrderedDict()


def _side(graph: Graph, position: Position, applied: frozenset[str], state: str) -> Sequence[int]:
    """The rows (history order) on one side of where the database stands, kept per graph
    and position: a poll of the pending list does not walk the whole history again."""
    key = (graph.fingerprint, tuple(sorted(position.current)), state)
    found = _sides.get(key)
    if found is None:
        wanted = state == "applied"
        found = tuple(i for i, rev in enumerate(graph.revisions) if (rev.id in applied) is wanted)
        _remember(_sides, key, found)
    return found


def clean_state(state: str | None) -> StateName | None:
    """``applied``, ``pending`` or no state filter (400 for anything else)."""
    if not state:
        return None
    if state == "applied":
        return "applied"
    if state == "pending":
        return "pending"
    raise InvalidInput(f"state must be one of {', '.join(STATES)}, not {state[:20]!r}")


def history_page(
    project: Project,
    url: str,
    *,
    query: str | None = None,
    page: int = 1,
    per_page: int = PER_PAGE,
    state: str | None = None,
) -> HistoryPage:
    """One page of the history, newest first, optionally filtered by id prefix or message
    and by ``state`` (``applied`` or ``pending``: an unknown position matches nothing)."""
    if page < 1 or not 1 <= per_page <= MAX_PER_PAGE:
        raise InvalidInput(f"page must be 1 or more and per_page between 1 and {MAX_PER_PAGE}")
    text = clean_query(query)
    side = clean_state(state)
    graph = project.graph()
    index = _index(graph)
    position = read_position(project, url)
    applied = applied_set(graph, position)
    current = frozenset(position.current)
    chosen: Sequence[int]
    if side is None:
        chosen = _matches(index, text)
    elif applied is None:
        chosen = []
    else:
        chosen = _side(graph, position, applied, side)
        if text:
            matching = set(_matches(index, text))
            chosen = [i for i in chosen if i in matching]
    pages = max(1, -(-len(chosen) // per_page))
    if page > pages:
        raise NotFound(
            f"there is no page {page}: the history has {pages} page(s) of {per_page}"
            + (f" for the filter {text!r}" if text else "")
            + (f" of {side} revisions" if side else "")
        )
    window = chosen[(page - 1) * per_page : page * per_page]
    entries = []
    for i in window:
        rev = graph.revisions[i]
        is_current = rev.id in current
        drawing = None
        if not text and side is None:
            classes = "current" if is_current else ""
            drawing = index.lanes.svg(i, classes)
        entries.append(
            Entry(
                revision=rev,
                is_current=is_current,
                applied=None if applied is None else rev.id in applied,
                lanes=drawing,
            )
        )
    return HistoryPage(
        entries=tuple(entries),
        query=text,
        state=side,
        page=page,
        pages=pages,
        per_page=per_page,
        matching=len(chosen),
        total=len(graph),
        heads=graph.heads,
        position=position,
        unknown_current=tuple(r for r in position.current if r not in graph.by_id),
    )


def check_revision_id(value: str) -> str:
    """A revision id or prefix as typed in a URL (400 for anything else)."""
    if not _REVISION_ID.match(value or ""):
        raise InvalidInput(
            f"{value[:70]!r} is not a revision id: ids are letters, digits and underscores",
            title="Not a revision id",
        )
    return value


# One revision's page.


@dataclass(frozen=True)
class OneStep:
    """The SQL of one revision applied or reverted alone, or why it cannot be rendered."""

    direction: Direction
    start: tuple[str, ...]
    destination: str
    sql: str | None
    error: str | None


@dataclass(frozen=True)
class RevisionDetail:
    revision: Revision
    relative_path: str
    source: str
    parents: tuple[Revision, ...]
    children: tuple[Revision, ...]
    dependencies: tuple[Revision, ...]
    is_current: bool
    applied: bool | None
    position: Position
    dialect: str
    upgrade: OneStep
    downgrade: OneStep

    @property
    def state(self) -> Literal["applied", "pending"] | None:
        if self.applied is None:
            return None
        return "applied" if self.applied else "pending"


def dialect_of(url: str) -> str:
    return "postgresql" if is_postgresql(url) else "sqlite"


def one_step_plan(
    project: Project, revision: Revision, direction: Direction
) -> tuple[tuple[str, ...], str, migrations.Plan]:
    """``revision`` alone: upgrade from its parents, or downgrade to its (first) parent."""
    if direction is Direction.UPGRADE:
        start, destination = revision.down_revisions, revision.id
    else:
        start = (revision.id,)
        destination = revision.down_revisions[0] if revision.down_revisions else "base"
    return start, destination, migrations.make_plan(project, direction, destination, start)


def one_steps(project: Project, revision: Revision, url: str) -> tuple[OneStep, OneStep]:
    """``revision`` alone each way, rendered together (one child process)."""
    planned: list[tuple[Direction, tuple[str, ...], str, migrations.Plan | None, str | None]] = []
    for direction in (Direction.UPGRADE, Direction.DOWNGRADE):
        try:
            start, destination, plan = one_step_plan(project, revision, direction)
            planned.append((direction, start, destination, plan, None))
        except AdminError as exc:
            planned.append((direction, (), "", None, str(exc)))
    plans = [plan for _, _, _, plan, _ in planned if plan is not None]
    try:
        scripts = iter(migrations.render_many(project, plans, url, dialect_of(url)))
    except AdminError as exc:
        return (
            OneStep(Direction.UPGRADE, (), "", None, str(exc)),
            OneStep(Direction.DOWNGRADE, (), "", None, str(exc)),
        )
    results: list[OneStep] = []
    for direction, start, destination, planned_plan, error in planned:
        if planned_plan is None:
            results.append(OneStep(direction, start, destination, None, error))
            continue
        results.append(_one(direction, start, destination, next(scripts), revision))
    return results[0], results[1]


def _one(
    direction: Direction,
    start: tuple[str, ...],
    destination: str,
    script: migrations.SqlScript,
    revision: Revision,
) -> OneStep:
    for piece in script.steps:
        if piece.step.revision == revision.id:
            if piece.sql is None and piece.error is None:
                # The script could not be cut into steps: it is still this step's SQL.
                return OneStep(direction, start, destination, script.text, None)
            return OneStep(direction, start, destination, piece.sql, piece.error)
    return OneStep(direction, start, destination, None, "Alembic plans no step for it")


def _relative(project: Project, revision: Revision) -> str:
    try:
        return str(revision.path.relative_to(project.config_path.parent))
    except ValueError:
        return revision.path.name


def revision_detail(project: Project, url: str, revision_id: str) -> RevisionDetail:
    """Everything the revision page shows (404 for an unknown id, 400 for a malformed one)."""
    graph = project.graph()
    revision = graph.get(check_revision_id(revision_id))
    try:
        source = revision.path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise NotFound(f"the file of revision {revision.id} cannot be read: {exc}") from exc
    position = read_position(project, url)
    applied = applied_set(graph, position)
    upgrade, downgrade = one_steps(project, revision, url)

    def known(ids: tuple[str, ...]) -> tuple[Revision, ...]:
        return tuple(graph.by_id[i] for i in ids if i in graph.by_id)

    return RevisionDetail(
        revision=revision,
        relative_path=_relative(project, revision),
        source=source,
        parents=known(revision.down_revisions),
        children=known(revision.children),
        dependencies=known(revision.dependencies),
        is_current=revision.id in position.current,
        applied=None if applied is None else revision.id in applied,
        position=position,
        dialect=dialect_of(url),
        upgrade=upgrade,
        downgrade=downgrade,
    )
