"""The catalog of revision files: what each file declares, read without running it.

A revision file declares ``revision``, ``down_revision``, ``branch_labels`` and
``depends_on`` as literals at the top of the module, after its docstring. The catalog reads
those by scanning the text (a regular expression, then ``ast`` for what the expression does
not settle); only a file that computes them (or a sourceless ``.pyc``) is imported, and
then in a child process (``python -m admin.migrations.probe``), never in the panel's own.
What is read is kept per file, keyed by its path, size and mtime and recording its sha256,
in a cache file (``VAR_DIR/cache``), so a restart with unchanged files reads none of them.

A worker that runs a revision imports the real module and checks it declares what the
catalog says (``lazy.LazyModule``): a file the scan misread fails loudly, never silently.
"""

from __future__ import annotations

import ast
import contextlib
import hashlib
import json
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import alembic
from alembic.script import ScriptDirectory
from alembic.script.base import _only_source_rev_file, _sourceless_rev_file

from admin.errors import AdminError

# Bumped when what an entry holds changes: an older cache file is then ignored.
FORMAT = 1
NAMES = ("revision", "down_revision", "branch_labels", "depends_on")
_ASSIGNMENT = re.compile(
    r"^(revision|down_revision|branch_labels|depends_on)[ \t]*(?::[^=\n]*)?="
    r"[ \t]*(.+?)[ \t]*(?:#[^'\"\n]*)?$",
    re.MULTILINE,
)
_INDENTED = re.compile(
    r"^[ \t]+(?:revision|down_revision|branch_labels|depends_on)[ \t]*(?::[^=\n]*)?=(?!=)",
    re.MULTILINE,
)
_SIMPLE_STRING = re.compile(r"""^(?:'([\w.@+-]*)'|"([\w.@+-]*)")$""")
# Blank and comment lines before the first statement; then a string starts the docstring.
_LEADING = re.compile(r"(?:[ \t]*(?:#[^\n]*)?\n)*[ \t]*")
_STRING_START = re.compile(r"[rRuUbBfF]{0,2}['\"]")
_DOCSTRING = re.compile(r"([rR]?)(\"\"\"|''')(.*?)\2", re.DOTALL)
_LEGACY_NAME = re.compile(r"([a-f0-9]+)\.py$")
_TIGHT = (",", ":")


class CatalogError(AdminError):
    """The revision files cannot be read."""

    status = 400
    title = "Revision files unreadable"


@dataclass(frozen=True, slots=True)
class Entry:
    """One revision file and what it declares."""

    path: str
    size: int
    mtime_ns: int
    sha256: str
    revision: str
    down_revision: str | tuple[str, ...] | None
    branch_labels: tuple[str, ...]
    depends_on: tuple[str, ...]
    doc: str | None

    @property
    def down_revisions(self) -> tuple[str, ...]:
        return _tuple(self.down_revision)

    def to_json(self) -> dict[str, Any]:
        # Not dataclasses.asdict: it deep-copies every field (seconds at 50,000 entries).
        return {name: getattr(self, name) for name in _FIELDS}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Entry:
        down = data["down_revision"]
        return cls(
            path=data["path"],
            size=data["size"],
            mtime_ns=data["mtime_ns"],
            sha256=data["sha256"],
            revision=data["revision"],
            down_revision=tuple(down) if isinstance(down, list) else down,
            branch_labels=tuple(data["branch_labels"]),
            depends_on=tuple(data["depends_on"]),
            doc=data["doc"],
        )


_FIELDS = tuple(field.name for field in fields(Entry))


def _tuple(value: object) -> tuple[str, ...]:
    if value is None or value == ():
        return ()
    if isinstance(value, str):
        return (value,)
    return tuple(str(v) for v in value)  # type: ignore[attr-defined]


# Reading one file.


def _simple_value(text: str) -> object:
    if text == "None":
        return None
    match = _SIMPLE_STRING.match(text)
    if match:
        return match.group(1) if match.group(1) is not None else match.group(2)
    return ast.literal_eval(text)


def _docstring(text: str) -> tuple[bool, str | None]:
    """(settled, docstring): the module's docstring, when the text alone tells it."""
    start = _LEADING.match(text).end()  # type: ignore[union-attr]
    if not _STRING_START.match(text, start):
        return True, None
    match = _DOCSTRING.match(text, start)
    if match is None:
        return False, None
    prefix, quote, body = match.groups()
    if prefix or "\\" not in body:
        return True, body
    return True, str(ast.literal_eval(f"{quote}{body}{quote}"))


def _declared_by_text(text: str) -> dict[str, object] | None:
    """The four names from the text alone, or None when the text does not settle them."""
    if _INDENTED.search(text):
        return None
    found: dict[str, object] = {}
    for match in _ASSIGNMENT.finditer(text):
        name = match.group(1)
        if name in found:
            return None
        try:
            found[name] = _simple_value(match.group(2))
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            return None
    if "revision" not in found or "down_revision" not in found:
        return None
    try:
        settled, found["__doc__"] = _docstring(text)
    except (ValueError, SyntaxError):
        return None
    return found if settled else None


def _declared_by_ast(text: str) -> dict[str, object] | None:
    """The four names from the module's top-level statements, when they are all literals."""
    try:
        tree = ast.parse(text)
    except (SyntaxError, ValueError):
        return None
    found: dict[str, object] = {"__doc__": ast.get_docstring(tree, clean=False)}
    for node in tree.body:
        targets: list[ast.expr] = []
        value: ast.expr | None = None
        if isinstance(node, ast.Assign):
            targets, value = node.targets, node.value
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            targets, value = [node.target], node.value
        elif _assigns_nested(node):
            return None
        for target in targets:
            if isinstance(target, ast.Name) and target.id in NAMES:
                try:
                    found[target.id] = ast.literal_eval(value)  # type: ignore[arg-type]
                except ValueError:
                    return None
            elif not isinstance(target, ast.Name) and _names_in(target):
                return None
    if "revision" not in found or "down_revision" not in found:
        return None
    return found


def _names_in(node: ast.AST) -> bool:
    return any(isinstance(n, ast.Name) and n.id in NAMES for n in ast.walk(node))


def _assigns_nested(node: ast.stmt) -> bool:
    """A compound statement (if, try, with, for) that may assign one of the names."""
    for child in ast.walk(node):
        if isinstance(child, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
            targets = child.targets if isinstance(child, ast.Assign) else [child.target]
            if any(_names_in(t) for t in targets):
                return True
        if isinstance(child, (ast.Global, ast.Import, ast.ImportFrom)):
            names = (
                child.names
                if isinstance(child, ast.Global)
                else [a.asname or a.name for a in child.names]
            )
            if any(name in NAMES for name in names):
                return True
    return False


def _entry(path: Path, stat: os.stat_result, data: bytes, declared: dict[str, Any]) -> Entry:
    revision = declared.get("revision")
    return Entry(
        path=str(path),
        size=stat.st_size,
        mtime_ns=stat.st_mtime_ns,
        sha256=hashlib.sha256(data).hexdigest(),
        revision=str(revision),
        down_revision=_down(declared.get("down_revision")),
        branch_labels=_tuple(declared.get("branch_labels")),
        depends_on=_tuple(declared.get("depends_on")),
        doc=declared.get("__doc__"),
    )


def _down(value: object) -> str | tuple[str, ...] | None:
    if value is None or isinstance(value, str):
        return value
    return tuple(str(v) for v in value)  # type: ignore[attr-defined]


def read_source(path: Path, stat: os.stat_result) -> tuple[bytes, dict[str, Any] | None]:
    """A source file's bytes and its declarations (None: only running it can tell)."""
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return data, None
    declared = _declared_by_text(text) or _declared_by_ast(text)
    if declared is not None and not isinstance(declared.get("revision"), str):
        return data, None
    return data, declared


# Listing the version folders as Alembic does.


def _loadable(script: ScriptDirectory, name: str, folder: Path) -> bool:
    """Whether Alembic's ``Script._from_path`` would load this file (its name rules)."""
    pattern = _sourceless_rev_file if script.sourceless else _only_source_rev_file
    match = pattern.match(name)
    if match is None:
        return False
    if not script.sourceless or match.group(2) not in ("c", "o"):
        return True
    source = folder / match.group(1)
    compiled = folder / (match.group(1) + "c")
    return not (source.exists() or match.group(2) == "o" and compiled.exists())


def _listing(script: ScriptDirectory, top: Path) -> Iterator[tuple[Path, os.DirEntry[str]]]:
    """Alembic's ``Script._list_py_dir`` order (sorted names per folder, sub-folders when
    ``recursive_version_locations``, ``__pycache__`` only for sourceless projects), with
    each file's directory entry: its stat is then one call, and no path is resolved twice."""
    folders = [top]
    while folders:
        folder = folders.pop(0)
        if folder.name.endswith("__pycache__") and folder is not top:
            continue
        try:
            with os.scandir(folder) as scan:
                items = sorted(scan, key=lambda item: item.name)
        except (FileNotFoundError, NotADirectoryError):
            continue
        files = [item for item in items if item.is_file()]
        for item in files:
            yield folder, item
        if script.sourceless:
            cache = folder / "__pycache__"
            names = {item.name.split(".")[0] for item in files}
            with (
                contextlib.suppress(FileNotFoundError, NotADirectoryError),
                os.scandir(cache) as scan,
            ):
                for item in scan:
                    if item.name.split(".")[0] not in names:
                        yield cache, item
        if script.recursive_version_locations:
            folders[0:0] = [
                folder / item.name
                for item in items
                if item.is_dir() and not item.name.endswith("__pycache__")
            ]


def revision_files(script: ScriptDirectory) -> list[tuple[Path, os.stat_result]]:
    """The files Alembic would load as revisions, in its order (once per real path), with
    their stat."""
    seen: set[Path] = set()
    files: list[tuple[Path, os.stat_result]] = []
    for top in script._version_locations:
        if not top.exists():
            continue
        real_top = str(top.resolve())
        for folder, item in _listing(script, top):
            if not _loadable(script, item.name, folder):
                continue
            if folder is top and not item.is_symlink():
                # The common case, without resolving each path (a stat per component).
                real = Path(real_top + os.sep + item.name)
            else:
                real = (folder / item.name).resolve()
            if real in seen:
                continue
            try:
                stat = item.stat()
            except FileNotFoundError:
                continue  # removed while listed: the next check sees the folder as it is then
            seen.add(real)
            files.append((real, stat))
    return files


# The cache.


def _cache_key(config_path: Path) -> str:
    return hashlib.sha256(str(config_path).encode()).hexdigest()[:16]


def cache_file(cache_dir: Path | None, config_path: Path) -> Path | None:
    if cache_dir is None:
        return None
    return cache_dir / f"revisions-{_cache_key(config_path)}.json"


@dataclass
class Cached:
    """What an earlier process read: the entries, and the graph it derived from them."""

    entries: dict[str, Entry]
    graph: dict[str, Any] | None = None


def load_cache(path: Path | None) -> Cached:
    """The cache file (empty when missing, unreadable or of another format)."""
    if path is None:
        return Cached({})
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
        if payload.get("format") != FORMAT or payload.get("alembic") != alembic.__version__:
            return Cached({})
        entries = {item["path"]: Entry.from_json(item) for item in payload["entries"]}
        return Cached(entries, payload.get("graph"))
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return Cached({})


def save_cache(path: Path | None, entries: Sequence[Entry], graph: dict[str, Any]) -> None:
    """Write the cache atomically (owner-only); a read-only VAR_DIR only costs the speed-up."""
    if path is None:
        return
    with contextlib.suppress(OSError):
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=".revisions-", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.writelines(_payload(entries, graph))
            os.replace(temporary, path)
        except OSError:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
            raise


def _payload(entries: Sequence[Entry], graph: dict[str, Any]) -> Iterator[str]:
    """The cache file's JSON, an entry at a time: the whole text and a dict per entry at
    once would double the memory a reload needs at 50,000 revisions (and the C encoder is
    used only by json.dumps, not by json.dump)."""
    head = json.dumps({"format": FORMAT, "alembic": alembic.__version__}, separators=_TIGHT)
    yield head[:-1] + ',"entries":['
    for index, entry in enumerate(entries):
        yield ("," if index else "") + json.dumps(entry.to_json(), separators=_TIGHT)
    rest = {key: value for key, value in graph.items() if key != "derived"}
    derived = graph.get("derived")
    if derived is None:
        yield '],"graph":' + json.dumps(rest, separators=_TIGHT) + "}"
        return
    yield '],"graph":' + json.dumps(rest, separators=_TIGHT)[:-1]
    yield (',"derived":{' if rest else '"derived":{')
    for index, (rid, value) in enumerate(derived.items()):
        item = json.dumps(rid) + ":" + json.dumps(value, separators=_TIGHT)
        yield ("," if index else "") + item
    yield "}}}"


def scan(
    files: Sequence[tuple[Path, os.stat_result]], known: dict[str, Entry]
) -> tuple[list[Entry], int]:
    """Entries for ``files``: unchanged ones (same size and mtime) from ``known``, the rest
    read now; returns them and how many were read."""
    entries: list[Entry | Path] = []
    to_probe: list[Path] = []
    read = 0
    for path, stat in files:
        old = known.get(str(path))
        if old is not None and old.size == stat.st_size and old.mtime_ns == stat.st_mtime_ns:
            entries.append(old)
            continue
        read += 1
        declared: dict[str, Any] | None = None
        if path.suffix == ".py":
            try:
                data, declared = read_source(path, stat)
            except FileNotFoundError:
                continue
        if declared is None:
            entries.append(path)
            to_probe.append(path)
        else:
            entries.append(_entry(path, stat, data, declared))
    probed = {entry.path: entry for entry in probe(to_probe)} if to_probe else {}
    return [e if isinstance(e, Entry) else probed[str(e)] for e in entries], read


def probe(paths: Sequence[Path]) -> list[Entry]:
    """Import files the text does not settle, in a child process, and read their names."""
    try:
        done = subprocess.run(
            [sys.executable, "-m", "admin.migrations.probe", *map(str, paths)],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise CatalogError(f"the revision files could not be read: {exc}") from exc
    if done.returncode != 0:
        lines = [line for line in done.stderr.strip().splitlines() if line.strip()]
        raise CatalogError(lines[-1] if lines else "a revision file does not load")
    return [Entry.from_json(item) for item in json.loads(done.stdout)]


def probe_one(path: Path) -> dict[str, Any]:
    """In the probe process: import one file as Alembic does and read what it declares."""
    from alembic.util import load_python_file

    module = load_python_file(str(path.parent), path.name)
    stat = path.stat()
    declared: dict[str, Any] = {name: getattr(module, name, None) for name in NAMES}
    if declared["revision"] is None:
        match = _LEGACY_NAME.match(path.name)
        if not match:
            raise CatalogError(
                f"could not determine the revision id of {path.name}: declare `revision` in it"
            )
        declared["revision"] = match.group(1)
    declared["__doc__"] = module.__doc__
    data = path.read_bytes()
    return _entry(path, stat, data, declared).to_json()
