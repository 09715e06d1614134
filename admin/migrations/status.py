"""Where a target database stands against the scripts.

Read with ``MigrationContext.get_current_heads()`` on one connection: never through
Alembic's ``current`` command or the script directory's "all current" walk, which cost
O(N²) in the depth of the history.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from enum import StrEnum

from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection, inspect

from admin.errors import AdminError
from admin.migrations import database, reads
from admin.migrations.graph import Graph
from admin.migrations.pending import upgrade_order
from admin.migrations.plan import Direction, make_plan
from admin.migrations.project import MigrationError, Project, Revision, on_new_graph


class State(StrEnum):
    UP_TO_DATE = "up-to-date"
    BEHIND = "behind"
    EMPTY = "empty"
    SEVERAL_HEADS = "several-heads"
    UNKNOWN_REVISION = "unknown-revision"
    MISSING = "missing"
    UNREACHABLE = "unreachable"


# What `schema-admin status` exits with: 0 up to date, 3 pending, 1 error.
EXIT_CODES = {
    State.UP_TO_DATE: 0,
    State.BEHIND: 3,
    State.EMPTY: 3,
    State.SEVERAL_HEADS: 3,
    State.UNKNOWN_REVISION: 1,
    State.MISSING: 1,
    State.UNREACHABLE: 1,
}


@dataclass(frozen=True)
class Status:
    """The target's revision(s) against the head(s), with what to do about it."""

    state: State
    target: str
    dialect: str
    current: tuple[str, ...]
    heads: tuple[str, ...]
    pending: tuple[Revision, ...]
    message: str
    unknown: tuple[str, ...] = ()
    # Set when the server answered but the read could not finish in time (a lock on the
    # version table, every read connection busy): the state is then UNREACHABLE.
    blocked: bool = False

    @property
    def exit_code(self) -> int:
        if self.state is State.SEVERAL_HEADS and not self.pending:
            return 0
        return EXIT_CODES[self.state]

    @property
    def reachable(self) -> bool:
        return self.state not in (State.MISSING, State.UNREACHABLE)


def current_heads(
    connection: Connection, version_table: str = "alembic_version"
) -> tuple[str, ...]:
    """The revision(s) recorded in the target's version table (empty at base)."""
    context = MigrationContext.configure(connection, opts={"version_table": version_table})
    return tuple(context.get_current_heads())


def has_version_table(connection: Connection, version_table: str = "alembic_version") -> bool:
    return inspect(connection).has_table(version_table)


def read_current(project: Project, url: str) -> tuple[bool, tuple[str, ...]]:
    """(has version table, current heads) of the target; raises a clear error if unreachable,
    locked or busy (``admin.migrations.reads``: never longer than TARGET_READ_TIMEOUT + 1s)."""
    table = project.version_table

    def read(connection: Connection) -> tuple[bool, tuple[str, ...]]:
        # get_current_heads looks for the table itself: ask again only at base.
        heads = current_heads(connection, table)
        if heads:
            return True, heads
        return has_version_table(connection, table), ()

    found = reads.run(url, read, table=table)
    _seen(found[1])
    return found


# Where the targets were seen standing lately: what a reloaded graph is prepared for.
_POSITIONS_KEPT = 4
_positions: OrderedDict[tuple[str, ...], None] = OrderedDict()


def _seen(current: tuple[str, ...]) -> None:
    key = tuple(sorted(current))
    with _pending_lock:
        _positions[key] = None
        _positions.move_to_end(key)
        while len(_positions) > _POSITIONS_KEPT:
            _positions.popitem(last=False)


def recent_positions() -> list[tuple[str, ...]]:
    """The database positions (sorted heads) read lately, newest first."""
    with _pending_lock:
        return list(reversed(_positions))


def read_status(project: Project, url: str, *, max_age: float = 1.0) -> Status:
    """The target's status; an unreachable or missing database is a state, not an error."""
    graph = project.graph(max_age)
    heads = graph.heads

    def status(
        state: State,
        message: str,
        current: tuple[str, ...] = (),
        pending: tuple[Revision, ...] = (),
        unknown: tuple[str, ...] = (),
        blocked: bool = False,
    ) -> Status:
        return Status(
            state=state,
            target=database.masked(url),
            dialect=_dialect(url),
            current=current,
            heads=heads,
            pending=pending,
            message=message,
            unknown=unknown,
            blocked=blocked,
        )

    try:
        has_table, current = read_current(project, url)
    except database.TargetMissing as exc:
        return status(State.MISSING, str(exc))
    except (reads.TargetLocked, reads.TargetBusy) as exc:
        return status(State.UNREACHABLE, f"{exc}.", blocked=True)
    except AdminError as exc:
        return status(State.UNREACHABLE, f"{exc}. Check DATABASE_URL and that the server is up.")

    unknown = tuple(rev for rev in current if rev not in graph.by_id)
    if unknown:
        return status(
            State.UNKNOWN_REVISION,
            f"The database is at {', '.join(unknown)}, which no revision file has: it was "
            "migrated with files this panel does not have. Deploy the matching revision "
            "files, or stamp the database to a known revision once you know its real schema.",
            current=current,
            unknown=unknown,
        )
    pending = _pending(project, graph, current, max_age)
    if len(heads) > 1:
        return status(
            State.SEVERAL_HEADS,
            f"The scripts have {len(heads)} heads ({', '.join(heads)}): unmerged branches. "
            "Create a merge revision (alembic merge heads), or upgrade to 'heads'.",
            current,
            pending,
        )
    if not has_table:
        return status(
            State.EMPTY,
            f"The database has no version table yet: {len(pending)} revision(s) will create "
            "the schema. Review the SQL, then apply to head.",
            current,
            pending,
        )
    if pending:
        return status(
            State.BEHIND,
            f"{len(pending)} revision(s) pending. Review their SQL, take a backup, then "
            "apply to head.",
            current,
            pending,
        )
    return status(State.UP_TO_DATE, "The database is at the head revision: nothing to do.", current)


# What is pending, per graph and database heads: computed once per change of either, not
# per request (a dashboard polls every few seconds; 5,000 pending revisions cost a plan).
_PENDING_KEPT = 16
_pending_kept: OrderedDict[tuple[str, frozenset[str]], tuple[Revision, ...]] = OrderedDict()
_pending_lock = threading.Lock()


def _pending(
    project: Project, graph: Graph, current: tuple[str, ...], max_age: float
) -> tuple[Revision, ...]:
    # One graph for the whole answer: the watcher may swap in another meanwhile.
    by_id = graph.by_id
    if set(current) == set(graph.heads):
        return ()
    key = (graph.fingerprint, frozenset(current))
    with _pending_lock:
        kept = _pending_kept.get(key)
        if kept is not None:
            _pending_kept.move_to_end(key)
            return kept
    order = upgrade_order(graph, current)
    if order is not None:
        pending = _keep(key, tuple(by_id[rid] for rid in order))
    else:
        try:
            plan = make_plan(project, Direction.UPGRADE, "heads", current, max_age=max_age)
            pending = tuple(by_id[step.revision] for step in plan.steps)
        except (MigrationError, KeyError):  # KeyError: the files changed between the two
            pending = ()
        _keep(key, pending)
    return pending


def _keep(key: tuple[str, frozenset[str]], pending: tuple[Revision, ...]) -> tuple[Revision, ...]:
    with _pending_lock:
        _pending_kept[key] = pending
        while len(_pending_kept) > _PENDING_KEPT:
            _pending_kept.popitem(last=False)
    return pending


@on_new_graph
def _prepare_pending(graph: Graph) -> None:
    """What is pending from the positions seen lately, for a graph about to be swapped in
    (as far as the graph alone tells it: otherwise the first request asks Alembic)."""
    for current in recent_positions():
        key = (graph.fingerprint, frozenset(current))
        if set(current) == set(graph.heads) or not set(current) <= graph.by_id.keys():
            continue
        order = upgrade_order(graph, current)
        if order is not None:
            _keep(key, tuple(graph.by_id[rid] for rid in order))
    with _pending_lock:  # the pending lists of older graphs hold their revisions
        for key in [key for key in _pending_kept if key[0] != graph.fingerprint]:
            del _pending_kept[key]


def _dialect(url: str) -> str:
    return "postgresql" if database.is_postgresql(url) else "sqlite"
