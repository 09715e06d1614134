"""Analysis that pages never wait for: what is not analysed yet is done in the background.

The history and the dashboard show badges for many revisions at once; analysing a cold
project renders its SQL (a child process per direction: a minute at 5,000 revisions on a
busy machine). Those pages take what is kept, show the rest from the file alone (its AST:
irreversible, data migration, ... as far as the source tells) marked *analysing*, and hand
the rest to one background thread per process, which fills the cache for the next page.
A preview, a revision's page and a job's checks still wait for the full analysis.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from pathlib import Path

from admin.errors import AdminError
from admin.migrations import Project

log = logging.getLogger(__name__)

# Revisions analysed per pass (the rest waits for the next one).
BATCH = 2_000


class Analyzer:
    """One thread that analyses, in order, what pages asked for and found missing."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._wanted: OrderedDict[tuple[Path, str, Path | None], dict[str, None]] = OrderedDict()
        self._projects: dict[Path, Project] = {}
        self._thread: threading.Thread | None = None

    def request(self, project: Project, url: str, var_dir: Path | None, ids: list[str]) -> None:
        key = (project.config_path, url, var_dir)
        with self._lock:
            self._projects[project.config_path] = project
            self._wanted.setdefault(key, {}).update(dict.fromkeys(ids))
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="analysis", daemon=True)
                self._thread.start()

    def busy(self) -> bool:
        with self._lock:
            return bool(self._wanted)

    def _take(self) -> tuple[Project, str, Path | None, list[str]] | None:
        with self._lock:
            if not self._wanted:
                return None
            key, ids = next(iter(self._wanted.items()))
            batch = list(ids)[:BATCH]
            for rid in batch:
                del ids[rid]
            if not ids:
                del self._wanted[key]
            return self._projects[key[0]], key[1], key[2], batch

    def _run(self) -> None:
        from admin.analysis.risk import analyze

        while (work := self._take()) is not None:
            project, url, var_dir, ids = work
            try:
                analyze(project, url, ids, var_dir=var_dir)
            except AdminError as exc:  # the next page asks again
                log.warning("background analysis of %d revisions failed: %s", len(ids), exc)


ANALYZER = Analyzer()
