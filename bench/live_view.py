"""The live view's cost, and the job page of a long job.

- The sampler (admin/live/sampler.py), in this process, against a real PostgreSQL backend:
  one that waits for a lock behind an idle-in-transaction session with three sessions queued
  behind it, and one running a long statement. Queries per second, time per sample, and the
  CPU this process spent meanwhile (nothing else runs in it).
- Viewers do not add samples (one sampler per running job); what they add is the status
  block each fetches when the live view changes (at most once a second each): its server
  time with a live view shown, measured, times the viewers.
- The job page (``GET /jobs/{id}``) of a finished 5,000-step job: 25,000 log lines grouped
  per step, the step table; server time, in-process, SQLite store.
"""

from __future__ import annotations

import contextlib
import statistics
import threading
import time
from typing import Any

import psycopg2
from fastapi.testclient import TestClient
from sqlalchemy import insert

from admin import migrations
from admin.live import sampler
from admin.store.models import Job, JobLine, JobStatus, utcnow
from admin.web.app import create_app
from bench.context import Context, Databases
from bench.history_page import ServerTime, get, signed_in
from bench.job_upgrade import bench_settings
from bench.report import Row, Section

SECONDS = 10.0
STEPS = 5000
PAGE_TARGET_MS = 200.0


def _dsn(url: str) -> str:
    return url.replace("postgresql+psycopg2://", "postgresql://")


def _session(url: str, *sql: str) -> Any:
    connection = psycopg2.connect(_dsn(url))
    cursor = connection.cursor()
    for statement in sql:
        cursor.execute(statement)
    return connection


def _background(url: str, sql: str) -> tuple[Any, int, threading.Thread]:
    connection = psycopg2.connect(_dsn(url))
    connection.autocommit = True
    cursor = connection.cursor()
    cursor.execute("SELECT pg_backend_pid()")
    pid = int(cursor.fetchone()[0])

    def run() -> None:
        with contextlib.suppress(psycopg2.Error):
            cursor.execute(sql)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return connection, pid, thread


def _sample_for(url: str, pid: int) -> tuple[float, float, float, int]:
    """(samples per second, ms per sample, CPU % of this process, samples)."""
    seen: list[sampler.Sample | None] = []
    watcher = sampler.Sampler(url, lambda: pid, seen.append, name="bench live view")
    cpu, wall = time.process_time(), time.monotonic()
    watcher.start()
    time.sleep(SECONDS)
    watcher.stop()
    cpu, wall = time.process_time() - cpu, time.monotonic() - wall
    engine = migrations.new_engine(url)
    durations = []
    with engine.connect() as connection:
        for _ in range(20):
            started = time.perf_counter()
            sampler.read(connection, pid)
            durations.append(time.perf_counter() - started)
    engine.dispose()
    samples = watcher.samples
    return samples / wall, statistics.median(durations) * 1000, 100 * cpu / wall, samples


def _sampler_rows(url: str, section: Section) -> dict[str, Any]:
    _session(url, "CREATE TABLE IF NOT EXISTS clients (id int)").commit()
    holder = _session(url, "LOCK TABLE clients IN SHARE MODE")
    waiter, pid, _ = _background(url, "ALTER TABLE clients ADD COLUMN note text")
    time.sleep(0.5)
    readers = [_background(url, "SELECT count(*) FROM clients")[0] for _ in range(3)]
    time.sleep(0.5)
    rate, ms, cpu, samples = _sample_for(url, pid)
    engine = migrations.new_engine(url)
    with engine.connect() as connection:
        last = sampler.read(connection, pid)
    engine.dispose()
    holder.rollback()
    holder.close()
    for connection in (waiter, *readers):
        connection.close()
    section.rows += [
        Row(
            None,
            "sampler, a backend waiting for a lock: samples (queries) per second",
            rate,
            unit="/s",
        ),
        Row(None, "sampler: server time of one sample (median of 20)", ms),
        Row(None, "sampler: CPU of the panel process while it samples", cpu, unit="%"),
    ]
    sleeper, pid, _ = _background(url, "SELECT pg_sleep(15)")
    time.sleep(0.3)
    rate2, ms2, cpu2, _ = _sample_for(url, pid)
    sleeper.close()
    section.rows += [
        Row(
            None,
            "sampler, a backend running a long statement: samples per second",
            rate2,
            unit="/s",
        ),
        Row(None, "sampler, long statement: CPU of the panel process", cpu2, unit="%"),
    ]
    section.notes.append(
        f"Sampler: {samples} samples in {SECONDS:g} s while the backend waited for ACCESS "
        f"EXCLUSIVE behind an idle-in-transaction session with "
        f"{(last.get('queued') or {}).get('count')} sessions queued behind it (it samples "
        f"every {sampler.EVERY_WAITING:g} s while a lock wait lasts, so that a short "
        f"lock_timeout does not end a wait unseen, and every {sampler.EVERY:g} s otherwise); "
        "one query per sample (pg_stat_activity, pg_locks, pg_blocking_pids, the progress "
        "views), on a connection of its own. Viewers add no samples: one sampler per running "
        "job, whoever watches."
    )
    return last


def _job_with_steps(client: TestClient, live: dict[str, Any] | None) -> int:
    runtime = client.app.state.runtime  # type: ignore[attr-defined]
    now = utcnow()
    status = JobStatus.RUNNING.value if live else JobStatus.SUCCEEDED.value
    steps = [
        {
            "step": n,
            "revision": f"r{n:05d}",
            "label": f"upgrade r{n - 1:05d} -> r{n:05d}",
            "duration": 0.004,
            "rows": 3,
            "lock_wait": 0.0,
        }
        for n in range(1, STEPS + 1)
    ]
    with runtime.transaction() as session:
        job = Job(
            kind="upgrade",
            status=status,
            target_key=f"bench-{status}",
            target_display="bench",
            target_revision="head",
            steps_total=STEPS,
            steps_done=STEPS,
            requested_by="bench",
            source="cli",
            created_at=now,
            started_at=now,
            finished_at=None if live else now,
            live=live,
            live_version=1 if live else 0,
            step_stats=steps,
        )
        session.add(job)
        session.flush()
        job_id = job.id
    rows: list[dict[str, Any]] = []
    seq = 0
    for n in range(1, STEPS + 1):
        for level, text in (
            ("step", f"[{n}/{STEPS}] Running upgrade r{n - 1:05d} -> r{n:05d}, step {n}"),
            ("sql", f"CREATE TABLE t{n:05d} (\n    id INTEGER NOT NULL,\n    PRIMARY KEY (id)\n)"),
            ("sql", f"UPDATE alembic_version SET version_num='r{n:05d}'"),
            ("debug", "SELECT pg_catalog.pg_class.relname FROM pg_catalog.pg_class"),
            ("step", f"[{n}/{STEPS}] upgrade r{n - 1:05d} -> r{n:05d} done in 0.004s"),
        ):
            seq += 1
            rows.append(
                {
                    "job_id": job_id,
                    "seq": seq,
                    "created_at": now,
                    "stream": "worker",
                    "level": level,
                    "text": text,
                }
            )
    with runtime.transaction() as session:
        session.execute(insert(JobLine), rows)
    return int(job_id)


def _timed(client: TestClient, samples: list[float], path: str, hx: bool, runs: int) -> float:
    get(client, path, hx)
    found = []
    for _ in range(runs):
        samples.clear()
        get(client, path, hx)
        found.append(samples[-1])
    return statistics.median(found) * 1000


def measure(ctx: Context) -> Section:
    section = Section("live view")
    databases = Databases(ctx.server_url)
    try:
        url = databases.create("liveview")
        last = _sampler_rows(url, section)
        settings = bench_settings(
            ctx.workdir / "live-view",
            admin_database_url=f"sqlite:///{ctx.workdir / 'live-view-store.sqlite3'}",
            database_url=url,
        )
        app = create_app(settings)
        samples: list[float] = []
        app.add_middleware(ServerTime, samples=samples)
        with TestClient(app) as client:
            signed_in(client)
            done = _job_with_steps(client, None)
            page_ms = _timed(client, samples, f"/jobs/{done}", False, 5)
            size = get(client, f"/jobs/{done}")
            running = _job_with_steps(client, last)
            status_ms = _timed(client, samples, f"/jobs/{running}", True, 20)
        section.rows += [
            Row(
                STEPS,
                "`GET /jobs/{id}` of a finished 5,000-step job (25,000 lines)",
                page_ms,
                target=f"≤ {PAGE_TARGET_MS:g} ms",
                met=page_ms <= PAGE_TARGET_MS,
            ),
            Row(
                None,
                "status block with the live view (what a viewer fetches on a change)",
                status_ms,
            ),
            Row(
                None,
                "status blocks per second for 100 viewers (CPU ms per second)",
                status_ms * 100,
            ),
        ]
        section.notes.append(
            f"The job page of the 5,000-step job is {size / 1024:.0f} KiB of HTML: its first "
            "lines and its last 500 grouped per step, the 24,000 between folded in ranges of "
            "2,000 loaded when opened (`GET /jobs/{id}/lines`), the step table loaded when "
            "opened (`GET /jobs/{id}/steps`); the whole log is one click away as text. "
            "While a live view changes, each viewer "
            "fetches the status block at most once a second (PageEvents in "
            "admin/web/livelog.py): 1 viewer costs one fetch a second, 100 viewers up to 100, "
            "whose server time is the last row (one core's ms per second, in-process, SQLite "
            "store)."
        )
    finally:
        databases.drop_all()
    return section
