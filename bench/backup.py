"""A backup job against raw ``pg_dump -Fc`` of the same database; verification apart.

The database is made by ``pgbench -i -s SCALE`` (SCALE 50, about 800 MB, by default; set
BENCH_BACKUP_SCALE for a quick run, e.g. 5). The panel's side is what ``schema-admin
backup`` does: ``run_in_foreground`` (submit → worker process → migration lock → revision
read → pg_dump into a staged file, fsync, rename, sha256 → pg_restore --list and a full read
→ Backup row and audit events in a PostgreSQL store), timed from submit to succeeded. The
raw side is ``pg_dump -Fc -f FILE`` as a person types it. Runs alternate between the two.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import time
from pathlib import Path

from sqlalchemy import create_engine, text

from admin import audit
from admin.backups import records
from admin.backups.conninfo import parse_target
from admin.backups.tools import find as find_tool
from admin.config import Settings
from admin.jobs import JobRequest, run_in_foreground
from admin.runtime import Runtime
from admin.store.models import Backup, JobKind, Source
from bench.context import Context, Databases
from bench.report import Row, Section

DEFAULT_SCALE = 50
TARGET_THROUGHPUT = 0.95  # the job's dump throughput against raw pg_dump's
SECRET = "bench-secret-key-0123456789-abcdefghijklmnopqrstuvwxyz"
PGBENCH_DIRS = (Path("/usr/lib/postgresql/15/bin"), Path("/usr/bin"))


def scale() -> int:
    return int(os.environ.get("BENCH_BACKUP_SCALE", DEFAULT_SCALE))


def _pgbench() -> Path:
    for directory in PGBENCH_DIRS:
        if (directory / "pgbench").is_file():
            return directory / "pgbench"
    found = shutil.which("pgbench")
    if found is None:
        raise RuntimeError("pgbench is missing: apt-get install postgresql-contrib")
    return Path(found)


class _Databases(Databases):
    def size(self, url: str) -> int:
        engine = create_engine(url)
        try:
            with engine.connect() as connection:
                return int(
                    connection.execute(
                        text("SELECT pg_database_size(current_database())")
                    ).scalar_one()
                )
        finally:
            engine.dispose()


def _environment(url: str) -> tuple[str, dict[str, str]]:
    """A libpq conninfo string and the environment for the raw tools (password in env)."""
    target = parse_target(url)
    return target.conninfo("bench"), target.environment()


def _run(argv: list[str], env: dict[str, str]) -> None:
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=3600)
    if done.returncode != 0:
        raise RuntimeError(f"{argv[0]} failed: {done.stderr.strip()[-500:]}")


def _fill(url: str, n: int) -> float:
    conninfo, env = _environment(url)
    started = time.perf_counter()
    _run([str(_pgbench()), "-i", "-q", "-s", str(n), conninfo], env)
    return time.perf_counter() - started


def _raw_dump(url: str, out: Path) -> float:
    conninfo, env = _environment(url)
    pg_dump = find_tool("pg_dump", None)
    started = time.perf_counter()
    _run([str(pg_dump.path), "-Fc", "-f", str(out), f"--dbname={conninfo}"], env)
    return time.perf_counter() - started


def _mb_s(size: int, seconds: float) -> str:
    return f"{size / 1024 / 1024 / seconds:,.0f} MB/s"


def measure(ctx: Context) -> Section:
    n = scale()
    section = Section("backup job vs pg_dump -Fc")
    databases = _Databases(ctx.server_url)
    raw: list[float] = []
    job_total: list[float] = []
    job_dump: list[float] = []
    job_latency: list[float] = []
    verify: list[float] = []
    sizes: list[int] = []
    workdir = ctx.workdir / "backup-bench"
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        target = databases.create("pgbench")
        fill_s = _fill(target, n)
        db_size = databases.size(target)
        store = databases.create("bkstore")
        settings = Settings(
            _env_file=None,  # type: ignore[call-arg]
            secret_key=SECRET,
            database_url=target,
            admin_database_url=store,
            var_dir=workdir / "var",
            backup_dir=workdir / "backups",
            backup_keep_last=0,
            backup_keep_days=0,
            log_level="WARNING",
        )
        runtime = Runtime.open(settings)
        actor = audit.Actor("bench", None, Source.CLI)
        runtime.upgrade_store(actor)
        try:
            for i in range(ctx.runs):
                order = ("raw", "job") if i % 2 == 0 else ("job", "raw")
                for side in order:
                    if side == "raw":
                        out = workdir / f"raw-{i}.dump"
                        raw.append(_raw_dump(target, out))
                        sizes.append(out.stat().st_size)
                        out.unlink()
                        continue
                    started = time.perf_counter()
                    job = run_in_foreground(
                        runtime,
                        JobRequest(JobKind.BACKUP, options={"format": "custom"}),
                        actor,
                        echo=lambda _: None,
                    )
                    elapsed = time.perf_counter() - started
                    if job.status != "succeeded" or job.backup_id is None:
                        raise RuntimeError(
                            f"the bench backup job {job.id} {job.status}: {job.error}"
                        )
                    with runtime.reads() as session:
                        backup: Backup = records.get(session, job.backup_id)
                    verify_s = (backup.verify_ms or 0) / 1000
                    job_total.append(elapsed)
                    verify.append(verify_s)
                    job_latency.append(elapsed - verify_s)
                    job_dump.append((backup.duration_ms or 0) / 1000)
                    (settings.backup_dir / (backup.file_name or "")).unlink(missing_ok=True)
        finally:
            runtime.close()
    finally:
        databases.drop_all()
    raw_ms = statistics.median(raw) * 1000
    dump_ms = statistics.median(job_dump) * 1000
    latency_ms = statistics.median(job_latency) * 1000
    throughput = raw_ms / dump_ms
    dump_size = int(statistics.median(sizes))
    target = f"throughput ≥ {TARGET_THROUGHPUT:.2f}× (time ≤ {1 / TARGET_THROUGHPUT:.3f}×)"
    section.rows += [
        Row(
            n,
            "backup job's dump: pg_dump → file fsynced, renamed, sha256 (timed in the job)",
            dump_ms,
            "`pg_dump -Fc -f FILE`",
            raw_ms,
            target,
            throughput >= TARGET_THROUGHPUT,
            ours_best=min(job_dump) * 1000,
        ),
        Row(
            n,
            "verification: pg_restore --list + full read (timed in the job)",
            statistics.median(verify) * 1000,
            ours_best=min(verify) * 1000,
        ),
        Row(
            n,
            "backup job end to end, submit → succeeded, verification excluded",
            latency_ms,
            "`pg_dump -Fc -f FILE`",
            raw_ms,
            ours_best=min(job_latency) * 1000,
        ),
        Row(
            n,
            "backup job end to end, submit → succeeded, all",
            statistics.median(job_total) * 1000,
            "`pg_dump -Fc -f FILE`",
            raw_ms,
            ours_best=min(job_total) * 1000,
        ),
    ]
    section.notes += [
        f"`pgbench -i -s {n}` database: {db_size / 1024 / 1024:,.0f} MB on disk (made in "
        f"{fill_s:.0f} s); its custom-format dump is {dump_size / 1024 / 1024:,.1f} MB. The "
        "*revisions* column is the pgbench scale here.",
        f"Dump throughput over the database's size: raw pg_dump {_mb_s(db_size, raw_ms / 1000)},"
        f" the backup job's dump {_mb_s(db_size, dump_ms / 1000)}: ratio {throughput:.3f}× "
        f"(target ≥ {TARGET_THROUGHPUT:.2f}×). The job's dump is pg_dump --verbose with its "
        "stderr read line by line into the job's log, a progress line a second, then fsync, "
        "rename and the sha256 of the file.",
        f"End to end the job adds a fixed {(latency_ms - dump_ms) / 1000:.1f} s (median) that "
        "does not grow with the database: starting the worker process (a Python interpreter "
        "importing SQLAlchemy, Alembic and pydantic), the migration lock, reading the "
        "revision, the Backup row and audit events in a PostgreSQL store, and the supervisor "
        "recording the outcome.",
        f"{ctx.runs} runs each, alternating which side goes first; files deleted after each "
        "run. Each run, raw pg_dump / the job's dump / verification, in seconds: "
        + "; ".join(
            f"{r:.1f} / {d:.1f} / {v:.1f}" for r, d, v in zip(raw, job_dump, verify, strict=True)
        )
        + f" (best raw {min(raw):.1f} s, best job dump {min(job_dump):.1f} s: ratio "
        f"{min(raw) / min(job_dump):.3f}×). BENCH_BACKUP_SCALE sets the scale (a quick run: 5).",
    ]
    return section
