"""Offline SQL: the exact script a plan will run, rendered by Alembic's ``--sql`` mode.

Rendering runs the project's env.py and revision code, so it happens in a child process
(``offline``, through ``renderer``), never in the caller's. What a child rendered is kept
here, keyed by the plan (its fingerprint: the ordered revisions and their file hashes),
where it starts and ends, the dialect and the files that shape every render (env.py,
alembic.ini): the same plan is rendered once per process until one of those changes.
The script and its fingerprint are the same in every process (``offline`` fixes the
hash seed Alembic's merge bookkeeping depends on).
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from admin.migrations.errors import MigrationError
from admin.migrations.plan import Plan, Step
from admin.migrations.project import Project
from admin.migrations.reasons import Cause
from admin.migrations.renderer import Renderer

# Rendered scripts kept per process, by their total size in characters.
CACHE_CHARS = 64 * 1024 * 1024


@dataclass(frozen=True)
class StepSql:
    """The SQL of one step, or why it cannot be rendered offline (``cause``, ``location``:
    the file and line where it happened)."""

    step: Step
    sql: str | None
    error: str | None = None
    cause: Cause | None = None
    location: str | None = None


@dataclass(frozen=True)
class SqlScript:
    plan: Plan
    dialect: str
    text: str
    steps: tuple[StepSql, ...]

    @property
    def fingerprint(self) -> str:
        return hashlib.sha256(self.text.encode()).hexdigest()

    @property
    def errors(self) -> list[StepSql]:
        return [s for s in self.steps if s.error]


_Key = tuple[str, str, tuple[str, ...], str, str, str]
_Pieces = tuple[tuple[str | None, ...], ...]
_cache: OrderedDict[_Key, tuple[str, _Pieces]] = OrderedDict()
_cache_chars = 0
_cache_lock = threading.Lock()
_renderers: dict[Path, Renderer] = {}


def renderer_for(project: Project) -> Renderer:
    """The process's Renderer for a project (``keep_ready()`` on it in a long-lived panel)."""
    with _cache_lock:
        found = _renderers.get(project.config_path)
        if found is None:
            cache_dir = project.cache_file.parent if project.cache_file else None
            found = _renderers[project.config_path] = Renderer(project.config_path, cache_dir)
        return found


def forget_rendered() -> None:
    """Drop every script this process keeps (a cold start, for the bench)."""
    global _cache_chars
    with _cache_lock:
        _cache.clear()
        _cache_chars = 0


def release_renderer(project: Project) -> bool:
    """A panel that kept the project's renderer ready stops. When no other panel of this
    process renders for the project, its children (the spare and the renders under way) are
    stopped and True is returned: what was asked for it in the background can be dropped."""
    with _cache_lock:
        found = _renderers.get(project.config_path)
        if found is None:
            return True
        if not found.release():
            return False
        del _renderers[project.config_path]
    return True


def close_renderers(config_path: Path | None = None) -> None:
    """Stop the render children of one project (by its config file), or of every one."""
    with _cache_lock:
        paths = [p for p in _renderers if config_path is None or p == config_path]
        renderers = [_renderers.pop(p) for p in paths]
    for renderer in renderers:
        renderer.close()


def _environment_fingerprint(project: Project) -> str:
    """env.py and the configuration: what shapes every render besides the revisions."""
    digest = hashlib.sha256()
    script = project.script()
    for path in (*project.config_files, Path(script.dir) / "env.py"):
        try:
            digest.update(path.read_bytes())
        except OSError:
            digest.update(f"missing:{path}".encode())
    return digest.hexdigest()


def _key(plan: Plan, url: str, environment: str) -> _Key:
    # env.py may read more of the URL than its dialect: the URL is part of the key (hashed,
    # it holds a password).
    where = hashlib.sha256(url.encode()).hexdigest()
    return (plan.fingerprint, plan.target, plan.current, where, environment, plan.direction.value)


def _remember(key: _Key, value: tuple[str, _Pieces]) -> None:
    global _cache_chars
    size = len(value[0]) + sum(len(piece[0] or "") for piece in value[1])
    with _cache_lock:
        if key in _cache:
            return
        _cache[key] = value
        _cache_chars += size
        while _cache_chars > CACHE_CHARS and len(_cache) > 1:
            _, (text, pieces) = _cache.popitem(last=False)
            _cache_chars -= len(text) + sum(len(piece[0] or "") for piece in pieces)


def _script(plan: Plan, dialect: str, value: tuple[str, _Pieces]) -> SqlScript:
    text, pieces = value
    steps = tuple(
        StepSql(
            step,
            sql,
            error,
            Cause(cause) if cause else None,
            location,
        )
        for step, (sql, error, cause, location) in zip(plan.steps, pieces, strict=True)
    )
    return SqlScript(plan=plan, dialect=dialect, text=text, steps=steps)


def render_many(project: Project, plans: Sequence[Plan], url: str, dialect: str) -> list[SqlScript]:
    """The SQL of each plan, as one script and per-step slices; what is not yet kept is
    rendered in one child process."""
    environment = _environment_fingerprint(project)
    found: dict[int, tuple[str, _Pieces]] = {}
    missing: list[int] = []
    for index, plan in enumerate(plans):
        if plan.is_empty:
            found[index] = ("", ())
            continue
        with _cache_lock:
            kept = _cache.get(_key(plan, url, environment))
        if kept is None:
            missing.append(index)
        else:
            found[index] = kept
    if missing:
        payload = {
            "url": url,
            "plans": [
                {
                    "direction": plans[i].direction.value,
                    "current": list(plans[i].current),
                    "target": plans[i].target,
                    "fingerprint": plans[i].fingerprint,
                }
                for i in missing
            ],
        }
        answer = renderer_for(project).request(payload)
        for index, result in zip(missing, answer["results"], strict=True):
            if result.get("error"):
                raise MigrationError(str(result["error"]))
            pieces = tuple(
                (p["sql"], p["error"], p["cause"], p["location"]) for p in result["steps"]
            )
            if len(pieces) != len(plans[index].steps):
                raise MigrationError("the SQL renderer's answer does not match the plan")
            value = (str(result["text"]), pieces)
            _remember(_key(plans[index], url, environment), value)
            found[index] = value
    return [_script(plan, dialect, found[i]) for i, plan in enumerate(plans)]


def render(project: Project, plan: Plan, url: str, dialect: str) -> SqlScript:
    """The SQL of a whole plan, as one script and as per-step slices."""
    return render_many(project, [plan], url, dialect)[0]
