"""The revision graph as the panel shows it: every revision, its relations and markers.

Built from Alembic's own revision map (``from_script``: the walk order, heads, branch and
merge points exactly as Alembic computes them) the first time a set of files is seen, and
kept with the catalog (``to_cache`` / ``from_cache``, keyed by the files' content), so a
restart with unchanged files builds it without Alembic's map: O(N) instead of Alembic's
topological walk.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from alembic.script import Script, ScriptDirectory

from admin.migrations import toposort
from admin.migrations.catalog import Entry
from admin.migrations.errors import MigrationError, UnknownRevision

_CREATE_DATE = re.compile(r"^Create Date:\s*(.+?)\s*$", re.MULTILINE)
_HEAD, _BASE, _BRANCH_POINT, _MERGE_POINT = 1, 2, 4, 8


@dataclass(frozen=True, slots=True)
class Revision:
    """One revision file, as the panel shows it (slotted: 50,000 of them stay light)."""

    id: str
    message: str
    down_revisions: tuple[str, ...]
    children: tuple[str, ...]
    branch_labels: tuple[str, ...]
    dependencies: tuple[str, ...]
    create_date: datetime | None
    file: str
    docstring: str
    sha256: str
    is_head: bool
    is_base: bool
    is_branch_point: bool
    is_merge_point: bool

    @property
    def path(self) -> Path:
        """The revision's file (kept as text: a Path object per revision weighs more)."""
        return Path(self.file)


@dataclass(frozen=True)
class Graph:
    """Every revision, newest first (Alembic's walk order), and what it knows of them."""

    revisions: tuple[Revision, ...]
    heads: tuple[str, ...]
    bases: tuple[str, ...]
    fingerprint: str
    by_id: dict[str, Revision] = field(repr=False)
    # Revision ids in the order Alembic loads their files (its map's order: ties in its
    # topological sort are broken by it).
    load_order: tuple[str, ...] = field(default=(), repr=False)

    def __len__(self) -> int:
        return len(self.revisions)

    def ancestors(self, heads: Sequence[str]) -> frozenset[str]:
        """``heads`` and everything below them (parents and dependencies), as far as known."""
        seen: set[str] = set()
        stack = [rev for rev in heads if rev in self.by_id]
        while stack:
            rev = stack.pop()
            if rev in seen:
                continue
            seen.add(rev)
            known = self.by_id[rev]
            stack.extend(p for p in (*known.down_revisions, *known.dependencies) if p in self.by_id)
        return frozenset(seen)

    def get(self, revision_id: str) -> Revision:
        """A revision by its full id or a unique prefix of it."""
        found = self.by_id.get(revision_id)
        if found is not None:
            return found
        if not re.fullmatch(r"[0-9A-Za-z_]{1,64}", revision_id or ""):
            raise UnknownRevision(f"{_shown(revision_id)} is not a revision id")
        matches = [rid for rid in self.by_id if rid.startswith(revision_id)]
        if len(matches) == 1:
            return self.by_id[matches[0]]
        if matches:
            shown = ", ".join(sorted(matches)[:5])
            raise MigrationError(
                f"{revision_id!r} is ambiguous: it starts {len(matches)} revisions ({shown}); "
                "give more characters"
            )
        raise UnknownRevision(f"no revision file has the id {revision_id!r}")

    def resolve(self, value: str) -> tuple[str, ...]:
        """Where a database stands, as a person names it: ``base``, ``head``/``heads``, or
        comma-separated ids (unique prefixes allowed; a repeated id counts once)."""
        value = value.strip()
        if value in ("", "base"):
            return ()
        if value == "heads":
            return self.heads
        if value == "head":
            if len(self.heads) != 1:
                raise MigrationError(
                    f"the scripts have {len(self.heads)} heads ({', '.join(self.heads)}): "
                    "name one revision, or 'heads'"
                )
            return self.heads
        return tuple(dict.fromkeys(self.get(part.strip()).id for part in value.split(",")))


def _shown(value: str | None) -> str:
    """A value typed by someone, safe to quote in a one-line message."""
    text = repr((value or "")[:60])
    return text + ("…" if value and len(value) > 60 else "")


def content_fingerprint(entries: Sequence[Entry]) -> str:
    """What the graph is made of: every revision id with its file's sha256."""
    digest = hashlib.sha256()
    for revision, sha256 in sorted((e.revision, e.sha256) for e in entries):
        digest.update(f"{revision}:{sha256}\n".encode())
    return digest.hexdigest()


def create_date(text: str) -> datetime | None:
    match = _CREATE_DATE.search(text or "")
    if not match:
        return None
    try:
        return datetime.fromisoformat(match.group(1).strip())
    except ValueError:
        return None


def _message(doc: str) -> str:
    # Alembic's Script.doc: the docstring's first paragraph.
    return re.split("\n\n", doc)[0]


def _revision(entry: Entry, derived: dict[str, Any]) -> Revision:
    docstring = (entry.doc or "").strip()
    flags = derived["flags"]
    return Revision(
        id=entry.revision,
        message=_message(docstring),
        down_revisions=entry.down_revisions,
        children=tuple(derived["children"]),
        branch_labels=tuple(derived["branch_labels"]),
        dependencies=tuple(derived["dependencies"]),
        create_date=create_date(docstring),
        file=entry.path,
        docstring=docstring,
        sha256=entry.sha256,
        is_head=bool(flags & _HEAD),
        is_base=bool(flags & _BASE),
        is_branch_point=bool(flags & _BRANCH_POINT),
        is_merge_point=bool(flags & _MERGE_POINT),
    )


def _derived(script: Script) -> dict[str, Any]:
    flags = (
        (_HEAD if script.is_head else 0)
        | (_BASE if script.is_base else 0)
        | (_BRANCH_POINT if script.is_branch_point else 0)
        | (_MERGE_POINT if script.is_merge_point else 0)
    )
    return {
        "children": sorted(script.nextrev),
        # Alembic passes a label on to the revisions above the one that declares it.
        "branch_labels": sorted(script.branch_labels),
        "dependencies": list(script._resolved_dependencies),
        "flags": flags,
    }


def _build(
    order: Sequence[str],
    derived: dict[str, dict[str, Any]],
    entries: Sequence[Entry],
    heads: Sequence[str],
    bases: Sequence[str],
    fingerprint: str,
) -> Graph:
    by_entry = {entry.revision: entry for entry in entries}
    revisions = tuple(_revision(by_entry[rid], derived[rid]) for rid in order)
    return Graph(
        revisions=revisions,
        heads=tuple(heads),
        bases=tuple(bases),
        fingerprint=fingerprint,
        by_id={r.id: r for r in revisions},
        load_order=tuple(entry.revision for entry in entries),
    )


def from_script(script: ScriptDirectory, entries: Sequence[Entry]) -> tuple[Graph, dict[str, Any]]:
    """The graph as Alembic walks it, and what to keep of it (``from_cache`` reads it)."""
    scripts = list(script.walk_revisions())
    derived = {s.revision: _derived(s) for s in scripts}
    order = [s.revision for s in scripts]
    heads, bases = list(script.get_heads()), list(script.get_bases())
    return _with_kept(order, derived, entries, heads, bases)


def _with_kept(
    order: list[str],
    derived: dict[str, Any],
    entries: Sequence[Entry],
    heads: list[str],
    bases: list[str],
) -> tuple[Graph, dict[str, Any]]:
    """The graph, and what ``from_cache`` needs to build it again without Alembic."""
    fingerprint = content_fingerprint(entries)
    kept = {
        "fingerprint": fingerprint,
        "order": order,
        "heads": heads,
        "bases": bases,
        "derived": derived,
    }
    return _build(order, derived, entries, heads, bases, fingerprint), kept


def from_entries(entries: Sequence[Entry]) -> tuple[Graph, dict[str, Any]] | None:
    """The graph ``from_script`` would give, derived from the entries alone, without
    Alembic's revision map (its cost and memory, per reload, in the web process): for
    histories of plain parents, none with branch labels or dependencies. None otherwise,
    and for anything Alembic would complain of (a missing parent, a repeated id, a cycle):
    then ``from_script`` decides, with Alembic's words."""
    parents: dict[str, tuple[str, ...]] = {}
    for entry in entries:
        if entry.branch_labels or entry.depends_on or entry.down_revision == ():
            return None
        if entry.revision in parents:
            return None
        parents[entry.revision] = tuple(dict.fromkeys(entry.down_revisions))
    children: dict[str, list[str]] = {rid: [] for rid in parents}
    for rid, ups in parents.items():
        for parent in ups:
            if parent not in children:
                return None
            children[parent].append(rid)
    heads = [rid for rid, below in children.items() if not below]
    bases = [rid for rid, ups in parents.items() if not ups]
    order = toposort.walk(set(parents), parents, list(heads))
    if order is None:
        return None
    derived = {
        rid: {
            "children": sorted(children[rid]),
            "branch_labels": [],
            "dependencies": [],
            "flags": (_HEAD if not children[rid] else 0)
            | (_BASE if not parents[rid] else 0)
            | (_BRANCH_POINT if len(children[rid]) > 1 else 0)
            | (_MERGE_POINT if len(parents[rid]) > 1 else 0),
        }
        for rid in order
    }
    return _with_kept(order, derived, entries, heads, bases)


def from_cache(kept: dict[str, Any] | None, entries: Sequence[Entry]) -> Graph | None:
    """The graph from what ``from_script`` kept, if it was made of exactly these files."""
    if not kept:
        return None
    fingerprint = content_fingerprint(entries)
    try:
        if kept["fingerprint"] != fingerprint or len(kept["order"]) != len(entries):
            return None
        return _build(
            kept["order"], kept["derived"], entries, kept["heads"], kept["bases"], fingerprint
        )
    except (KeyError, TypeError):
        return None
