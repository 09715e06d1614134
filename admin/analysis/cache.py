"""Analysis results kept by file hash: in memory, and in ``VAR_DIR/analysis-cache.sqlite3``.

A key names what the value was computed from (a revision file's sha256, the dialect, the
direction, the analyzer's version, a linter's settings), so a stale value is never read:
an edited file has another hash. The file survives restarts; a panel that cannot write it
keeps its results in memory only.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

FILE_NAME = "analysis-cache.sqlite3"
# Entries kept in memory before the oldest half is dropped.
MEMORY_LIMIT = 200_000

log = logging.getLogger(__name__)


class Cache:
    """JSON values by string key, in memory first, then on disk."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._memory: dict[str, Any] = {}
        self._lock = threading.Lock()
        self._disk_ok = path is not None

    def _connect(self) -> sqlite3.Connection | None:
        if not self._disk_ok or self.path is None:
            return None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            connection = sqlite3.connect(self.path, timeout=5)
            connection.execute(
                "CREATE TABLE IF NOT EXISTS entries (key TEXT PRIMARY KEY, value TEXT NOT NULL)"
            )
            return connection
        except (OSError, sqlite3.Error) as exc:
            log.warning("analysis cache %s unusable, keeping results in memory: %s", self.path, exc)
            self._disk_ok = False
            return None

    def get_many(self, keys: Iterable[str]) -> dict[str, Any]:
        wanted = list(keys)
        found = {k: self._memory[k] for k in wanted if k in self._memory}
        missing = [k for k in wanted if k not in found]
        if not missing:
            return found
        connection = self._connect()
        if connection is None:
            return found
        try:
            with connection:
                for start in range(0, len(missing), 500):
                    chunk = missing[start : start + 500]
                    marks = ",".join("?" * len(chunk))
                    rows = connection.execute(
                        f"SELECT key, value FROM entries WHERE key IN ({marks})", chunk
                    ).fetchall()
                    for key, value in rows:
                        found[key] = json.loads(value)
        except sqlite3.Error as exc:
            log.warning("analysis cache read failed: %s", exc)
        finally:
            connection.close()
        self._remember({k: found[k] for k in missing if k in found})
        return found

    def put_many(self, values: dict[str, Any]) -> None:
        if not values:
            return
        self._remember(values)
        connection = self._connect()
        if connection is None:
            return
        try:
            with connection:
                connection.executemany(
                    "INSERT OR REPLACE INTO entries (key, value) VALUES (?, ?)",
                    [(k, json.dumps(v)) for k, v in values.items()],
                )
        except sqlite3.Error as exc:
            log.warning("analysis cache write failed: %s", exc)
        finally:
            connection.close()

    def _remember(self, values: dict[str, Any]) -> None:
        with self._lock:
            if len(self._memory) + len(values) > MEMORY_LIMIT:
                keep = list(self._memory.items())[len(self._memory) // 2 :]
                self._memory = dict(keep)
            self._memory.update(values)


_caches: dict[Path | None, Cache] = {}
_caches_lock = threading.Lock()


def cache_at(var_dir: Path | None) -> Cache:
    """The process-wide cache kept in ``var_dir`` (None: memory only)."""
    path = (Path(var_dir).resolve() / FILE_NAME) if var_dir is not None else None
    with _caches_lock:
        found = _caches.get(path)
        if found is None:
            found = _caches[path] = Cache(path)
        return found
