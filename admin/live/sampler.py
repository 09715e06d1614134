"""What PostgreSQL says about one backend, about once a second (one query per sample).

The sampler has its own connection to the target (autocommit, a short statement_timeout,
its own application_name) and reads, for the job's backend:

- ``backend``: state, wait event, the statement and how long it has run;
- ``waiting``: the lock it waits for (mode, relation or lock type, since when);
- ``blockers``: ``pg_blocking_pids`` with user, application, client, state, transaction
  age and query;
- ``queued``: how many sessions wait behind it, and the oldest wait;
- ``progress``: CREATE INDEX [CONCURRENTLY], CLUSTER / VACUUM FULL, VACUUM, ANALYZE
  (command, phase, done / total).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from sqlalchemy import Connection, Engine, text

from admin import migrations

log = logging.getLogger(__name__)

# Seconds between two samples; shorter while the backend waits for a lock (a short
# lock_timeout must not end the wait unseen).
EVERY = 1.0
EVERY_WAITING = 0.25

Sample = dict[str, Any]

SAMPLE_SQL = text(
    """
WITH me AS (
  SELECT pid, state, wait_event_type, wait_event, left(query, 2000) AS query,
         extract(epoch FROM clock_timestamp() - query_start)::float AS query_seconds,
         extract(epoch FROM clock_timestamp() - xact_start)::float AS xact_seconds
  FROM pg_stat_activity WHERE pid = :pid
), waiting AS (
  SELECT l.locktype, l.mode, CASE WHEN l.relation IS NOT NULL
           THEN l.relation::regclass::text END AS relation,
         extract(epoch FROM clock_timestamp() - coalesce(
           (to_jsonb(l) ->> 'waitstart')::timestamptz, a.query_start))::float AS seconds
  FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
  WHERE l.pid = :pid AND NOT l.granted LIMIT 1
), blockers AS (
  SELECT a.pid, a.usename AS user, a.application_name AS application,
         host(a.client_addr) AS client, a.state, left(a.query, 500) AS query,
         extract(epoch FROM clock_timestamp() - a.xact_start)::float AS xact_seconds,
         extract(epoch FROM clock_timestamp() - a.state_change)::float AS state_seconds
  FROM pg_stat_activity a WHERE a.pid = ANY(pg_blocking_pids(:pid)) ORDER BY a.pid
), queued AS (
  SELECT count(*) AS count,
         max(extract(epoch FROM clock_timestamp() - a.query_start))::float AS oldest_seconds
  FROM pg_stat_activity a WHERE a.pid <> :pid AND :pid = ANY(pg_blocking_pids(a.pid))
), progress AS (
  SELECT p.command, p.phase,
         CASE WHEN p.blocks_total > 0 THEN p.blocks_done
              WHEN p.tuples_total > 0 THEN p.tuples_done
              WHEN p.lockers_total > 0 THEN p.lockers_done END AS done,
         CASE WHEN p.blocks_total > 0 THEN p.blocks_total
              WHEN p.tuples_total > 0 THEN p.tuples_total
              WHEN p.lockers_total > 0 THEN p.lockers_total END AS total,
         CASE WHEN p.blocks_total > 0 THEN 'blocks'
              WHEN p.tuples_total > 0 THEN 'tuples'
              WHEN p.lockers_total > 0 THEN 'lockers' END AS unit,
         p.relid::regclass::text AS relation
  FROM pg_stat_progress_create_index p WHERE p.pid = :pid
  UNION ALL
  SELECT p.command, p.phase, p.heap_blks_scanned, nullif(p.heap_blks_total, 0), 'blocks',
         p.relid::regclass::text
  FROM pg_stat_progress_cluster p WHERE p.pid = :pid
  UNION ALL
  SELECT 'VACUUM', p.phase, p.heap_blks_scanned, nullif(p.heap_blks_total, 0), 'blocks',
         p.relid::regclass::text
  FROM pg_stat_progress_vacuum p WHERE p.pid = :pid
  UNION ALL
  SELECT 'ANALYZE', p.phase, p.sample_blks_scanned, nullif(p.sample_blks_total, 0), 'blocks',
         p.relid::regclass::text
  FROM pg_stat_progress_analyze p WHERE p.pid = :pid
)
SELECT (SELECT row_to_json(me) FROM me) AS backend,
       (SELECT row_to_json(waiting) FROM waiting) AS waiting,
       (SELECT coalesce(json_agg(blockers), '[]'::json) FROM blockers) AS blockers,
       (SELECT row_to_json(queued) FROM queued) AS queued,
       (SELECT row_to_json(progress) FROM progress LIMIT 1) AS progress
"""
)


def read(connection: Connection, pid: int) -> Sample:
    """One sample of backend ``pid`` (``backend`` is None once it is gone)."""
    row = connection.execute(SAMPLE_SQL, {"pid": pid}).one()
    queued = row.queued or {"count": 0, "oldest_seconds": None}
    return {
        "pid": pid,
        "at": time.time(),
        "backend": row.backend,
        "waiting": row.waiting,
        "blockers": list(row.blockers or []),
        "queued": queued,
        "progress": row.progress,
    }


def worth_showing(sample: Sample | None) -> bool:
    """Something a person watching should see: a wait, a blocker, sessions queued behind
    the job, a progress, or a statement running for more than a second."""
    if not sample or not sample.get("backend"):
        return False
    backend = sample["backend"]
    long_statement = backend.get("state") == "active" and (backend.get("query_seconds") or 0) >= 1
    return bool(
        sample.get("waiting")
        or sample.get("blockers")
        or (sample.get("queued") or {}).get("count")
        or sample.get("progress")
        or long_statement
    )


class Sampler:
    """A thread that samples the backend ``pid_of()`` names until ``stop()``; each sample
    goes to ``on_sample`` (None: nothing to sample now)."""

    def __init__(
        self,
        url: str,
        pid_of: Callable[[], int | None],
        on_sample: Callable[[Sample | None], None],
        *,
        name: str = "schema-admin live view",
        every: float = EVERY,
    ) -> None:
        self.url = url
        self.pid_of = pid_of
        self.on_sample = on_sample
        self.name = name
        self.every = every
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="live-sampler", daemon=True)
        self._engine: Engine | None = None

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _loop(self) -> None:
        connection: Connection | None = None
        try:
            while not self._stop.is_set():
                pid = self.pid_of()
                sample: Sample | None = None
                if pid:
                    try:
                        if connection is None:
                            connection = self._connect()
                        sample = read(connection, pid)
                        self.samples += 1
                    except Exception as exc:  # the live view is a help, never the job's end
                        log.debug("live view: sampling failed: %s", exc)
                        if connection is not None:
                            connection.close()
                        connection = None
                self.on_sample(sample)
                waiting = bool(sample and sample.get("waiting"))
                self._stop.wait(EVERY_WAITING if waiting else self.every)
        finally:
            if connection is not None:
                connection.close()
            if self._engine is not None:
                self._engine.dispose()

    def _connect(self) -> Connection:
        if self._engine is None:
            self._engine = migrations.new_engine(
                self.url, application_name=self.name, autocommit=True
            )
        connection = self._engine.connect()
        connection.execute(text("SET statement_timeout = '2s'"))
        connection.execute(text("SET lock_timeout = '1s'"))
        return connection
