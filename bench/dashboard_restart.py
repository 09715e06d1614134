"""The first dashboard after a restart, against `alembic heads` (issue 14).

A panel process is started as `serve` builds it (``create_app`` and its lifespan, through
Starlette's TestClient), signs in, and asks for the dashboard (``GET /``). The figure is
from the process's start (``Popen``) to the dashboard answered, less the sign-in (which
hashes a password: no part of a restart). *Restart*: ``VAR_DIR/cache`` holds what an earlier
start read of the unchanged revision files; *cold*: the first start, no cache. The raw tool's
side is `alembic heads`, which must import every revision file to answer. Sizes:
``BENCH_DASHBOARD_SIZES`` (default 5000,20000); the target database is stamped at the head.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import time

from bench import cli_startup, public_projects
from bench.context import Context, Databases
from bench.job_upgrade import SECRET
from bench.report import Row, Section, load_average
from bench.timing import ALEMBIC

SIZES_ENV = "BENCH_DASHBOARD_SIZES"
MIN_RUNS = 3
PASSWORD = "bench-dashboard-restart-1"

PANEL = f"""
import json, sys, time
began = time.time()
from fastapi.testclient import TestClient
from admin import audit
from admin.auth import users
from admin.config import Settings
from admin.store.models import Role, Source
from admin.web.app import create_app
app = create_app(Settings(_env_file=None))
with TestClient(app) as client:
    if sys.argv[1] == "create":
        with app.state.runtime.transaction() as session:
            users.create(session, audit.Actor("bench", None, Source.CLI), "bench", Role.VIEWER,
                {PASSWORD!r}, must_change_password=False)
    signing = time.time()
    answer = client.post("/login", follow_redirects=False,
        data={{"username": "bench", "password": {PASSWORD!r}, "next": "/"}})
    assert answer.status_code == 303, answer.status_code
    signed = time.time()
    page = client.get("/", follow_redirects=False)
    answered = time.time()
    assert page.status_code == 200, page.text[:300]
    assert "Up to date" in page.text, page.text[:2000]
print(json.dumps(dict(began=began, signing=signing, signed=signed, answered=answered)))
"""


def _start(env: dict[str, str], create: bool) -> tuple[float, float]:
    """(process start → dashboard, less the sign-in; the dashboard request alone), seconds."""
    spawned = time.time()
    done = subprocess.run(
        [sys.executable, "-c", PANEL, "create" if create else "sign-in"],
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    if done.returncode != 0:
        raise RuntimeError(f"the panel process failed: {done.stderr[-1500:]}")
    t = json.loads(done.stdout.strip().splitlines()[-1])
    return (t["answered"] - spawned) - (t["signed"] - t["signing"]), t["answered"] - t["signed"]


def measure(ctx: Context) -> Section:
    section = Section("dashboard after a restart")
    sizes = [int(s) for s in os.environ.get(SIZES_ENV, "5000,20000").split(",") if s.strip()]
    runs = max(ctx.runs, MIN_RUNS)
    databases = Databases(ctx.server_url)
    try:
        for size in sizes:
            load_before = load_average()
            generated = ctx.project(size)
            url = databases.create(f"dash{size}")
            cli_startup.stamp(url, (generated.head,))
            root = ctx.workdir / f"dashboard-{size}"
            env = {
                **os.environ,
                "PYTHONWARNINGS": "ignore",
                "DATABASE_URL": public_projects.plain(url),
                "ALEMBIC_CONFIG": str(generated.ini),
                "ADMIN_DATABASE_URL": f"sqlite:///{root / 'store.sqlite3'}",
                "VAR_DIR": str(root / "var"),
                "SECRET_KEY": SECRET,
                "LOG_LEVEL": "WARNING",
            }
            root.mkdir()
            cold, cold_page = _start(env, create=True)
            # Another cold start with the store in place: the cache alone removed.
            shutil.rmtree(root / "var" / "cache")
            cold, cold_page = _start(env, create=False)
            ours: list[float] = []
            pages: list[float] = []
            theirs: list[float] = []
            for n in range(runs):
                sides = ("panel", "alembic") if n % 2 == 0 else ("alembic", "panel")
                for side in sides:
                    if side == "panel":
                        total, page = _start(env, create=False)
                        ours.append(total)
                        pages.append(page)
                    else:
                        theirs.append(
                            cli_startup.timed(
                                [ALEMBIC, "-c", str(generated.ini), "heads"], env, ctx.workdir
                            )
                        )
            ours_ms, theirs_ms = statistics.median(ours) * 1000, statistics.median(theirs) * 1000
            section.rows += [
                Row(
                    size,
                    "first dashboard after a restart, cache unchanged: process start → `GET /` "
                    "answered (sign-in excluded)",
                    ours_ms,
                    "`alembic heads`",
                    theirs_ms,
                    "≤ `alembic heads`",
                    ours_ms <= theirs_ms,
                    min(ours) * 1000,
                ),
                Row(
                    size,
                    "… of which the `GET /` request",
                    statistics.median(pages) * 1000,
                    ours_best=min(pages) * 1000,
                ),
                Row(
                    size,
                    "cold start (no cache): process start → `GET /` answered (once)",
                    cold * 1000,
                    "`alembic heads`",
                    theirs_ms,
                ),
                Row(size, "… of which the `GET /` request (cold)", cold_page * 1000),
            ]
            section.notes.append(
                f"{size} revisions: {runs} restarts alternating with {runs} `alembic heads`; "
                f"load average (1, 5, 15 min) before / after: {load_before} / {load_average()}."
            )
    finally:
        databases.drop_all()
    section.notes.append(__doc__.split("\n\n", 1)[1].replace("\n", " ").strip())
    return section
