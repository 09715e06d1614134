"""The watcher: one background thread per project that notices new or changed revision
files, so no request pays for a check of the files.

Every ``interval`` seconds it compares the version folders' mtimes (one stat per folder:
a file added, removed or renamed changes them); every ``FULL_SCAN_EVERY`` seconds it stats
every file (an edit in place). A change is read by the thread (only the changed files are
read again) and the new graph swapped in at once; requests meanwhile get the graph from
before it. Runs and job submissions still check in full themselves (``max_age=0``).
"""

from __future__ import annotations

import logging
import threading
import time

from admin.errors import AdminError
from admin.memory import release_free_memory
from admin.migrations.project import FULL_SCAN_EVERY, Project

log = logging.getLogger(__name__)

INTERVAL = 1.0


class Watcher:
    """Keeps one project's graph fresh from a daemon thread (``start`` / ``stop``)."""

    def __init__(self, project: Project, interval: float = INTERVAL) -> None:
        self.project = project
        self.interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.reloads = 0

    def start(self) -> None:
        """Load the graph in the background (a first request waits for it) and watch."""
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name="revision-watcher", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self.project.watched = False
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def _run(self) -> None:
        last_full = time.monotonic()
        first = True
        while not self._stop.is_set():
            now = time.monotonic()
            full = now - last_full >= FULL_SCAN_EVERY
            try:
                if self.project.check(full=full) and not first:
                    self.reloads += 1
                    # The graph before it is gone: its memory goes back to the system.
                    release_free_memory()
                    log.info(
                        "revision files changed: graph of %d revisions loaded",
                        len(self.project.graph(max_age=1.0)),
                    )
                # Watched only once loaded: until then a request loads (or waits) itself.
                self.project.watched = True
            except AdminError as exc:
                # Unreadable files: requests check themselves and show the error.
                self.project.watched = False
                log.warning("the revision files cannot be read: %s", exc)
            except Exception:  # a bug must not end the thread silently, nor take the graph
                self.project.watched = False
                log.exception("the revision watcher failed")
            if full:
                last_full = now
            first = False
            self._stop.wait(self.interval)


_watchers: dict[Project, tuple[Watcher, int]] = {}
_watchers_lock = threading.Lock()


def watch(project: Project) -> Watcher:
    """The project's watcher, started by the first app that serves it (one per project and
    process, however many apps share it: tests open several)."""
    with _watchers_lock:
        watcher, count = _watchers.get(project, (None, 0))
        if watcher is None:
            watcher = Watcher(project)
            watcher.start()
        _watchers[project] = (watcher, count + 1)
        return watcher


def unwatch(watcher: Watcher) -> None:
    """The app that started watching stops: the last one stops the thread."""
    with _watchers_lock:
        found, count = _watchers.get(watcher.project, (None, 0))
        if found is not watcher:
            return
        if count > 1:
            _watchers[watcher.project] = (watcher, count - 1)
            return
        del _watchers[watcher.project]
    watcher.stop()
