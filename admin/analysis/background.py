"""Analysis that pages never wait for: what is not analysed yet is done in the background.

The history and the dashboard show badges for many revisions at once; analysing a cold
project renders its SQL (a child process per direction: a minute at 5,000 revisions on a
busy machine). Those pages take what is kept, show the rest from the file alone (its AST:
irreversible, data migration, ... as far as the source tells) marked *analysing*, and hand
the rest to one background thread per process, which fills the cache for the next page.
A preview, a revision's page and a job's checks still wait for the full analysis.

The dashboard also asks for its Apply button's plan (upgrade to the head from where the
database stands) to be prepared: its SQL rendered and its steps analysed before anyone
clicks, so the preview it leads to is already kept. Plans come before lists of revisions.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

from admin.errors import AdminError
from admin.migrations import Direction, Project
from admin.migrations.renderer import RenderStopped

log = logging.getLogger(__name__)

# Revisions analysed per pass (the rest waits for the next one).
BATCH = 2_000


class Analyzer:
    """One thread that analyses, in order, what pages asked for and found missing."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._wanted: OrderedDict[tuple[Path, str, Path | None], dict[str, None]] = OrderedDict()
        self._projects: dict[Path, Project] = {}
        # Apply plans to prepare: (config, url, var_dir, current heads) in order asked.
        self._plans: OrderedDict[tuple[Path, str, Path | None, tuple[str, ...]], None] = (
            OrderedDict()
        )
        self._prepared: OrderedDict[tuple[Path, str, Path | None, tuple[str, ...]], str] = (
            OrderedDict()
        )
        # What was asked for since the thread last found nothing to do.
        self._asked: dict[tuple[Path, str, Path | None], set[str]] = {}
        self._thread: threading.Thread | None = None
        # Taken from the queues and not finished yet.
        self._in_flight = False

    def request(self, project: Project, url: str, var_dir: Path | None, ids: list[str]) -> bool:
        """Queue ``ids``; True when some of them were not asked for since the analyser was
        last idle."""
        key = (project.config_path, url, var_dir)
        with self._lock:
            self._projects[project.config_path] = project
            self._wanted.setdefault(key, {}).update(dict.fromkeys(ids))
            asked = self._asked.setdefault(key, set())
            new = not asked.issuperset(ids)
            asked.update(ids)
            self._start()
            return new

    def prepare_apply(
        self, project: Project, url: str, var_dir: Path | None, current: tuple[str, ...]
    ) -> None:
        """Render and analyse the upgrade to the head from ``current`` (once per graph and
        position: asking again while nothing changed costs a dictionary look-up)."""
        key = (project.config_path, url, var_dir, tuple(current))
        fingerprint = project.graph().fingerprint
        with self._lock:
            if self._prepared.get(key) == fingerprint or key in self._plans:
                return
            self._projects[project.config_path] = project
            self._plans[key] = None
            self._start()

    def _start(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._run, name="analysis", daemon=True)
            self._thread.start()

    def forget(self, config_path: Path) -> None:
        """Drop what was asked for a project (its panel stops); what runs now ends with its
        render children, which the panel stops (``migrations.release_renderer``)."""
        with self._lock:
            queues: tuple[dict[Any, Any], ...] = (
                self._wanted,
                self._plans,
                self._prepared,
                self._asked,
            )
            for queue in queues:
                for key in [k for k in queue if k[0] == config_path]:
                    del queue[key]
            self._projects.pop(config_path, None)

    def busy(self) -> bool:
        with self._lock:
            return bool(self._wanted or self._plans or self._in_flight)

    def _take_plan(self) -> tuple[Project, str, Path | None, tuple[str, ...]] | None:
        with self._lock:
            if not self._plans:
                return None
            key, _ = self._plans.popitem(last=False)
            self._in_flight = True
            return self._projects[key[0]], key[1], key[2], key[3]

    def _take(self) -> tuple[Project, str, Path | None, list[str]] | None:
        with self._lock:
            if not self._wanted:
                self._asked.clear()
                return None
            key, ids = next(iter(self._wanted.items()))
            batch = list(ids)[:BATCH]
            for rid in batch:
                del ids[rid]
            if not ids:
                del self._wanted[key]
            self._in_flight = True
            return self._projects[key[0]], key[1], key[2], batch

    def _run(self) -> None:
        from admin.analysis.risk import analyze

        while True:
            try:
                if (plan := self._take_plan()) is not None:
                    self._prepare_apply(*plan)
                    continue
                if (work := self._take()) is None:
                    return
                project, url, var_dir, ids = work
                try:
                    analyze(project, url, ids, var_dir=var_dir)
                except RenderStopped:  # the panel stops
                    continue
                except AdminError as exc:  # the next page asks again
                    log.warning("background analysis of %d revisions failed: %s", len(ids), exc)
            finally:
                with self._lock:
                    self._in_flight = False

    def _prepare_apply(
        self, project: Project, url: str, var_dir: Path | None, current: tuple[str, ...]
    ) -> None:
        from admin import migrations
        from admin.analysis.rendering import from_script
        from admin.analysis.risk import analyze
        from admin.history import dialect_of

        fingerprint = project.graph().fingerprint
        try:
            plan = migrations.make_plan(project, Direction.UPGRADE, "head", current)
            if not plan.is_empty:
                script = migrations.render(project, plan, url, dialect_of(url))
                given = {Direction.UPGRADE: from_script(script)}
                analyze(project, url, plan.revision_ids, var_dir=var_dir, rendered=given)
        except RenderStopped:  # the panel stops: not prepared
            return
        except AdminError as exc:  # several heads, an unknown revision: the preview says
            log.info("the Apply plan was not prepared: %s", exc)
        with self._lock:
            self._prepared[(project.config_path, url, var_dir, current)] = fingerprint
            while len(self._prepared) > 64:
                self._prepared.popitem(last=False)


ANALYZER = Analyzer()
