"""CLI start-up side by side with `alembic` on a 1,000-revision project (issue 14).

Wall time of the command as a person types it (process start included), each side run in
turn, ``runs`` times (at least ``MIN_RUNS``), median and best:

- `schema-admin status` against `alembic current` (the database stamped at the head);
- `schema-admin history` against `alembic history`;
- a job's worker from its start (``Popen``, as the supervisor starts it) to the migration
  lock taken (read on its control channel), against `python -c "import alembic"` (wall) and
  alembic's own import time (``-X importtime``).

The panel's commands run with the cache in ``VAR_DIR/cache`` left by a first run (the
state after any earlier command); the first, cold, run is a row of its own. Where the
panel's side is slower, the notes list its largest imports (``-X importtime``) and calls
(cProfile) beside the raw tool's.
"""

from __future__ import annotations

import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import text

from bench import public_projects
from bench.context import Context, Databases
from bench.job_upgrade import SECRET, _ini_for
from bench.report import Row, Section, load_average
from bench.timing import ALEMBIC, Timing

if TYPE_CHECKING:
    from admin.config import Settings
    from admin.jobs.ownership import Owner
    from admin.store.models import Job

SIZE = 1000
MIN_RUNS = 7
SCHEMA_ADMIN = public_projects.SCHEMA_ADMIN
_IMPORT_LINE = re.compile(r"^import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)")


def stamp(url: str, heads: tuple[str, ...]) -> None:
    """The version table at ``heads``, written directly (no revision is imported or run)."""
    from admin import migrations

    engine = migrations.new_engine(url)
    try:
        with engine.begin() as connection:
            connection.execute(
                text("CREATE TABLE alembic_version (version_num VARCHAR(32) PRIMARY KEY)")
            )
            for head in heads:
                connection.execute(text("INSERT INTO alembic_version VALUES (:h)"), {"h": head})
    finally:
        engine.dispose()


def timed(args: list[str], env: dict[str, str], cwd: Path, expect: int = 0) -> float:
    started = time.perf_counter()
    done = subprocess.run(args, env=env, cwd=cwd, capture_output=True, text=True, timeout=1800)
    elapsed = time.perf_counter() - started
    if done.returncode != expect:
        raise RuntimeError(f"{' '.join(args)} exited {done.returncode}: {done.stderr[-800:]}")
    return elapsed


def side_by_side(
    ours: list[str],
    theirs: list[str],
    env: dict[str, str],
    cwd: Path,
    runs: int,
    expect: int = 0,
) -> tuple[Timing, Timing]:
    """Alternating runs of both commands (the machine's load weighs on both alike); ours
    exits ``expect``."""
    a: list[float] = []
    b: list[float] = []
    for n in range(runs):
        pair = ((ours, a), (theirs, b)) if n % 2 == 0 else ((theirs, b), (ours, a))
        for args, samples in pair:
            samples.append(timed(args, env, cwd, expect if samples is a else 0))
    return (
        Timing(statistics.median(a), min(a), runs),
        Timing(statistics.median(b), min(b), runs),
    )


def top_imports(args: list[str], env: dict[str, str], cwd: Path, count: int = 8) -> str:
    """The largest top-level imports of a command (``-X importtime``, cumulative ms)."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=600,
    )
    found: list[tuple[int, str]] = []
    total = 0
    for line in done.stderr.splitlines():
        m = _IMPORT_LINE.match(line)
        if m and len(m.group(3)) == 1:  # top-level imports only (one space of indent)
            found.append((int(m.group(2)), m.group(4)))
            total += int(m.group(2))
    found.sort(reverse=True)
    shown = ", ".join(f"`{name}` {us / 1000:.0f} ms" for us, name in found[:count])
    return f"{total / 1000:.0f} ms of imports in all; largest: {shown}"


def top_calls(args: list[str], env: dict[str, str], cwd: Path, count: int = 8) -> str:
    """The calls with the most cumulative time (cProfile), outside imports."""
    done = subprocess.run(
        [sys.executable, "-m", "cProfile", "-s", "cumulative", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=600,
    )
    rows = []
    for line in done.stdout.splitlines():
        parts = line.split(None, 5)
        if len(parts) == 6 and parts[3].replace(".", "").isdigit() and "{" not in parts[5]:
            if "_bootstrap" in parts[5] or "<module>" in parts[5] or "exec" in parts[5]:
                continue
            rows.append(f"`{parts[5].strip()}` {float(parts[3]) * 1000:.0f} ms")
        if len(rows) >= count:
            break
    return "; ".join(rows)


def worker_to_lock(ctx: Context, ini: Path, before_head: str, runs: int) -> Timing:
    """A real upgrade job's worker (one step to go), started as the supervisor starts it,
    to "lock taken"."""
    from admin import audit
    from admin.jobs import JobRequest, queue
    from admin.jobs.ownership import Owner
    from admin.runtime import Runtime
    from admin.store.models import JobKind, Source
    from bench.job_upgrade import bench_settings

    databases = Databases(ctx.server_url)
    samples: list[float] = []
    try:
        store = f"sqlite:///{ctx.workdir / 'startup-store.sqlite3'}"
        actor = audit.Actor("bench", None, Source.CLI)
        for _ in range(runs):
            target = databases.create("lock")
            stamp(target, (before_head,))
            settings = bench_settings(
                ctx.workdir, admin_database_url=store, alembic_config=ini, database_url=target
            )
            rt = Runtime.open(settings)
            try:
                rt.upgrade_store(actor)
                job = queue.submit(rt, JobRequest(JobKind.UPGRADE, "heads"), actor)
                owner = Owner.new("supervisor")
                queue.claim(rt, job.id, owner)
                samples.append(_spawn_to_lock(job, settings, owner))
            finally:
                rt.close()
    finally:
        databases.drop_all()
    return Timing(statistics.median(samples), min(samples), runs)


def _spawn_to_lock(job: Job, settings: Settings, owner: Owner) -> float:
    from admin.jobs.supervisor import work_order, worker_command, worker_env

    control, control_end = os.pipe()
    started = time.perf_counter()
    proc = subprocess.Popen(
        worker_command(job.id, control_end),
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        pass_fds=(control_end,),
        text=True,
        env=worker_env(settings),
    )
    os.close(control_end)
    assert proc.stdin is not None
    proc.stdin.write(work_order(job, settings, owner).encode())
    proc.stdin.close()
    elapsed = None
    with os.fdopen(control, "r") as lines:
        for line in lines:
            if elapsed is None and '"lock taken"' in line:
                elapsed = time.perf_counter() - started
    proc.wait(timeout=600)
    if elapsed is None:
        raise RuntimeError(f"the worker never said 'lock taken' (exit {proc.returncode})")
    return elapsed


def measure(ctx: Context) -> Section:
    databases = Databases(ctx.server_url)
    try:
        return _measure(ctx, databases)
    finally:
        databases.drop_all()


def _measure(ctx: Context, behind_databases: Databases) -> Section:
    section = Section("CLI start-up")
    load_before = load_average()
    generated = ctx.project(SIZE)
    runs = max(ctx.runs, MIN_RUNS)
    url = ctx.database_at_head(SIZE)
    env = {
        **os.environ,
        "PYTHONWARNINGS": "ignore",
        "DATABASE_URL": public_projects.plain(url),
        "ALEMBIC_CONFIG": str(generated.ini),
        "ADMIN_DATABASE_URL": f"sqlite:///{ctx.workdir / 'startup-cli.sqlite3'}",
        "VAR_DIR": str(ctx.workdir / "startup-var"),
        "SECRET_KEY": SECRET,
    }
    cwd = ctx.workdir
    cold = timed([SCHEMA_ADMIN, "status"], env, cwd)
    commands = {
        "status": ([SCHEMA_ADMIN, "status"], [ALEMBIC, "-c", str(generated.ini), "current"]),
        "history": (
            [SCHEMA_ADMIN, "history"],
            [ALEMBIC, "-c", str(generated.ini), "history"],
        ),
    }
    results = {
        name: side_by_side(ours, theirs, env, cwd, runs)
        for name, (ours, theirs) in commands.items()
    }
    # The same, with half the revisions pending: the plan of what is pending is made too.
    behind = behind_databases.create("behind")
    stamp(behind, (generated.order[SIZE // 2],))
    behind_env = {**env, "DATABASE_URL": public_projects.plain(behind)}
    behind_ini = _ini_for(generated.ini, behind)
    results["status, half the revisions pending"] = side_by_side(
        [SCHEMA_ADMIN, "status"],
        [ALEMBIC, "-c", str(behind_ini), "current"],
        behind_env,
        cwd,
        runs,
        expect=3,
    )
    bare = side_by_side(
        [sys.executable, "-c", "import alembic"], [sys.executable, "-c", "pass"], env, cwd, runs
    )
    lock = worker_to_lock(ctx, generated.ini, generated.order[-2], runs)
    alembic_import = top_imports(["-c", "import alembic"], env, cwd, 1)
    section.rows += [
        Row(
            SIZE,
            "`schema-admin status`, cache cold (first run after the files were written)",
            cold * 1000,
        ),
    ]
    for name, (ours, theirs) in results.items():
        raw = "`alembic history`" if name == "history" else "`alembic current`"
        section.rows.append(
            Row(
                SIZE,
                f"`schema-admin {name.split(',')[0]}`, cache warm"
                + "".join(f", {more}" for more in name.split(", ")[1:]),
                ours.ms,
                raw,
                theirs.ms,
                "≤ 1.0× the CLI",
                ours.ms <= theirs.ms,
                ours.best * 1000,
            )
        )
    section.rows += [
        Row(
            SIZE,
            "job worker: start (`Popen`) → migration lock taken",
            lock.ms,
            '`python -c "import alembic"` (process start + import)',
            bare[0].ms,
            "≤ 1.0× alembic's import",
            lock.ms <= bare[0].ms,
            lock.best * 1000,
        ),
        Row(
            None,
            '`python -c "pass"` (the interpreter alone)',
            bare[1].ms,
            ours_best=bare[1].best * 1000,
        ),
    ]
    section.notes.append(
        f"A generated project of {SIZE} revisions ({generated.branches} forks and merges), "
        "its PostgreSQL database stamped at the head (and another half way, for the row with "
        "pending revisions); each command run "
        f"{runs} times alternating with the raw tool's, medians. Load average (1, 5, 15 "
        f"min) before / after: {load_before} / {load_average()}."
    )
    section.notes.append(f"`import alembic` alone, `-X importtime`: {alembic_import}.")
    for name, (ours, theirs) in results.items():
        if ours.ms > theirs.ms:
            pending = "pending" in name
            command, run_env = name.split(",")[0], behind_env if pending else env
            ini = behind_ini if pending else generated.ini
            raw_args = ["-c", str(ini), "history" if name == "history" else "current"]
            section.notes.append(
                f"`schema-admin {command}` ({name}) is slower than the raw tool here: imports: "
                + top_imports(["-m", "admin", command], run_env, cwd)
                + "; calls (cProfile, cumulative): "
                + top_calls(["-m", "admin", command], run_env, cwd)
                + ". The raw tool's imports: "
                + top_imports(["-m", "alembic", *raw_args], run_env, cwd)
                + "."
            )
    return section
