"""Live log latency, worker → SSE client, with 1 and 100 viewers against real uvicorn.

A server (``python -m admin serve``, PostgreSQL store and target) runs an upgrade job whose
revisions execute ``SELECT 'ts=<time.time()>'`` one after another, ``PACINGS`` apart: the
worker's clock is in the line. Viewers follow ``GET /jobs/{id}/events`` (what the job page's
htmx follows: HTML fragments, session cookie) from several client processes; a line's
latency is its receipt time minus the timestamp in it (and the line's stored time, which the
fragment carries, splits it in two). Every viewer must receive every stored line exactly
once, in order, then ``done``.

``BENCH_LATENCY_ALSO=/path/to/checkout`` runs every measurement against that checkout's code
too (another server, the same machine, each run right after this one's), for a side by side.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import re
import resource
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import create_engine, text

from admin import audit
from admin.auth import tokens, users
from admin.config import Settings
from admin.runtime import Runtime
from admin.store.models import Role, Source
from bench import report
from bench.context import Context, Databases
from bench.job_upgrade import SECRET, bench_settings
from bench.report import Row, Section

VIEWERS = (1, 100)
# Seconds between two timed lines of the job, and how long its timed lines last in all.
PACINGS = (0.005, 0.025, 0.1)
TIMED_SECONDS = 6.0
CLIENT_PROCESSES = 4
STEPS = 10
TARGET_P95_MS = 100.0
BARRIER = "viewers-connected"
PACING = "pacing"
# One line's fragment: its number, its stored time, and the worker's time in its text.
_LINE = re.compile(rb'data-seq="(\d+)"(?: data-at="([\d.]+)")?[^>]*>([^<]*)</div>')
_TS = re.compile(rb"ts=(\d+\.\d+)")
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
    with open({pacing!r}) as pacing:
        count, pause = pacing.read().split()
    for _ in range(int(count)):
        time.sleep(float(pause))
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
        # barrier file); each step then runs the pacing file's count of timed lines.
        wait = (
            f"while not os.path.exists({str(root / BARRIER)!r}): time.sleep(0.02)"
            if n == 0
            else "pass"
        )
        text = REVISION.format(n=n, rev=rev, down=down, wait=wait, pacing=str(root / PACING))
        (versions / f"{rev}.py").write_text(text)
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


def _serve(
    settings: Settings, workdir: Path, env: dict[str, str] | None = None
) -> tuple[subprocess.Popen[bytes], str]:
    """``python -m admin serve`` on a free port, once it answers (``env``: the process's
    environment, by default this one's with ``settings``)."""
    port = _free_port()
    if env is None:
        env = {k: v for k, v in os.environ.items() if k.upper() not in _SETTING_NAMES}
        env.update(settings.to_env())
    env = {**env, "SSE_MAX_STREAMS": "1000", "LOG_LEVEL": "WARNING"}
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


@dataclass
class Server:
    """A panel (``python -m admin serve``) running one checkout's code on its own databases."""

    name: str
    code: Path | None  # None: the code this bench imports
    settings: Settings
    workdir: Path
    process: subprocess.Popen[bytes] | None = None
    url: str = ""
    secret: str = ""
    session: str = ""

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k.upper() not in _SETTING_NAMES}
        env.update(self.settings.to_env())
        code = self.code or Path(__file__).resolve().parent.parent
        env["PYTHONPATH"] = str(code)
        return env

    def start(self) -> None:
        self.process, self.url = _serve(self.settings, self.workdir, self.env())
        self.secret = _token(self.settings.model_copy(update={"secret_key": SECRET}))
        self.session = _sign_in(self.url)

    def cpu_seconds(self) -> float:
        """The server process's CPU time so far (user + system)."""
        assert self.process is not None
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(30)
            self.process = None


# The viewers (in client processes).


async def _view(
    url: str, session: str, job_id: int, connected: Any
) -> tuple[list[int], list[tuple[float, float, float | None]], bool]:
    """One viewer, on a plain socket (HTTP/1.1, chunked): a browser's parsing costs its own
    machine, not the server's, so the bench's clients must cost the shared CPUs little.
    Timed receipts are (received, worker's time, stored time)."""
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port), limit=1 << 22)
    writer.write(
        f"GET /jobs/{job_id}/events HTTP/1.1\r\nHost: {host}\r\nAccept: text/event-stream\r\n"
        f"Cookie: apex_session={session}\r\n\r\n".encode()
    )
    head = await reader.readuntil(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 200") or b"chunked" not in head.lower():
        raise RuntimeError(f"the bench viewer was refused: {head[:200]!r}")
    connected.put(1)
    seqs: list[int] = []
    timed: list[tuple[float, float, float | None]] = []
    done = False
    pending = b""
    while not done:
        size = int((await reader.readline()).strip(), 16)
        if size == 0:
            break
        pending += (await reader.readexactly(size + 2))[:-2]
        received = time.time()
        *events, pending = pending.split(b"\n\n")
        for event in events:
            if event.startswith(b"event: line\n"):
                for seq, at, text in _LINE.findall(event):
                    seqs.append(int(seq))
                    for ts in _TS.findall(text):
                        timed.append((received, float(ts), float(at) if at else None))
            elif event.startswith(b"event: done\n"):
                done = True
    writer.close()
    return seqs, timed, done


def _client_process(
    url: str, session: str, job_id: int, count: int, connected: Any, out: Any
) -> None:
    async def run() -> list[tuple[list[int], list[tuple[float, float, float | None]], bool]]:
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


def _cli_job(api: httpx.Client, server: Server) -> tuple[int, Any]:
    """``schema-admin migrate`` in a process of its own (its supervisor is not the panel's):
    the job it records, found through the API."""
    log = (server.workdir / "latency-cli.log").open("ab")
    process = subprocess.Popen(
        [sys.executable, "-m", "admin", "migrate", "heads"],
        cwd=server.workdir,
        env=server.env(),
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


def _stored(api: httpx.Client, job_id: int) -> list[int]:
    seqs: list[int] = []
    while True:
        page = api.get(f"/api/v1/jobs/{job_id}/log", params={"after": seqs[-1] if seqs else 0})
        lines = page.json()["lines"]
        seqs += [line["seq"] for line in lines]
        if page.json()["complete"]:
            return seqs


@dataclass
class Outcome:
    """One run: latencies (s) worker → viewer and stored → viewer, what the viewers got."""

    latencies: list[float]
    from_store: list[float]
    stored: int
    wrong: int
    done: int
    server_cpu: float
    client_cpu: float
    wall: float


def _run(server: Server, viewers: int, ini: Path, pause: float, cli: bool) -> Outcome:
    target = server.settings.database_url
    _reset(target)
    barrier = ini.parent / BARRIER
    barrier.unlink(missing_ok=True)
    count = max(1, round(TIMED_SECONDS / pause / STEPS))
    (ini.parent / PACING).write_text(f"{count} {pause}")
    headers = {"Authorization": f"Bearer {server.secret}"}
    with httpx.Client(base_url=server.url, headers=headers, timeout=60) as api:
        process = None
        if cli:
            job_id, process = _cli_job(api, server)
        else:
            created = api.post("/api/v1/jobs", json={"kind": "upgrade", "target": "heads"})
            created.raise_for_status()
            job_id = int(created.json()["id"])
        clients = resource.getrusage(resource.RUSAGE_CHILDREN)
        spawn = multiprocessing.get_context("spawn")
        results: Any = spawn.Queue()
        connected: Any = spawn.Queue()
        processes = min(CLIENT_PROCESSES, viewers)
        shares = [viewers // processes + (i < viewers % processes) for i in range(processes)]
        workers = [
            spawn.Process(
                target=_client_process,
                args=(server.url, server.session, job_id, n, connected, results),
            )
            for n in shares
        ]
        for worker in workers:
            worker.start()
        for _ in range(viewers):
            connected.get(timeout=300)
        cpu, started = server.cpu_seconds(), time.monotonic()
        barrier.touch()  # every viewer follows the job: its timed steps start now
        outcomes = [item for _ in workers for item in results.get(timeout=600)]
        cpu, wall = server.cpu_seconds() - cpu, time.monotonic() - started
        for worker in workers:
            worker.join(30)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        client_cpu = sum(getattr(after, f) - getattr(clients, f) for f in ("ru_utime", "ru_stime"))
        if process is not None:
            process.wait(60)
        job = api.get(f"/api/v1/jobs/{job_id}").json()
        if job["status"] != "succeeded":
            raise RuntimeError(f"the bench job {job_id} {job['status']}: {job['error']}")
        stored = _stored(api, job_id)
    timed = [value for _, values, _ in outcomes for value in values]
    return Outcome(
        latencies=[received - ts for received, ts, _ in timed],
        from_store=[received - at for received, _, at in timed if at is not None],
        stored=len(stored),
        wrong=sum(1 for seqs, _, _ in outcomes if seqs != stored),
        done=sum(1 for _, _, finished in outcomes if finished),
        server_cpu=cpu,
        client_cpu=client_cpu,
        wall=wall,
    )


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))] * 1000


def _described(code: Path) -> str:
    answer = subprocess.run(
        ["git", "-C", str(code), "log", "-1", "--format=%h"], capture_output=True, text=True
    )
    head = answer.stdout.strip() or "?"
    branch = subprocess.run(
        ["git", "-C", str(code), "branch", "--show-current"], capture_output=True, text=True
    ).stdout.strip()
    return f"{branch or code.name} ({head})"


def measure(ctx: Context) -> Section:
    section = Section("live log latency")
    databases = Databases(ctx.server_url)
    ini = _project(ctx.workdir / "latency")
    also = os.environ.get("BENCH_LATENCY_ALSO")
    servers: list[Server] = []
    try:
        for name, code in [("this", None)] + ([("other", Path(also))] if also else []):
            workdir = ctx.workdir / f"latency-{name}"
            workdir.mkdir()
            store, target = databases.create("latstore"), databases.create("lattarget")
            settings = bench_settings(
                workdir, admin_database_url=store, database_url=target, alembic_config=ini
            )
            server = Server(_described(code) if code else "this", code, settings, workdir)
            servers.append(server)
            server.start()
        ours, *theirs = servers
        for cli in (False, True):
            for pause in PACINGS:
                for viewers in VIEWERS:
                    _measure_one(section, ours, theirs, ini, pause, viewers, cli)
    finally:
        for server in servers:
            server.stop()
        databases.drop_all()
    section.notes.append(
        f"Each job: {STEPS} steps whose timed lines (`SELECT 'ts=<time.time()>'`, each "
        "preceded by a sleep of the pacing) last about "
        f"{TIMED_SECONDS:g} s in all (the first step waits until every viewer is connected), "
        "with the step markers between them; latency = receipt in the client minus the "
        "worker's timestamp: worker stdout (a line held up to 10 ms, so lines that come "
        "together travel together) → supervisor → store commit → hub → uvicorn → client "
        "(lines ready at once travel as one event). *stored → viewer* is the receipt minus "
        "the line's stored time (the fragment's `data-at`, 1 ms resolution). Viewers are "
        f"spread over {CLIENT_PROCESSES} client processes (asyncio, plain sockets: a "
        "browser's parsing costs its own machine, so the bench's clients read as little "
        "as they can) on the same machine as the server, its PostgreSQL and the worker."
    )
    section.notes.append(
        "A CLI job's supervisor is another process: its lines reach the panel's viewers through "
        "the store, woken by a PostgreSQL notification per stored batch (admin/jobs/wakeup.py). "
        "The live view's sampler (admin/live) runs during all these jobs (PostgreSQL target): "
        "one per job, about one query a second."
    )
    return section


def _measure_one(
    section: Section,
    ours: Server,
    theirs: list[Server],
    ini: Path,
    pause: float,
    viewers: int,
    cli: bool,
) -> None:
    outcome = _run(ours, viewers, ini, pause, cli)
    others = [(server, _run(server, viewers, ini, pause, cli)) for server in theirs]
    started = "CLI job" if cli else "panel job"
    label = f"{started}, lines {pause * 1000:g} ms apart, {viewers} viewer(s): worker → SSE client"
    for q in (0.50, 0.95):
        mine = _pct(outcome.latencies, q)
        other = others[0] if others else None
        complete = outcome.wrong == 0 and outcome.done == viewers
        section.rows.append(
            Row(
                None,
                f"{label}, p{q * 100:.0f}",
                mine,
                theirs=f"{other[0].name}, p{q * 100:.0f}" if other else None,
                theirs_ms=_pct(other[1].latencies, q) if other else None,
                target=f"≤ {TARGET_P95_MS:g} ms, no lost lines" if q == 0.95 else "",
                met=(mine <= TARGET_P95_MS and complete) if q == 0.95 else None,
            )
        )
    for server, result in [(ours, outcome), *others]:
        section.notes.append(
            f"{server.name}: {started}, lines {pause * 1000:g} ms apart, {viewers} viewer(s): "
            f"{len(result.latencies)} timed receipts (mean "
            f"{statistics.mean(result.latencies) * 1000:.1f} ms, max "
            f"{max(result.latencies) * 1000:.1f} ms; stored → viewer p50 / p95 "
            f"{_pct(result.from_store, 0.5):.1f} / {_pct(result.from_store, 0.95):.1f} ms); "
            f"{result.stored} stored lines; {viewers - result.wrong}/{viewers} viewers received "
            f"exactly the stored lines in order, {result.done}/{viewers} got `done`; CPU of "
            f"the server {result.server_cpu:.1f} s, of the client processes "
            f"{result.client_cpu:.1f} s (with their start), in {result.wall:.1f} s; load "
            f"average {report.load_average()}."
        )
