"""The risk of each revision, each way: badges from its source and its rendered SQL.

``analyze(project, url, revision_ids)`` answers from the cache (by file sha256, dialect and
direction) and renders only what is missing, through ``rendering.rendered_steps``. The
SQL, when it renders, speaks for the dialect (a branch for SQLite only does not count on
PostgreSQL); what only the source can show (a raise in the downgrade, a narrowed type, a
live connection) is added from the file; a step that cannot be rendered offline falls back
on its source and says why it needs a live database.
"""

from __future__ import annotations

import re
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from admin.analysis import source
from admin.analysis.badges import Badge, BadgeSet, Kind, one_line
from admin.analysis.cache import Cache, cache_at
from admin.analysis.rendering import Rendered, rendered_steps
from admin.analysis.statements import sql_badges
from admin.history import dialect_of
from admin.migrations import Direction, Project, Revision

# Bump when the rules change: older cached results are then never read.
VERSION = 6
_IRREVERSIBLE_ERROR = re.compile(
    r"NotImplementedError|irreversible|cannot be (downgraded|reverted|undone)", re.I
)


@dataclass(frozen=True)
class StepRisk:
    """The badges of one revision's step in one direction."""

    revision: str
    direction: Direction
    badges: tuple[Badge, ...]
    error: str | None = None

    def has(self, kind: Kind) -> bool:
        return any(b.kind is kind for b in self.badges)

    @property
    def fails(self) -> bool:
        return any(b.fails for b in self.badges)

    @property
    def kinds(self) -> list[str]:
        return [b.kind.value for b in self.badges]


@dataclass(frozen=True)
class RevisionRisk:
    revision: str
    upgrade: StepRisk
    downgrade: StepRisk
    # From the file alone, while its SQL is analysed in the background.
    provisional: bool = False

    def step(self, direction: Direction) -> StepRisk:
        return self.upgrade if direction is Direction.UPGRADE else self.downgrade

    @property
    def badges(self) -> tuple[Badge, ...]:
        """What the history shows: the upgrade's badges (irreversible among them)."""
        return self.upgrade.badges


# Decoded results by cache key (the JSON in the cache, as objects: a warm page reads these).
_decoded: dict[str, StepRisk] = {}
# What the file alone tells, by cache key of its upgrade: a list whose revisions wait for the
# background analysis (a whole history rendered at 20,000 revisions takes many minutes)
# reads each file once, not on every request (a hundred files parsed per page: 0.3 s).
_PROVISIONAL_KEPT = 5_000
_provisional: OrderedDict[tuple[str, str], RevisionRisk] = OrderedDict()
_provisional_lock = threading.Lock()


def forget() -> None:
    """Drop what this process keeps in memory (the files in VAR_DIR stay): a cold start."""
    from admin.analysis import cache
    from admin.migrations.sql import forget_rendered

    _decoded.clear()
    with _provisional_lock:
        _provisional.clear()
    forget_rendered()
    with cache._caches_lock:
        cache._caches.clear()


def _key(revision: Revision, dialect: str, direction: Direction) -> str:
    return f"risk:{VERSION}:{revision.sha256}:{dialect}:{direction.value}"


def _read_source(revision: Revision) -> source.FileFacts:
    try:
        text = revision.path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        text = ""
    return source.read_file(text)


def _irreversible(
    revision: str, facts: source.FileFacts, direction: Direction, error: str | None
) -> Badge | None:
    badge = facts.irreversible
    proven = direction is Direction.DOWNGRADE and error and _IRREVERSIBLE_ERROR.search(error)
    if badge is None and error and proven:
        badge = Badge(Kind.IRREVERSIBLE, one_line(error, 160), fails=True)
    if badge is None:
        return None
    if direction is Direction.UPGRADE and badge.fails:
        # Named (objects): a proven failure, which the Apply form asks to confirm.
        return Badge(
            Kind.IRREVERSIBLE,
            f"once applied it cannot be undone: {badge.reason}",
            (revision,),
        )
    return badge


def combine(
    revision: str,
    facts: source.FileFacts,
    direction: Direction,
    rendered: Rendered | None,
    dialect: str,
    version_table: str,
    *,
    downgrade_error: str | None = None,
) -> tuple[Badge, ...]:
    """One step's badges from what its file and its SQL show."""
    side = facts.upgrade if direction is Direction.UPGRADE else facts.downgrade
    found = BadgeSet()
    error = rendered.error if rendered is not None else None
    found.extend(side.always)
    if rendered is not None and rendered.sql is not None:
        found.extend(sql_badges(rendered.sql, dialect, version_table))
    else:
        found.extend(side.badges)
    irreversible = _irreversible(
        revision, facts, direction, error if direction is Direction.DOWNGRADE else downgrade_error
    )
    if irreversible is not None:
        found.add(irreversible)
    if error and not (irreversible is not None and direction is Direction.DOWNGRADE):
        found.add(Badge(Kind.NEEDS_DATABASE, one_line(error, 200)))
    return found.result()


def analyze(
    project: Project,
    url: str,
    revision_ids: Iterable[str],
    *,
    var_dir: Path | None = None,
    rendered: Mapping[Direction, Mapping[str, Rendered]] | None = None,
    wait: bool = True,
    patience: float | None = None,
    patience_again: bool = True,
) -> dict[str, RevisionRisk]:
    """Both directions of each revision (unknown ids are left out); ``rendered`` hands in
    SQL already rendered (a preview's plan), so it is not rendered again. Without ``wait``,
    what is not analysed yet comes from the file alone (``provisional``) and is analysed in
    the background (``admin.analysis.background``); with ``patience``, the background
    analysis is waited for that many seconds first (a request that must not hang on a
    revision whose rendering does not end); without ``patience_again``, only by the first
    request for them since the background was last idle (a list polled every second while a
    long plan is analysed does not wait on every poll)."""
    graph = project.graph()
    revisions = [graph.by_id[r] for r in dict.fromkeys(revision_ids) if r in graph.by_id]
    dialect = dialect_of(url)
    cache: Cache = cache_at(var_dir)
    keys = {
        (rev.id, direction): _key(rev, dialect, direction)
        for rev in revisions
        for direction in Direction
    }
    known = cache.get_many(k for k in keys.values() if k not in _decoded)

    def unknown(rev: Revision) -> bool:
        return any(
            keys[(rev.id, d)] not in known and keys[(rev.id, d)] not in _decoded for d in Direction
        )

    missing = [rev for rev in revisions if unknown(rev)]
    provisional: dict[str, RevisionRisk] = {}
    if missing and patience is not None:
        known.update(_waited(project, url, var_dir, missing, keys, cache, patience, patience_again))
        missing = [rev for rev in missing if unknown(rev)]
    elif missing and not wait:
        from admin.analysis.background import ANALYZER

        ANALYZER.request(project, url, var_dir, [rev.id for rev in missing])
    if missing and (not wait or patience is not None):
        provisional = {rev.id: _from_source(project, rev, dialect) for rev in missing}
        revisions = [rev for rev in revisions if rev.id not in provisional]
    elif missing:
        known.update(_compute(project, url, dialect, missing, keys, rendered, cache))
    results: dict[str, RevisionRisk] = dict(provisional)
    for rev in revisions:
        steps = {}
        for direction in Direction:
            key = keys[(rev.id, direction)]
            step = _decoded.get(key)
            if step is None or step.revision != rev.id:
                entry = known[key]
                step = StepRisk(
                    rev.id,
                    direction,
                    tuple(Badge.from_json(b) for b in entry["badges"]),
                    entry.get("error"),
                )
                if len(_decoded) > 200_000:
                    _decoded.clear()
                _decoded[key] = step
            steps[direction] = step
        results[rev.id] = RevisionRisk(rev.id, steps[Direction.UPGRADE], steps[Direction.DOWNGRADE])
    return results


def _waited(
    project: Project,
    url: str,
    var_dir: Path | None,
    revisions: list[Revision],
    keys: dict[tuple[str, Direction], str],
    cache: Cache,
    patience: float,
    again: bool,
) -> dict[str, object]:
    """What the background analysis of ``revisions`` finds within ``patience`` seconds
    (none: when not ``again`` and they were all asked for already)."""
    from admin.analysis.background import ANALYZER

    new = ANALYZER.request(project, url, var_dir, [rev.id for rev in revisions])
    wanted = [keys[(rev.id, d)] for rev in revisions for d in Direction]
    deadline = time.monotonic() + (patience if new or again else 0.0)
    found = cache.get_many(wanted)
    while len(found) < len(wanted) and time.monotonic() < deadline:
        time.sleep(0.05)
        found = cache.get_many(wanted)
    return found


def _from_source(project: Project, rev: Revision, dialect: str) -> RevisionRisk:
    """What the file alone tells, until its SQL is analysed (kept in memory only, by the
    file's sha256: never taken for the analysis)."""
    key = (_key(rev, dialect, Direction.UPGRADE), project.version_table)
    with _provisional_lock:
        kept = _provisional.get(key)
        if kept is not None and kept.revision == rev.id:
            _provisional.move_to_end(key)
            return kept
    found = _read_from_source(project, rev, dialect)
    with _provisional_lock:
        _provisional[key] = found
        while len(_provisional) > _PROVISIONAL_KEPT:
            _provisional.popitem(last=False)
    return found


def _read_from_source(project: Project, rev: Revision, dialect: str) -> RevisionRisk:
    facts = _read_source(rev)
    steps = {
        direction: StepRisk(
            rev.id,
            direction,
            tuple(combine(rev.id, facts, direction, None, dialect, project.version_table)),
        )
        for direction in Direction
    }
    return RevisionRisk(rev.id, steps[Direction.UPGRADE], steps[Direction.DOWNGRADE], True)


def _compute(
    project: Project,
    url: str,
    dialect: str,
    revisions: list[Revision],
    keys: dict[tuple[str, Direction], str],
    given: Mapping[Direction, Mapping[str, Rendered]] | None,
    cache: Cache,
) -> dict[str, object]:
    ids = [rev.id for rev in revisions]
    sql: dict[Direction, dict[str, Rendered]] = {}
    for direction in Direction:
        have = dict((given or {}).get(direction, {}))
        need = [rid for rid in ids if rid not in have]
        if need:
            have.update(rendered_steps(project, need, url, direction))
        sql[direction] = have
    fresh: dict[str, object] = {}
    for rev in revisions:
        facts = _read_source(rev)
        down = sql[Direction.DOWNGRADE].get(rev.id)
        for direction in Direction:
            step = sql[direction].get(rev.id)
            badges = combine(
                rev.id,
                facts,
                direction,
                step,
                dialect,
                project.version_table,
                downgrade_error=down.error if down is not None else None,
            )
            fresh[keys[(rev.id, direction)]] = {
                "badges": [b.to_json() for b in badges],
                "error": step.error if step is not None else None,
            }
    cache.put_many(fresh)
    return fresh
