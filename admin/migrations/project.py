"""The managed Alembic project: its revision graph, read from the catalog.

The graph comes from ``catalog`` (what each revision file declares, read from its text and
cached across restarts in ``VAR_DIR/cache``) through ``lazy.script_directory``: reading
the graph imports no revision module. The project is loaded once per process; a check
before use compares the version folders with what was read. A full check stats every
revision file (tens of milliseconds at 5,000 files), so between two full checks, which are
at most ``FULL_SCAN_EVERY`` seconds apart, a check older than ``max_age`` stats only the
folders: their mtime changes when a file is added, removed or renamed (a deploy, a git
checkout). An edit in place is seen at the next full check, or at once with ``max_age=0``,
which always checks in full: runs and job submissions use it, so they never act on stale
files. A changed file costs reading that file, not all of them.

What pages derive from a graph (what is pending, the history's lanes) is kept per graph; a
graph the watcher reloads is handed to the ``on_new_graph`` preparers before it is swapped
in, so the first request that sees it finds that ready instead of computing it.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic.config import Config
from alembic.script import ScriptDirectory
from alembic.script.revision import RevisionError
from alembic.util import CommandError

from admin.migrations import catalog, lazy
from admin.migrations import graph as graph_module
from admin.migrations.errors import MigrationError, UnknownRevision
from admin.migrations.graph import Graph, Revision

# One env.py run per process at a time (alembic.context / alembic.op are globals).
ALEMBIC_LOCK = threading.RLock()
# Seconds between two full checks of the revision files (see the module's docstring).
FULL_SCAN_EVERY = 15.0
_CREATE_DATE = re.compile(r"^Create Date:\s*(.+?)\s*$", re.MULTILINE)
# Called with each graph the watcher reloads, before requests see it (``on_new_graph``).
_preparers: list[Callable[[Graph], None]] = []
log = logging.getLogger(__name__)


def on_new_graph(prepare: Callable[[Graph], None]) -> Callable[[Graph], None]:
    """Register what to derive from a reloaded graph in the background (a decorator)."""
    _preparers.append(prepare)
    return prepare


def _prepare(graph: Graph) -> None:
    for prepare in _preparers:
        try:
            prepare(graph)
        except Exception:  # a request computes it then: never a reason to keep old files
            log.exception("preparing the reloaded graph failed")


__all__ = ["Graph", "MigrationError", "Project", "Revision", "UnknownRevision", "open_project"]


class Project:
    """An Alembic project (an alembic.ini and its script folder), loaded once."""

    def __init__(self, config_path: Path, cache_dir: Path | None = None) -> None:
        self.config_path = Path(config_path).resolve()
        if not self.config_path.is_file():
            raise MigrationError(
                f"the Alembic configuration {self.config_path} does not exist "
                "(set ALEMBIC_CONFIG to the project's alembic.ini or pyproject.toml)"
            )
        self.ini_path, self.toml_path = _config_files(self.config_path)
        self.cache_file = catalog.cache_file(cache_dir, self.config_path)
        self._lock = threading.RLock()
        self._base: ScriptDirectory | None = None
        self._base_stamp: tuple[tuple[int, int], ...] | None = None
        # (graph, script directory), swapped as one: a request sees the old or the new pair.
        self._loaded: tuple[Graph, ScriptDirectory] | None = None
        # Set while a watcher (``admin.migrations.watcher``) checks the files in the
        # background: requests then take what is loaded without checking anything.
        self.watched = False
        self._entries: dict[str, catalog.Entry] = {}
        self._files_stamp: tuple[tuple[str, int, int], ...] = ()
        self._folders_stamp: tuple[tuple[str, int], ...] = ()
        self._checked_at = 0.0
        self._scanned_at = 0.0
        self._version_dirs: list[Path] = []
        self._version_table: str | None = None

    # Configuration.

    def config(self, **attributes: Any) -> Config:
        """A fresh Config for one command; attributes reach env.py."""
        cfg = Config(
            str(self.ini_path) if self.ini_path else None,
            toml_file=str(self.toml_path) if self.toml_path else None,
        )
        cfg.attributes["panel"] = True
        cfg.attributes.update(attributes)
        return cfg

    @property
    def config_files(self) -> tuple[Path, ...]:
        """alembic.ini and pyproject.toml, those the project has."""
        return tuple(path for path in (self.ini_path, self.toml_path) if path is not None)

    @property
    def version_table(self) -> str:
        # Parsing alembic.ini costs about a millisecond: read once, again at each reload.
        if self._version_table is None:
            self._version_table = (
                self.config().get_main_option("version_table") or "alembic_version"
            )
        return self._version_table

    # Loading and refreshing.

    def _base_directory(self) -> ScriptDirectory:
        """Alembic's ScriptDirectory for the config (made again when alembic.ini changes)."""
        stamp = tuple((path.stat().st_size, path.stat().st_mtime_ns) for path in self.config_files)
        if self._base is None or stamp != self._base_stamp:
            try:
                self._base = ScriptDirectory.from_config(self.config())
                self._version_dirs = [Path(p) for p in self._base._version_locations]
            except CommandError as exc:
                raise MigrationError(f"the revision files cannot be read: {exc}") from exc
            self._base_stamp = stamp
            self._version_table = None
        return self._base

    def _files(self) -> list[tuple[Path, os.stat_result]]:
        """The revision files and their stat: one listing and one stat per file."""
        return catalog.revision_files(self._base_directory())

    @staticmethod
    def _files_stamp_of(
        files: list[tuple[Path, os.stat_result]],
    ) -> tuple[tuple[str, int, int], ...]:
        return tuple((str(path), stat.st_size, stat.st_mtime_ns) for path, stat in files)

    def _load(self, files: list[tuple[Path, os.stat_result]], prepare: bool = False) -> None:
        # After the first load only the entries are kept: what was derived of them is
        # derived again (the graph of a plain history costs one pass; memory matters more).
        cached = (
            catalog.Cached(self._entries) if self._entries else catalog.load_cache(self.cache_file)
        )
        try:
            entries, read = catalog.scan(files, cached.entries)
        except OSError as exc:
            raise MigrationError(f"the revision files cannot be read: {exc}") from exc
        base = self._base_directory()
        # A fresh ScriptDirectory each load: Alembic memoizes its revision map in it, and a
        # request still planning with the previous one keeps its own.
        script = lazy.script_directory(
            ScriptDirectory(
                base.dir,
                file_template=base.file_template,
                truncate_slug_length=base.truncate_slug_length,
                version_locations=base.version_locations,
                sourceless=base.sourceless,
                output_encoding=base.output_encoding,
                timezone=base.timezone,
                hooks=base.hooks,
                recursive_version_locations=base.recursive_version_locations,
                messaging_opts=base.messaging_opts,
            ),
            entries,
        )
        built = graph_module.from_cache(cached.graph, entries)
        if built is None:
            # Plain histories without Alembic's map (built only when a plan needs it).
            derived = graph_module.from_entries(entries)
            try:
                built, kept = derived or graph_module.from_script(script, entries)
            except CommandError as exc:
                raise MigrationError(f"the revision files cannot be read: {exc}") from exc
            catalog.save_cache(self.cache_file, entries, kept)
        else:
            kept = cached.graph or {}
            if read:
                catalog.save_cache(self.cache_file, entries, kept)
        if prepare:
            _prepare(built)
        self._loaded = (built, script)
        self._files_stamp = self._files_stamp_of(files)
        self._entries = {entry.path: entry for entry in entries}

    def _stamp(self) -> tuple[tuple[str, int], ...]:
        """The version folders' own mtimes: one stat per folder."""
        stamp = []
        for folder in self._version_dirs:
            try:
                stamp.append((str(folder), os.stat(folder).st_mtime_ns))
            except FileNotFoundError:
                stamp.append((str(folder), -1))
        return tuple(stamp)

    def _fresh(self, max_age: float, prepare: bool = False) -> None:
        now = time.monotonic()
        if self._loaded is not None:
            if now - self._checked_at < max_age:
                return
            recent_scan = now - self._scanned_at < FULL_SCAN_EVERY
            if max_age > 0 and recent_scan and self._stamp() == self._folders_stamp:
                self._checked_at = now
                return
        # Folders first: a file added during the check then shows at the next one.
        self._base_directory()
        folders = self._stamp()
        files = self._files()
        if self._loaded is None or self._files_stamp_of(files) != self._files_stamp:
            self._load(files, prepare and self._loaded is not None)
        self._folders_stamp = folders
        self._checked_at = self._scanned_at = now

    def _current(self, max_age: float) -> tuple[Graph, ScriptDirectory]:
        loaded = self._loaded
        if loaded is not None and self.watched and max_age > 0:
            # The watcher keeps it fresh: no lock, no stat (a reload in progress holds the
            # lock, and this request gets the graph from before it).
            return loaded
        with self._lock:
            self._fresh(max_age)
            assert self._loaded is not None
            return self._loaded

    def graph(self, max_age: float = 1.0) -> Graph:
        """The revision graph; files are re-checked when older than ``max_age`` seconds
        (``max_age=0``: always, in full), or by the watcher when one runs."""
        return self._current(max_age)[0]

    def script(self, max_age: float = 1.0) -> ScriptDirectory:
        return self._current(max_age)[1]

    def check(self, full: bool) -> bool:
        """What the watcher does once: the version folders (a file added, removed or
        renamed), and with ``full`` every file's size and mtime; a change is read (only the
        changed files), prepared for the pages (``on_new_graph``) and swapped in. Returns
        whether it reloaded."""
        with self._lock:
            before = self._loaded
            if before is None or full or self._stamp() != self._folders_stamp:
                self._fresh(0, prepare=True)
            else:
                self._checked_at = time.monotonic()
            return self._loaded is not before

    @contextmanager
    def revision_errors(self) -> Iterator[None]:
        """Translate Alembic's revision errors at the boundary."""
        try:
            yield
        except CommandError as exc:
            raise _translate(exc) from exc

    @contextmanager
    def planning_errors(self, target: str) -> Iterator[None]:
        """Alembic's revision errors translated, and anything else its target parser raises
        (it asserts on some targets) refused as a target it cannot place."""
        try:
            yield
        except CommandError as exc:
            raise _translate(exc) from exc
        except (RevisionError, AssertionError, KeyError, IndexError, ValueError, TypeError) as exc:
            raise MigrationError(
                f"Alembic cannot place the target {target[:60]!r} from where the database "
                f"stands: {type(exc).__name__}{': ' + str(exc) if str(exc) else ''}"
            ) from exc


def _config_files(path: Path) -> tuple[Path | None, Path | None]:
    """(alembic.ini, pyproject.toml) of a project, as the ``alembic`` command finds them
    beside each other: ALEMBIC_CONFIG may name either (``alembic init -t pyproject`` keeps
    the script location in pyproject.toml and the URL and logging in alembic.ini)."""
    if path.name == "pyproject.toml":
        ini = path.with_name("alembic.ini")
        return (ini if ini.is_file() else None), path
    toml = path.with_name("pyproject.toml")
    try:
        has_section = toml.is_file() and "[tool.alembic]" in toml.read_text(encoding="utf-8")
    except OSError:
        has_section = False
    return path, (toml if has_section else None)


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
_given: dict[tuple[str, str], Project] = {}
_projects_lock = threading.Lock()


def open_project(config_path: Path, cache_dir: Path | None = None) -> Project:
    """The process-wide Project for an alembic.ini (loaded on first use); what was read of
    its revision files is kept in ``cache_dir`` across restarts."""
    # Every request asks: an absolute path as given is looked up first (resolving it stats
    # each of its folders; a relative one depends on the working directory).
    given = (str(config_path), str(cache_dir))
    project = _given.get(given) if os.path.isabs(given[0]) else None
    if project is not None:
        return project
    key = Path(config_path).resolve()
    with _projects_lock:
        project = _projects.get(key)
        if project is None:
            project = Project(key, cache_dir)
            _projects[key] = project
        _given[given] = project
        return project
