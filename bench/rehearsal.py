"""A rehearsal job against the raw tools: its restore against raw ``pg_restore -j``, and its
instrumented upgrade against the same plan run by the plain upgrade job.

The target is a ``pgbench -i -s SCALE`` database (SCALE 50, about 750 MB, by default; set
BENCH_REHEARSAL_SCALE for a quick run) with the CRM's schema at the merge revision and
BENCH_REHEARSAL_DEALS deals (default 200,000), half as many clients and as many activities:
the plan (the irreversible drop of clients.passport_number, the deals backfill, the
activities index built concurrently) has real work to do. A backup job takes one verified
backup first (not timed). Then, alternating per run:

- raw: CREATE DATABASE and ``pg_restore -j N`` of that file (N as the rehearsal uses),
  ANALYZE (not timed), and the plain upgrade job run on that copy (a job whose target is the
  copy): its run timed from its "taking the migration lock" line to its last step line;
- ours: a rehearsal job on the target: its restore (scratch database created, parallel
  pg_restore) and its instrumented upgrade (lock, run, per-statement locks, per-step
  snapshots), both as its report times them.
"""

from __future__ import annotations

import os
import statistics
import time
from pathlib import Path

from sqlalchemy import create_engine, select, text
from sqlalchemy.engine import make_url

from admin import audit, migrations
from admin.backups import records as backup_records
from admin.backups.tools import find as find_tool
from admin.config import Settings
from admin.jobs import JobRequest, run_in_foreground
from admin.rehearsal import actions, records
from admin.runtime import Runtime
from admin.store.models import JobKind, JobLine, Source
from bench.backup import SECRET, _Databases, _environment, _fill, _run
from bench.context import Context, run_admin_sql
from bench.report import Row, Section

DEFAULT_SCALE = 50
DEFAULT_DEALS = 200_000
TARGET_RESTORE = 0.9  # the rehearsal's restore throughput against raw pg_restore -j
TARGET_RUN = 1.3  # the instrumented upgrade's time against the plain upgrade job's
REPO = Path(__file__).resolve().parent.parent
MERGE = "b5f2c8d91e03"


def _seed(url: str, deals: int) -> None:
    clients = deals // 2
    engine = create_engine(url)
    statements = [
        "INSERT INTO users (id, email, password_hash, full_name, role) SELECT i, 'a' || i || "
        "'@apex.asia', 'x', 'Agent ' || i, 'agent' FROM generate_series(1, 50) i",
        "INSERT INTO agents (id, user_id, commission_rate) "
        "SELECT i, i, 1 + (i % 4) * 0.5 FROM generate_series(1, 50) i",
        "INSERT INTO clients (id, full_name, phone, passport_number, agent_id) SELECT i, "
        f"'Client ' || i, '+66 ' || i, 'P' || i, 1 + i % 50 FROM generate_series(1, {clients}) i",
        "INSERT INTO properties (id, title, property_type, price, currency, city, district, "
        "latitude, longitude, agent_id) SELECT i, 'Condo ' || i, 'condo', 100000 + i, 'USD', "
        "'Phuket', 'Kata', 7.82, 98.29, 1 + i % 50 FROM generate_series(1, 1000) i",
        "INSERT INTO deals (id, property_id, client_id, agent_id, stage, amount, currency) "
        f"SELECT i, 1 + i % 1000, 1 + i % {clients}, CASE WHEN i % 10 = 0 THEN NULL "
        "ELSE 1 + i % 50 END, 'lead', CASE WHEN i % 7 = 0 THEN NULL ELSE 1000 + i END, 'USD' "
        f"FROM generate_series(1, {deals}) i",
        "INSERT INTO activities (client_id, deal_id, agent_id, kind, subject, occurred_at) "
        f"SELECT 1 + i % {clients}, 1 + i % {deals}, 1 + i % 50, 'viewing', 'Viewing ' || i, "
        f"now() - i * interval '1 minute' FROM generate_series(1, {deals}) i",
    ]
    try:
        with engine.begin() as connection:
            for statement in statements:
                connection.execute(text(statement))
    finally:
        engine.dispose()


def _upgrade(settings: Settings, target: str) -> None:
    project = migrations.open_project(settings.alembic_config)
    engine = migrations.new_engine(settings.database_url)
    try:
        with engine.connect() as connection:
            migrations.run(
                project, connection, migrations.Command.UPGRADE, target, on_event=lambda e: None
            )
    finally:
        engine.dispose()


def _settings(workdir: Path, target: str, store: str) -> Settings:
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        secret_key=SECRET,
        database_url=target,
        admin_database_url=store,
        alembic_config=REPO / "alembic.ini",
        var_dir=workdir / "var",
        backup_dir=workdir / "backups",
        backup_keep_last=0,
        backup_keep_days=0,
        log_level="WARNING",
    )


def _raw_restore(server: str, name: str, path: Path, jobs: int) -> float:
    started = time.perf_counter()
    run_admin_sql(server, f'CREATE DATABASE "{name}" TEMPLATE template0')
    url = _with_database(server, name)
    conninfo, env = _environment(url)
    tool = find_tool("pg_restore", None)
    _run(
        [str(tool.path), "--no-password", f"--jobs={jobs}", f"--dbname={conninfo}", str(path)], env
    )
    return time.perf_counter() - started


def _with_database(server: str, name: str) -> str:
    return make_url(server).set(database=name).render_as_string(hide_password=False)


def _plain_run_seconds(runtime: Runtime, job_id: int) -> float:
    """The upgrade job's run: from taking the migration lock to its last step line."""
    with runtime.reads() as session:
        lines = list(
            session.scalars(select(JobLine).where(JobLine.job_id == job_id).order_by(JobLine.seq))
        )
    began = next(line.created_at for line in lines if "taking the migration lock" in line.text)
    ended = [line.created_at for line in lines if line.level == "step"][-1]
    return (ended - began).total_seconds()


def measure(ctx: Context) -> Section:
    scale = int(os.environ.get("BENCH_REHEARSAL_SCALE", DEFAULT_SCALE))
    deals = int(os.environ.get("BENCH_REHEARSAL_DEALS", DEFAULT_DEALS))
    jobs = max(2, min(8, os.cpu_count() or 2))
    section = Section("rehearsal vs pg_restore -j and the upgrade job")
    databases = _Databases(ctx.server_url)
    workdir = ctx.workdir / "rehearsal-bench"
    workdir.mkdir(parents=True, exist_ok=True)
    actor = audit.Actor("bench", None, Source.CLI)
    raw_restore: list[float] = []
    our_restore: list[float] = []
    plain_run: list[float] = []
    our_run: list[float] = []
    notes: list[str] = []
    try:
        target = databases.create("rhpgbench")
        fill_s = _fill(target, scale)
        store = databases.create("rhstore")
        settings = _settings(workdir, target, store)
        _upgrade(settings, MERGE)
        _seed(target, deals)
        run_admin_sql(ctx.server_url, "CHECKPOINT")
        size = databases.size(target)
        runtime = Runtime.open(settings)
        runtime.upgrade_store(actor)
        try:
            backup_job = run_in_foreground(
                runtime,
                JobRequest(JobKind.BACKUP, options={"format": "custom"}),
                actor,
                echo=lambda _: None,
            )
            assert backup_job.status == "succeeded", backup_job.error
            with runtime.reads() as session:
                backup = backup_records.get(session, backup_job.backup_id or 0)
            path = settings.backup_dir / (backup.file_name or "")
            for i in range(ctx.runs):
                for side in ("raw", "ours") if i % 2 == 0 else ("ours", "raw"):
                    if side == "raw":
                        name = f"rh_raw_copy_{i}"
                        raw_restore.append(_raw_restore(ctx.server_url, name, path, jobs))
                        copy = _with_database(ctx.server_url, name)
                        databases.created.append(name)
                        run_admin_sql(copy, "ANALYZE")
                        copy_settings = _settings(workdir / f"copy{i}", copy, store)
                        copy_rt = Runtime.open(copy_settings)
                        try:
                            job = run_in_foreground(
                                copy_rt,
                                JobRequest(JobKind.UPGRADE, "heads"),
                                actor,
                                echo=lambda _: None,
                            )
                            assert job.status == "succeeded", job.error
                            plain_run.append(_plain_run_seconds(copy_rt, job.id))
                        finally:
                            copy_rt.close()
                        run_admin_sql(ctx.server_url, f'DROP DATABASE "{name}" WITH (FORCE)')
                        continue
                    job = run_in_foreground(
                        runtime, actions.rehearsal_request("heads"), actor, echo=lambda _: None
                    )
                    assert job.status == "succeeded", job.error
                    with runtime.reads() as session:
                        row = records.of_job(session, job.id)
                    assert row is not None and row.report is not None
                    our_restore.append(row.report["restore"]["seconds"])
                    our_run.append(row.report["upgrade"]["seconds"])
                    if i == 0:
                        notes.append(
                            f"Rehearsal summary (run 1): {row.report['summary']['headline']}."
                        )
        finally:
            runtime.close()
    finally:
        databases.drop_all()
        migrations.dispose_engines()
    raw_ms = statistics.median(raw_restore) * 1000
    ours_ms = statistics.median(our_restore) * 1000
    plain_ms = statistics.median(plain_run) * 1000
    run_ms = statistics.median(our_run) * 1000
    section.rows += [
        Row(
            scale,
            f"rehearsal's restore: scratch database + pg_restore --jobs={jobs} (timed in the job)",
            ours_ms,
            f"CREATE DATABASE + `pg_restore -j {jobs}`",
            raw_ms,
            f"throughput ≥ {TARGET_RESTORE:.1f}× (time ≤ {1 / TARGET_RESTORE:.2f}×)",
            raw_ms / ours_ms >= TARGET_RESTORE,
            ours_best=min(our_restore) * 1000,
        ),
        Row(
            scale,
            "rehearsal's instrumented upgrade (locks per statement, snapshots per step)",
            run_ms,
            "the plain upgrade job's run on a copy",
            plain_ms,
            f"≤ {TARGET_RUN:.1f}×",
            run_ms / plain_ms <= TARGET_RUN,
            ours_best=min(our_run) * 1000,
        ),
    ]
    section.notes += [
        f"`pgbench -i -s {scale}` plus the CRM schema at {MERGE} with {deals:,} deals, "
        f"{deals // 2:,} clients and {deals:,} activities: {size / 1024 / 1024:,.0f} MB on disk "
        f"(pgbench fill {fill_s:.0f} s); the backup is {backup.size_bytes or 0:,} bytes "
        f"(custom format). The plan: {MERGE} → head (3 steps).",
        f"{ctx.runs} runs alternating which side goes first. Restore seconds raw / ours: "
        + ", ".join(f"{a:.1f} / {b:.1f}" for a, b in zip(raw_restore, our_restore, strict=False))
        + "; upgrade seconds plain job / instrumented: "
        + ", ".join(f"{a:.2f} / {b:.2f}" for a, b in zip(plain_run, our_run, strict=False))
        + ".",
        "The rehearsal's restore also creates the scratch database from template0 with the "
        "target's encoding and collation, checks the file's sha256 against the backup's record "
        "and passes pg_restore's --verbose lines into the job's log; ANALYZE after it is not "
        "counted on either side (the raw copy gets one too, untimed).",
        *notes,
    ]
    return section
