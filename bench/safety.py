"""Safety (admin/analysis): analysis + lint of 1,000 revisions cold and warm beside the raw
tools, the light preview of a 1,000-step plan, and the history page with badges.

- ``schema-admin lint --postgresql`` renders the whole range offline once, reads every
  revision's file and SQL for badges, and runs squawk over every step (one process): cold
  with an empty VAR_DIR, warm with the cache it left there. The raw tools side by side:
  ``alembic upgrade heads --sql`` into a file, then ``squawk`` on it (no badges, no mapping
  to revisions).
- In process, warm: ``analyze`` + ``lint`` of the 1,000 revisions from the memory cache.
- The preview of the 1,000-step plan (a PostgreSQL database at base) as a reviewer: its
  size and its server time, warm.
- The history page at the largest size: the first request (which analyses the page's
  revisions, rendering the whole history once each way) and warm.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from fastapi.testclient import TestClient

from admin import analysis, migrations
from admin.analysis import lint
from admin.analysis.risk import forget
from admin.migrations import Direction
from admin.store.models import Role
from admin.web.app import create_app
from bench.context import Context, run_admin_sql
from bench.history_page import ServerTime, get, settings_for, signed_in
from bench.report import Row, Section
from bench.timing import ALEMBIC, Timing, run_tool, time_call

LINT_SIZE = 1000
PREVIEW_TARGET_MS = 500.0
PREVIEW_TARGET_KB = 300.0
HISTORY_TARGET_MS = 50.0
SQUAWK = str(Path(sys.executable).parent / "squawk")


def _lint_cli(ctx: Context, ini: Path, var: Path) -> float:
    env = {
        **os.environ,
        "ALEMBIC_CONFIG": str(ini),
        "VAR_DIR": str(var),
        "DATABASE_URL": f"sqlite:///{ctx.workdir / 'unused.sqlite3'}",
        "ADMIN_DATABASE_URL": f"sqlite:///{ctx.workdir / 'unused-store.sqlite3'}",
        "PYTHONWARNINGS": "ignore",
    }
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "admin", "lint", "--postgresql", "--format", "json"],
        cwd=ctx.workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )
    seconds = time.perf_counter() - started
    if done.returncode not in (0, 1):
        raise RuntimeError(f"schema-admin lint failed: {done.stderr.strip()[-500:]}")
    return seconds


def _raw(ctx: Context, ini: Path) -> float:
    started = time.perf_counter()
    sql = run_tool([ALEMBIC, "-c", str(ini), "upgrade", "heads", "--sql"], cwd=ctx.workdir).stdout
    path = ctx.workdir / "raw-lint.sql"
    path.write_text(sql)
    subprocess.run([SQUAWK, str(path)], capture_output=True, timeout=600, check=False)
    return time.perf_counter() - started


def _timing(samples: list[float]) -> Timing:
    ordered = sorted(samples)
    return Timing(ordered[len(ordered) // 2], ordered[0], len(samples))


def _lint_rows(ctx: Context, section: Section) -> None:
    generated = ctx.project(LINT_SIZE)
    cold, warm, raw = [], [], []
    for run in range(ctx.runs):
        var = ctx.workdir / f"safety-var-{run}"
        raw.append(_raw(ctx, generated.ini))
        cold.append(_lint_cli(ctx, generated.ini, var))
        warm.append(_lint_cli(ctx, generated.ini, var))
    raw_t = _timing(raw)
    for label, samples in (("cold (empty VAR_DIR)", cold), ("warm (cache in VAR_DIR)", warm)):
        timing = _timing(samples)
        section.rows.append(
            Row(
                size=LINT_SIZE,
                ours=f"`schema-admin lint --postgresql`: badges + squawk, {label}",
                ours_ms=timing.ms,
                ours_best=timing.best * 1000,
                theirs="`alembic upgrade heads --sql` + `squawk`",
                theirs_ms=raw_t.ms,
            )
        )
    project = migrations.open_project(generated.ini)
    ids = [r.id for r in project.graph().revisions]
    url = ctx.url(LINT_SIZE)
    var = ctx.workdir / "safety-var-inprocess"

    def both() -> None:
        analysis.analyze(project, url, ids, var_dir=var)
        lint.lint(project, url, ids, Direction.UPGRADE, lint.LintOptions(), var_dir=var)

    forget()
    started = time.perf_counter()
    both()
    first = time.perf_counter() - started
    timing = time_call(both, runs=ctx.runs * 5, warmup=0)
    section.rows += [
        Row(size=LINT_SIZE, ours="in process: `analyze` + `lint`, cold", ours_ms=first * 1000),
        Row(
            size=LINT_SIZE,
            ours="in process: `analyze` + `lint`, warm (memory)",
            ours_ms=timing.ms,
            ours_best=timing.best * 1000,
        ),
    ]


def _preview_rows(ctx: Context, section: Section) -> None:
    generated = ctx.project(LINT_SIZE)
    name = f"apex_bench_preview_{os.getpid()}"
    run_admin_sql(ctx.server_url, f'CREATE DATABASE "{name}"')
    try:
        url = ctx.url(LINT_SIZE).rsplit("/", 1)[0] + f"/{name}"
        app = create_app(settings_for(ctx.workdir / "preview", LINT_SIZE, generated.ini, url))
        samples: list[float] = []
        app.add_middleware(ServerTime, samples=samples)
        path = "/preview?direction=upgrade&target=heads"
        with TestClient(app) as client:
            signed_in(client, Role.REVIEWER)
            forget()
            size = get(client, path)
            first = samples[-1]
            warm = []
            for _ in range(ctx.runs * 3):
                get(client, path)
                warm.append(samples[-1])
        migrations.dispose_engines()
    finally:
        run_admin_sql(ctx.server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    timing = _timing(warm)
    section.rows += [
        Row(
            size=LINT_SIZE,
            ours=f"`GET /preview` of a {LINT_SIZE}-step plan, warm ({size / 1024:.0f} KiB)",
            ours_ms=timing.ms,
            ours_best=timing.best * 1000,
            target=f"≤ {PREVIEW_TARGET_MS:g} ms, ≤ {PREVIEW_TARGET_KB:g} KB",
            met=timing.ms <= PREVIEW_TARGET_MS and size / 1000 <= PREVIEW_TARGET_KB,
        ),
        Row(size=LINT_SIZE, ours="`GET /preview`, first request (cold)", ours_ms=first * 1000),
    ]


def _history_rows(ctx: Context, section: Section) -> None:
    size = max(ctx.sizes)
    generated = ctx.project(size)
    url = ctx.database_at_head(size)
    app = create_app(settings_for(ctx.workdir / "safety-history", size, generated.ini, url))
    samples: list[float] = []
    app.add_middleware(ServerTime, samples=samples)
    with TestClient(app) as client:
        signed_in(client)
        forget()
        get(client, "/revisions")
        first = samples[-1]
        warm = []
        for _ in range(ctx.runs * 10):
            get(client, "/revisions")
            warm.append(samples[-1])
    timing = _timing(warm)
    section.rows += [
        Row(
            size=size,
            ours="`GET /revisions` with badges, warm",
            ours_ms=timing.ms,
            ours_best=timing.best * 1000,
            target=f"≤ {HISTORY_TARGET_MS:g} ms",
            met=timing.ms <= HISTORY_TARGET_MS,
        ),
        Row(
            size=size,
            ours="`GET /revisions`, first request (analyses its page)",
            ours_ms=first * 1000,
        ),
    ]


def measure(ctx: Context) -> Section:
    section = Section("safety: analysis, lint, light preview")
    _lint_rows(ctx, section)
    _preview_rows(ctx, section)
    _history_rows(ctx, section)
    section.notes += [
        f"A generated project of {LINT_SIZE} revisions (each creates a table and an index on "
        "it; 10 forks and merges): no badges, and squawk's findings on every CREATE TABLE at "
        "its full default rule set. The CLI rows are wall time with process start; the raw "
        "pair renders the SQL once and lints one file.",
        "Cold analysis renders the whole history once in each direction (one env.py run each), "
        "reads each revision's source with `ast`, and runs one squawk process over one file per "
        "step; results are kept by file sha256 + dialect (+ squawk's version and rules) in "
        "`VAR_DIR/analysis-cache.sqlite3` and in memory.",
        "The preview folds a plan of more than 50 steps: each step is a `<details>` with its "
        "badges that loads its SQL when opened (`/revisions/{id}/step`); the plan's rendered "
        "script is kept by plan fingerprint, so a warm preview does not render again.",
    ]
    return section
