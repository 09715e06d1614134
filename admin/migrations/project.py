"""The managed Alembic project: one cached ScriptDirectory and the revision graph.

The project is loaded once per process. A fingerprint of the version folders (file names,
sizes, mtimes) is compared before use, and the ScriptDirectory is rebuilt only when a
revision file was added, removed or changed. The fingerprint costs one stat per revision
file (over 100 ms at 5,000 files on a slow disk), so between two full scans, which are at
most ``FULL_SCAN_EVERY`` seconds apart, a check older than ``max_age`` stats only the
folders: their mtime changes when a file is added, removed or renamed (a deploy, a git
checkout). An edit in place is seen at the next full scan, or at once with ``max_age=0``,
which always scans in full: runs and job submissions use it, so they never act on stale files.
"""

from __future__ import annotations

import hashlib
import os
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from alembic.config import Config
from alembic.script import Script, ScriptDirectory
from alembic.util import CommandError

from admin.errors import AdminError, NotFound

# Seconds between two full scans of the version folders (see the module's docstring).
FULL_SCAN_EVERY = 15.0
_CREATE_DATE = re.compile(r"^Create Date:\s*(.+?)\s*$", re.MULTILINE)


class MigrationError(AdminError):
    """A request the engine cannot carry out, said so a person can act on it."""

    status = 400
    title = "Migration error"


class UnknownRevision(MigrationError, NotFound):
    status = 404
    title = "Unknown revision"


@dataclass(frozen=True)
class Revision:
    """One revision file, as the panel shows it."""

    id: str
    message: str
    down_revisions: tuple[str, ...]
    children: tuple[str, ...]
    branch_labels: tuple[str, ...]
    dependencies: tuple[str, ...]
    create_date: datetime | None
    path: Path
    docstring: str
    sha256: str
    is_head: bool
    is_base: bool
    is_branch_point: bool
    is_merge_point: bool


@dataclass(frozen=True)
class Graph:
    """Every revision, newest first (Alembic's walk order), and what it knows of them."""

    revisions: tuple[Revision, ...]
    heads: tuple[str, ...]
    bases: tuple[str, ...]
    fingerprint: str
    by_id: dict[str, Revision] = field(repr=False)

    def __len__(self) -> int:
        return len(self.revisions)

    def get(self, revision_id: str) -> Revision:
        """A revision by its full id or a unique prefix of it."""
        found = self.by_id.get(revision_id)
        if found is not None:
            return found
        if not re.fullmatch(r"[0-9A-Za-z_]{1,64}", revision_id or ""):
            raise UnknownRevision(f"{revision_id!r} is not a revision id")
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


def _file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _create_date(text: str) -> datetime | None:
    match = _CREATE_DATE.search(text or "")
    if not match:
        return None
    try:
        return datetime.fromisoformat(match.group(1).strip())
    except ValueError:
        return None


def _to_revision(script: Script) -> Revision:
    path = Path(script.path)
    docstring = (script.module.__doc__ or "").strip()
    return Revision(
        id=script.revision,
        message=script.doc or "",
        down_revisions=tuple(script._versioned_down_revisions),
        children=tuple(sorted(script.nextrev)),
        branch_labels=tuple(sorted(script.branch_labels)),
        dependencies=tuple(script._resolved_dependencies),
        create_date=_create_date(docstring),
        path=path,
        docstring=docstring,
        sha256=_file_sha256(path),
        is_head=script.is_head,
        is_base=script.is_base,
        is_branch_point=script.is_branch_point,
        is_merge_point=script.is_merge_point,
    )


class Project:
    """An Alembic project (an alembic.ini and its script folder), loaded once."""

    def __init__(self, config_path: Path) -> None:
        self.config_path = Path(config_path).resolve()
        if not self.config_path.is_file():
            raise MigrationError(
                f"the Alembic configuration {self.config_path} does not exist "
                "(set ALEMBIC_CONFIG to the project's alembic.ini)"
            )
        self._lock = threading.RLock()
        self._script: ScriptDirectory | None = None
        self._graph: Graph | None = None
        self._folders_fp: str | None = None
        self._folders_stamp: tuple[tuple[str, int], ...] = ()
        self._checked_at = 0.0
        self._scanned_at = 0.0
        self._version_dirs: list[Path] = []
        self._version_table: str | None = None

    # Configuration.

    def config(self, **attributes: Any) -> Config:
        """A fresh Config for one command; attributes reach env.py."""
        cfg = Config(str(self.config_path))
        cfg.attributes["panel"] = True
        cfg.attributes.update(attributes)
        return cfg

    @property
    def version_table(self) -> str:
        # Parsing alembic.ini costs about a millisecond: read once, again at each reload.
        if self._version_table is None:
            self._version_table = (
                self.config().get_main_option("version_table") or "alembic_version"
            )
        return self._version_table

    # Loading and refreshing.

    def _folders_fingerprint(self) -> str:
        digest = hashlib.sha256()
        for folder in self._version_dirs:
            try:
                entries = sorted(os.scandir(folder), key=lambda e: e.name)
            except FileNotFoundError:
                digest.update(f"missing:{folder}".encode())
                continue
            for entry in entries:
                if not entry.name.endswith((".py", ".pyc")) or not entry.is_file():
                    continue
                stat = entry.stat()
                digest.update(f"{entry.name}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
        return digest.hexdigest()

    def _stamp(self) -> tuple[tuple[str, int], ...]:
        """The version folders' own mtimes: one stat per folder."""
        stamp = []
        for folder in self._version_dirs:
            try:
                stamp.append((str(folder), os.stat(folder).st_mtime_ns))
            except FileNotFoundError:
                stamp.append((str(folder), -1))
        return tuple(stamp)

    def _load(self) -> None:
        try:
            script = ScriptDirectory.from_config(self.config())
            self._version_dirs = [Path(p) for p in script._version_locations]
            fingerprint = self._folders_fingerprint()
            scripts = list(script.walk_revisions())
        except CommandError as exc:
            raise MigrationError(f"the revision files cannot be read: {exc}") from exc
        except (SyntaxError, ImportError) as exc:
            raise MigrationError(f"a revision file does not load: {exc}") from exc
        revisions = tuple(_to_revision(s) for s in scripts)
        content = hashlib.sha256()
        for revision in revisions:
            content.update(f"{revision.id}:{revision.sha256}\n".encode())
        self._graph = Graph(
            revisions=revisions,
            heads=tuple(script.get_heads()),
            bases=tuple(script.get_bases()),
            fingerprint=content.hexdigest(),
            by_id={r.id: r for r in revisions},
        )
        self._script = script
        self._folders_fp = fingerprint
        self._version_table = None

    def _fresh(self, max_age: float) -> None:
        now = time.monotonic()
        if self._script is not None:
            if now - self._checked_at < max_age:
                return
            recent_scan = now - self._scanned_at < FULL_SCAN_EVERY
            if max_age > 0 and recent_scan and self._stamp() == self._folders_stamp:
                self._checked_at = now
                return
        # Stamp first: a file added during the scan then shows at the next check.
        stamp = self._stamp()
        if self._script is None or self._folders_fingerprint() != self._folders_fp:
            dirs = self._version_dirs
            self._load()
            if self._version_dirs != dirs:
                stamp = self._stamp()
        self._folders_stamp = stamp
        self._checked_at = self._scanned_at = now

    def graph(self, max_age: float = 1.0) -> Graph:
        """The revision graph; files are re-checked when older than ``max_age`` seconds."""
        with self._lock:
            self._fresh(max_age)
            assert self._graph is not None
            return self._graph

    def script(self, max_age: float = 1.0) -> ScriptDirectory:
        with self._lock:
            self._fresh(max_age)
            assert self._script is not None
            return self._script

    @contextmanager
    def revision_errors(self) -> Iterator[None]:
        """Translate Alembic's revision errors at the boundary."""
        try:
            yield
        except CommandError as exc:
            raise _translate(exc) from exc


def _translate(exc: CommandError) -> MigrationError:
    text = str(exc)
    if text.startswith("Can't locate revision identified by"):
        argument = text.split("by", 1)[1].strip().strip("'")
        return UnknownRevision(
            f"no revision matches {argument!r}: give a revision id (or a unique prefix), "
            "head, heads, base, branch@head or a relative step such as +1 / -1"
        )
    if "Multiple head revisions" in text:
        return MigrationError(
            "the scripts have several heads: choose one revision, 'branch@head', or 'heads' "
            "for all of them"
        )
    if "is not a valid upgrade target" in text or "is not a valid downgrade target" in text:
        return MigrationError(
            text.replace("Destination", "The target").rstrip(".")
            + ": pick a revision on the path from where the database stands"
        )
    if "Ambiguous walk" in text:
        return MigrationError(
            "a relative step is ambiguous here (a merge or several heads): name the revision "
            "to go to, or a branch-relative step such as branch@-1"
        )
    if "Relative revision" in text or "relative" in text.lower():
        return MigrationError(f"{text.rstrip('.')}: there are not that many steps to go")
    return MigrationError(text)


_projects: dict[Path, Project] = {}
_projects_lock = threading.Lock()


def open_project(config_path: Path) -> Project:
    """The process-wide Project for an alembic.ini (loaded on first use)."""
    key = Path(config_path).resolve()
    with _projects_lock:
        project = _projects.get(key)
        if project is None:
            project = Project(key)
            _projects[key] = project
        return project
