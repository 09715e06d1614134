"""Live log latency, worker → SSE client, with 1 and 100 viewers against real uvicorn.

A server (``python -m admin serve``, PostgreSQL store and target) runs an upgrade job whose
revisions each execute ``SELECT 'ts=<time.time()>'``: the worker's clock is in the line.
Viewers follow ``GET /jobs/{id}/events`` (what the job page's htmx follows: HTML fragments,
session cookie) from several client processes; a line's latency is its receipt time minus
the timestamp in it. Every viewer must receive every stored line exactly once, in order,
then ``done``.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import re
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import create_engine, text

from admin import audit
from admin.auth import tokens, users
from admin.config import Settings
from admin.runtime import Runtime
from admin.store.models import Role, Source
from bench.context import Context, Databases
from bench.job_upgrade import SECRET, bench_settings
from bench.report import Row, Section

VIEWERS = (1, 100)
CLIENT_PROCESSES = 4
STEPS = 60
TARGET_P95_MS = 100.0
BARRIER = "viewers-connected"
_TS = re.compile(r"ts=(\d+\.\d+)")
_SEQ = re.compile(r'data-seq="(\d+)"')
PASSWORD = "bench-password-1234"
_SETTING_NAMES = {name.upper() for name in Settings.model_fields}

REVISION = '''"""step {n}"""
import os
import time

from alembic import op

revision = {rev!r}
down_revision = {down!r}
branch_labels = None
depends_on = None


def upgrade():
    {wait}
    op.execute("SELECT 'ts=%.6f'" % time.time())
    op.execute("SELECT 'ts=%.6f'" % time.time())


def downgrade():
    pass
'''


def _project(root: Path) -> Path:
    versions = root / "migrations" / "versions"
    versions.mkdir(parents=True)
    from bench.projects import ENV

    (root / "migrations" / "env.py").write_text(ENV)
    down = None
    for n in range(STEPS):
        rev = f"lat{n:04d}"
        # The first step waits for the viewers to connect (the bench then writes the
        # barrier file); then a step every 50 ms.
        wait = (
            f"while not os.path.exists({str(root / BARRIER)!r}): time.sleep(0.02)"
            if n == 0
            else "time.sleep(0.05)"
        )
        (versions / f"{rev}.py").write_text(REVISION.format(n=n, rev=rev, down=down, wait=wait))
        down = rev
    ini = root / "alembic.ini"
    ini.write_text(
        "[alembic]\nscript_location = %(here)s/migrations\nsqlalchemy.url = sqlite://\n"
        "path_separator = os\n"
    )
    return ini


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _serve(settings: Settings, workdir: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if k.upper() not in _SETTING_NAMES}
    env.update(settings.to_env())
    env.update({"SSE_MAX_STREAMS": "1000", "LOG_LEVEL": "WARNING"})
    log = (workdir / "latency-server.log").open("ab")
    process = subprocess.Popen(
        [sys.executable, "-m", "admin", "serve", "--host", "127.0.0.1", "--port", str(port)],
        cwd=workdir,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    log.close()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url + "/healthz", timeout=1):
                return process, url
        except OSError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError("the bench server did not start")


# The viewers (in client processes).


async def _view(
    url: str, session: str, job_id: int, connected: Any
) -> tuple[list[int], list[float], bool]:
    seqs: list[int] = []
    latencies: list[float] = []
    done = False
    headers = {"Accept": "text/event-stream"}
    timeout = httpx.Timeout(60, read=60)
    cookies = {"apex_session": session}
    async with (
        httpx.AsyncClient(base_url=url, timeout=timeout, cookies=cookies) as client,
        client.stream("GET", f"/jobs/{job_id}/events", headers=headers) as response,
    ):
        connected.put(1)
        event, data = "message", ""
        async for line in response.aiter_lines():
            if line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: "):
                data = line[6:]
            elif line == "":
                if event == "line" and data:
                    received = time.time()
                    seqs.extend(int(seq) for seq in _SEQ.findall(data))
                    latencies.extend(received - float(ts) for ts in _TS.findall(data))
                elif event == "done":
                    done = True
                    break
                event, data = "message", ""
    return seqs, latencies, done


def _client_process(
    url: str, session: str, job_id: int, count: int, connected: Any, out: Any
) -> None:
    async def run() -> list[tuple[list[int], list[float], bool]]:
        views = (_view(url, session, job_id, connected) for _ in range(count))
        return list(await asyncio.gather(*views))

    out.put(asyncio.run(run()))


# The measurement.


def _reset(url: str) -> None:
    engine = create_engine(url)
    try:
        with engine.begin() as connection:
            connection.execute(text("DROP TABLE IF EXISTS alembic_version"))
    finally:
        engine.dispose()


def _token(settings: Settings) -> str:
    runtime = Runtime.open(settings)
    actor = audit.Actor("bench", None, Source.CLI)
    try:
        with runtime.transaction() as session:
            users.create(
                session,
                actor,
                "bench-viewer",
                Role.OPERATOR,
                PASSWORD,
                must_change_password=False,
            )
        with runtime.transaction() as session:
            return tokens.create(
                session, settings, actor, name="bench", username="bench-viewer"
            ).secret
    finally:
        runtime.close()


def _sign_in(url: str) -> str:
    with httpx.Client(base_url=url, timeout=60) as browser:
        answer = browser.post("/login", data={"username": "bench-viewer", "password": PASSWORD})
        if answer.status_code != 303:
            raise RuntimeError(f"the bench could not sign in: {answer.status_code}")
        return str(browser.cookies["apex_session"])


def _cli_job(api: httpx.Client, settings: Settings, workdir: Path) -> tuple[int, Any]:
    """``schema-admin migrate`` in a process of its own (its supervisor is not the panel's):
    the job it records, found through the API."""
    env = {k: v for k, v in os.environ.items() if k.upper() not in _SETTING_NAMES}
    env.update(settings.to_env())
    log = (workdir / "latency-cli.log").open("ab")
    process = subprocess.Popen(
        [sys.executable, "-m", "admin", "migrate", "heads"],
        cwd=workdir,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    log.close()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        jobs = api.get("/api/v1/jobs", params={"status": "running"}).json()["jobs"]
        if jobs:
            return int(jobs[0]["id"]), process
        time.sleep(0.05)
    process.kill()
    raise RuntimeError("the CLI job did not start")


def _run(
    url: str,
    secret: str,
    session: str,
    viewers: int,
    barrier: Path,
    cli: tuple[Settings, Path] | None = None,
) -> tuple[list[float], int, int, int]:
    """Latencies (s), stored lines, viewers that lost or repeated lines, viewers done."""
    headers = {"Authorization": f"Bearer {secret}"}
    with httpx.Client(base_url=url, headers=headers, timeout=60) as api:
        process = None
        if cli is not None:
            job_id, process = _cli_job(api, *cli)
        else:
            created = api.post("/api/v1/jobs", json={"kind": "upgrade", "target": "heads"})
            created.raise_for_status()
            job_id = int(created.json()["id"])
        spawn = multiprocessing.get_context("spawn")
        results: Any = spawn.Queue()
        connected: Any = spawn.Queue()
        processes = min(CLIENT_PROCESSES, viewers)
        shares = [viewers // processes + (i < viewers % processes) for i in range(processes)]
        workers = [
            spawn.Process(
                target=_client_process, args=(url, session, job_id, n, connected, results)
            )
            for n in shares
        ]
        for worker in workers:
            worker.start()
        for _ in range(viewers):
            connected.get(timeout=300)
        barrier.touch()  # every viewer follows the job: its timed steps start now
        outcomes = [item for _ in workers for item in results.get(timeout=300)]
        for worker in workers:
            worker.join(30)
        if process is not None:
            process.wait(60)
        job = api.get(f"/api/v1/jobs/{job_id}").json()
        if job["status"] != "succeeded":
            raise RuntimeError(f"the bench job {job_id} {job['status']}: {job['error']}")
        stored = [line["seq"] for line in api.get(f"/api/v1/jobs/{job_id}/log").json()["lines"]]
    latencies = [value for _, values, _ in outcomes for value in values]
    wrong = sum(1 for seqs, _, _ in outcomes if seqs != stored)
    done = sum(1 for _, _, finished in outcomes if finished)
    return latencies, len(stored), wrong, done


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))] * 1000


def measure(ctx: Context) -> Section:
    section = Section("live log latency")
    databases = Databases(ctx.server_url)
    ini = _project(ctx.workdir / "latency")
    process: subprocess.Popen[bytes] | None = None
    try:
        store, target = databases.create("latstore"), databases.create("lattarget")
        settings = bench_settings(
            ctx.workdir, admin_database_url=store, database_url=target, alembic_config=ini
        )
        process, url = _serve(settings, ctx.workdir)
        secret = _token(settings.model_copy(update={"secret_key": SECRET}))
        session = _sign_in(url)
        runs = [(viewers, None) for viewers in VIEWERS]
        runs += [(viewers, (settings, ctx.workdir)) for viewers in VIEWERS]
        for viewers, cli in runs:
            _reset(target)
            barrier = ini.parent / BARRIER
            barrier.unlink(missing_ok=True)
            latencies, lines, wrong, done = _run(url, secret, session, viewers, barrier, cli)
            p50, p95 = _pct(latencies, 0.50), _pct(latencies, 0.95)
            complete = wrong == 0 and done == viewers
            started = "a CLI job (`schema-admin migrate`)" if cli else "a panel job"
            section.rows += [
                Row(None, f"{started}: worker → SSE client, p50, {viewers} viewer(s)", p50),
                Row(
                    None,
                    f"{started}: worker → SSE client, p95, {viewers} viewer(s)",
                    p95,
                    target=f"≤ {TARGET_P95_MS:g} ms, no lost lines",
                    met=p95 <= TARGET_P95_MS and complete,
                ),
            ]
            section.notes.append(
                f"{started}, {viewers} viewer(s): {len(latencies)} timed receipts (max "
                f"{max(latencies) * 1000:.1f} ms, mean {statistics.mean(latencies) * 1000:.1f} "
                f"ms); {lines} stored lines; {viewers - wrong}/{viewers} viewers received "
                f"exactly the stored lines in order, {done}/{viewers} got `done`."
            )
    finally:
        if process is not None:
            process.terminate()
            process.wait(30)
        databases.drop_all()
    section.notes.append(
        f"A job of {STEPS} steps, each executing two `SELECT 'ts=<time.time()>'` 50 ms apart "
        "(the first step waits until every viewer is connected); latency = receipt in the client "
        "minus the worker's timestamp: worker stdout (a line held up to 10 ms, so a "
        "revision's lines travel together) → supervisor → store commit → hub → uvicorn → "
        "client (lines ready at once travel as one event). Viewers are spread "
        f"over {CLIENT_PROCESSES} client processes (httpx, asyncio) on the same machine as "
        "the server, its PostgreSQL and the worker."
    )
    section.notes.append(
        "A CLI job's supervisor is another process: its lines reach the panel's viewers through "
        "the store, woken by a PostgreSQL notification per stored batch (admin/jobs/wakeup.py) "
        "instead of the hub's next 0.5 s poll. The live view's sampler (admin/live) runs during "
        "all these jobs (PostgreSQL target): one per job, about one query a second."
    )
    section.notes.append(
        "What a viewer costs: every event goes through FastAPI's SSE encoder (two memory-stream "
        "hops, a keep-alive timer) and one socket write per viewer, so the latency with many "
        "viewers is that per-event cost times the viewers on the CPUs left over; it grows with "
        "the machine's load. The page's stream therefore sends the lines ready at once as one "
        'event, and its `status` event ("fetch your status block again") at most once a '
        "second per viewer, each viewer's a random part of that second apart from the others' "
        "(`PageEvents` in admin/web/livelog.py); a line's HTML is rendered once for all viewers. "
        "On this shared 2-CPU machine the p95 with 100 viewers varied from 39 to 105 ms over "
        "one afternoon's runs (the 1-viewer figures stay within a few ms)."
    )
    return section
