"""Flat in the number of revisions (issue 21): the panel beside `alembic heads` / `alembic
history` on generated histories (forks and merges every 100 revisions, bench/projects.py).

Per size, a panel process is started as `serve` builds it (``create_app`` and its lifespan,
through Starlette's TestClient) three times on one VAR_DIR: *cold* (no cache) with the
PostgreSQL target at the head, then a *restart* with the target at 90% of the history (a
tenth of it pending), then a restart at the head. Each measures the first dashboard after
its start (process start → ``GET /`` answered, sign-in excluded), waits until the background
analysis is idle (the Apply plan at 90% is rendered and analysed before anyone clicks), then
takes warm medians of ``GET /`` (whole page), the htmx poll (``GET /`` with ``HX-Request``)
and ``GET /api/v1/status`` (with its size), and the process's RSS. The last run also waits
an idle minute before a history page, then adds one revision file on top of the head ten
times: the figure is the time from the file written to the first ``/api/v1/status`` that
shows the new head (the watcher's check and reload, in the background) and the slowest
request meanwhile; RSS is read before and after the ten reloads. Sizes: ``BENCH_SCALE_SIZES``
(default 5000,20000); the wait for the analysis is capped at ``BENCH_SCALE_ANALYSIS_WAIT``
seconds (default 900).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from bench import cli_startup, public_projects
from bench.context import Context, Databases
from bench.job_upgrade import SECRET
from bench.report import Row, Section, load_average
from bench.timing import ALEMBIC

SIZES_ENV = "BENCH_SCALE_SIZES"
# Seconds the bench waits for the background analysis before the warm figures (at 90% of
# 50,000 revisions the Apply plan alone is 5,000 steps to render and analyse).
WAIT_ENV = "BENCH_SCALE_ANALYSIS_WAIT"
PASSWORD = "bench-scale-password-1"
WARM_RUNS = 30
ADDED_FILES = 10

PANEL = f"""
import json, os, statistics, sys, time
began = time.time()
from fastapi.testclient import TestClient
from admin import audit
from admin.auth import users
from admin.config import Settings
from admin.store.models import Role, Source
from admin.web.app import create_app
from admin.analysis.background import ANALYZER

def rss():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024

def timed(client, path, headers=None):
    started = time.perf_counter()
    response = client.get(path, headers=headers or {{}}, follow_redirects=False)
    elapsed = time.perf_counter() - started
    assert response.status_code == 200, (path, response.status_code, response.text[:300])
    return elapsed, response

mode, versions = sys.argv[1], sys.argv[2]
out = {{}}
app = create_app(Settings(_env_file=None))
with TestClient(app) as client:
    if mode == "cold":
        with app.state.runtime.transaction() as session:
            users.create(session, audit.Actor("bench", None, Source.CLI), "bench", Role.VIEWER,
                {PASSWORD!r}, must_change_password=False)
    signing = time.time()
    answer = client.post("/login", follow_redirects=False,
        data={{"username": "bench", "password": {PASSWORD!r}, "next": "/"}})
    assert answer.status_code == 303, answer.status_code
    signed = time.time()
    first, _ = timed(client, "/")
    answered = time.time()
    out["first_dashboard"] = (answered - began) - (signed - signing)
    out["first_request"] = first
    out["rss_first"] = rss()
    waited = time.time()
    while ANALYZER.busy() and time.time() - waited < float(sys.argv[4]):
        time.sleep(0.5)
    out["analysis_wait"] = time.time() - waited
    out["analysis_done"] = not ANALYZER.busy()
    for name, path, headers in (("dashboard", "/", None), ("poll", "/", {{"HX-Request": "true"}}),
                                ("status", "/api/v1/status", None),
                                ("history", "/revisions", None)):
        timed(client, path, headers)
        out[name] = statistics.median(timed(client, path, headers)[0] for _ in range({WARM_RUNS}))
    _, response = timed(client, "/api/v1/status")
    out["status_bytes"] = len(response.content)
    out["pending_count"] = response.json()["pending_count"]
    out["rss_warm"] = rss()
    if mode == "last":
        time.sleep(60)
        out["history_after_idle"] = timed(client, "/revisions")[0]
        head = response.json()["heads"][0]
        template = open(sys.argv[3]).read()
        added, slowest, seen_after = [], 0.0, []
        out["rss_before_adds"] = rss()
        for n in range({ADDED_FILES}):
            rev = f"added{{n:05d}}"
            text = template.replace("REV", rev).replace("DOWN", head)
            written = time.perf_counter()
            path = os.path.join(versions, rev + ".py")
            with open(path, "w") as handle:
                handle.write(text)
            added.append(path)
            while True:
                took, response = timed(client, "/api/v1/status")
                slowest = max(slowest, took)
                if response.json()["heads"] == [rev]:
                    seen_after.append(time.perf_counter() - written)
                    out.setdefault("first_page_after_add", took)
                    break
                time.sleep(0.02)
            head = rev
        out["seen_after_add"] = statistics.median(seen_after)
        out["slowest_during_adds"] = slowest
        out["rss_after_adds"] = rss()
        for path in added:
            os.unlink(path)
print(json.dumps(out))
"""

ADDED = '''"""added by the bench

Revision ID: REV
Revises: DOWN
Create Date: 2024-01-01 00:00:00
"""

revision = "REV"
down_revision = "DOWN"
branch_labels = None
depends_on = None


def upgrade():
    pass


def downgrade():
    pass
'''


def _panel(env: dict[str, str], mode: str, versions: Path, template: Path) -> dict[str, float]:
    wait = os.environ.get(WAIT_ENV, "900")
    done = subprocess.run(
        [sys.executable, "-c", PANEL, mode, str(versions), str(template), wait],
        env=env,
        capture_output=True,
        text=True,
        timeout=7200,
    )
    if done.returncode != 0:
        raise RuntimeError(f"the panel process failed: {done.stderr[-2000:]}")
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def measure(ctx: Context) -> Section:
    section = Section("scale: flat in the number of revisions")
    sizes = [int(s) for s in os.environ.get(SIZES_ENV, "5000,20000").split(",") if s.strip()]
    databases = Databases(ctx.server_url)
    try:
        for size in sizes:
            _measure(ctx, section, databases, size)
    finally:
        databases.drop_all()
    section.notes.append(__doc__.split("\n\n", 1)[1].replace("\n", " ").strip())
    return section


def _measure(ctx: Context, section: Section, databases: Databases, size: int) -> None:
    load_before = load_average()
    generated = ctx.project(size)
    at_head = databases.create(f"scale{size}h")
    cli_startup.stamp(at_head, (generated.head,))
    behind = databases.create(f"scale{size}b")
    cli_startup.stamp(behind, (generated.order[size * 9 // 10 - 1],))
    root = ctx.workdir / f"scale-{size}"
    root.mkdir()
    template = root / "added.py.txt"
    template.write_text(ADDED)
    versions = generated.ini.parent / "migrations" / "versions"
    env = {
        **os.environ,
        "PYTHONWARNINGS": "ignore",
        "ALEMBIC_CONFIG": str(generated.ini),
        "ADMIN_DATABASE_URL": f"sqlite:///{root / 'store.sqlite3'}",
        "VAR_DIR": str(root / "var"),
        "SECRET_KEY": SECRET,
        "LOG_LEVEL": "WARNING",
    }
    heads_s = cli_startup.timed([ALEMBIC, "-c", str(generated.ini), "heads"], env, ctx.workdir)
    history_s = cli_startup.timed([ALEMBIC, "-c", str(generated.ini), "history"], env, ctx.workdir)
    runs = {}
    for mode, url in (("cold", at_head), ("restart", behind), ("last", at_head)):
        runs[mode] = _panel(
            {**env, "DATABASE_URL": public_projects.plain(url)}, mode, versions, template
        )
    heads_ms, history_ms = heads_s * 1000, history_s * 1000
    for mode, where in (("last", "at head"), ("restart", "at 90%")):
        got = runs[mode]
        for key, what in (
            ("dashboard", "dashboard (whole page), warm"),
            ("poll", "htmx poll of the dashboard, warm"),
            ("status", "`/api/v1/status`, warm"),
        ):
            section.rows.append(
                Row(
                    size,
                    f"{what}, database {where} ({int(got['pending_count'])} pending)",
                    got[key] * 1000,
                    "`alembic heads`",
                    heads_ms,
                    "≤ 20 ms",
                    got[key] * 1000 <= 20,
                )
            )
        section.rows.append(
            Row(
                size,
                f"`/api/v1/status` size, database {where}",
                got["status_bytes"] / 1024,
                target="≤ 20 KB",
                met=got["status_bytes"] <= 20 * 1024,
                unit="KiB",
            )
        )
        section.rows.append(
            Row(
                size,
                f"first dashboard after a restart (cache kept), database {where}",
                got["first_dashboard"] * 1000,
                "`alembic heads`",
                heads_ms,
                "≤ `alembic heads`",
                got["first_dashboard"] <= heads_s,
            )
        )
    last = runs["last"]
    section.rows += [
        Row(
            size,
            "first dashboard, cold start (no cache), database at head",
            runs["cold"]["first_dashboard"] * 1000,
            "`alembic heads`",
            heads_ms,
        ),
        Row(size, "history page 1, warm", last["history"] * 1000, "`alembic history`", history_ms),
        Row(
            size,
            "history page after an idle minute",
            last["history_after_idle"] * 1000,
            "`alembic history`",
            history_ms,
            "≤ 20 ms",
            last["history_after_idle"] * 1000 <= 20,
        ),
        Row(
            size,
            "one file added: written → `/api/v1/status` shows it (median of "
            f"{ADDED_FILES}; the watcher reloads in the background)",
            last["seen_after_add"] * 1000,
            "`alembic heads`",
            heads_ms,
        ),
        Row(
            size,
            "… the first request that shows it",
            last["first_page_after_add"] * 1000,
            target="≤ 100 ms",
            met=last["first_page_after_add"] * 1000 <= 100,
        ),
        Row(
            size,
            "… the slowest request while files were added",
            last["slowest_during_adds"] * 1000,
        ),
        Row(size, "RSS after the first dashboard (at head)", last["rss_first"], unit="MiB"),
        Row(size, "RSS warm, database at 90%", runs["restart"]["rss_warm"], unit="MiB"),
        Row(
            size,
            f"RSS before / after {ADDED_FILES} reloads: after",
            last["rss_after_adds"],
            target=f"before: {last['rss_before_adds']:.0f} MiB",
            met=last["rss_after_adds"] <= last["rss_before_adds"] * 1.05,
            unit="MiB",
        ),
    ]
    section.notes.append(
        f"{size} revisions: background analysis waited for before the warm figures: "
        f"{runs['restart']['analysis_wait']:.0f} s at 90%"
        f"{'' if runs['restart']['analysis_done'] else ' (not finished: the wait is capped)'}"
        f"; load average (1, 5, 15 min) "
        f"before / after: {load_before} / {load_average()}."
    )
    shutil.rmtree(root / "var", ignore_errors=True)
