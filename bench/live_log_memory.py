"""Server memory with 100 live-log viewers, 30 of which never read, against real uvicorn.

A server (``python -m admin serve``, PostgreSQL store and target, default settings) runs a
job that waits until the viewers are connected, prints 3,000 lines of 2 KB (6 MB of log)
at about 500 lines a second, then waits. 70 viewers follow the job's page stream (session
cookie, the HTML fragments) and read everything as it comes; 30 open the same stream with
a 4 KB receive buffer, read the status line and never read again. The server's resident
memory (``VmRSS`` in /proc) is sampled throughout, and once ``SSE_SEND_TIMEOUT`` has
dropped the 30. Then 70 new viewers open the finished log at once and read its 6 MB
backlog together (a burst: each holds a little while the server renders it).
"""

from __future__ import annotations

import asyncio
import socket
import time
from pathlib import Path

import httpx

from bench.context import Context, Databases
from bench.job_upgrade import SECRET, bench_settings
from bench.log_latency import _reset, _serve, _sign_in, _token
from bench.report import Row, Section

LINES = 3000
WIDTH = 2000
READERS = 70
STALLED = 30
MIB = 1024 * 1024
BOUND_MIB = 150 + 100 * (READERS + STALLED) / 1024
START = "memory-start"
BARRIER = "memory-done"

REVISION = '''"""prints 6 MB"""
import os
import sys
import time

revision = "mem0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade():
    while not os.path.exists({start!r}):
        time.sleep(0.05)
    for i in range({lines}):
        print(f"{{i:05d}} " + "x" * {width})
        if i % 50 == 49:
            sys.stdout.flush()
            time.sleep(0.1)
    sys.stdout.flush()
    while not os.path.exists({barrier!r}):
        time.sleep(0.1)


def downgrade():
    pass
'''


def _project(root: Path) -> Path:
    from bench.projects import ENV

    versions = root / "migrations" / "versions"
    versions.mkdir(parents=True)
    (root / "migrations" / "env.py").write_text(ENV)
    (versions / "mem0001.py").write_text(
        REVISION.format(
            lines=LINES, width=WIDTH, start=str(root / START), barrier=str(root / BARRIER)
        )
    )
    ini = root / "alembic.ini"
    ini.write_text(
        "[alembic]\nscript_location = %(here)s/migrations\nsqlalchemy.url = sqlite://\n"
        "path_separator = os\n"
    )
    return ini


def _rss(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024 / MIB
    raise RuntimeError("no VmRSS")


def _open_streams(url: str) -> int:
    for line in httpx.get(url + "/metrics", timeout=30).text.splitlines():
        if line.startswith("schema_admin_sse_open_streams "):
            return int(float(line.split()[1]))
    raise RuntimeError("no open-streams metric")


def _stalled(url: str, cookie: str, job_id: int) -> socket.socket:
    host, port = url.removeprefix("http://").split(":")
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.settimeout(60)
    sock.connect((host, int(port)))
    sock.sendall(
        f"GET /jobs/{job_id}/events HTTP/1.1\r\nHost: {host}:{port}\r\n"
        f"Cookie: apex_session={cookie}\r\nAccept: text/event-stream\r\n\r\n".encode()
    )
    if b" 200 " not in sock.recv(16):
        raise RuntimeError("a stalled viewer was refused")
    return sock


async def _read_all(url: str, cookie: str, job_id: int, got: list[int]) -> None:
    timeout = httpx.Timeout(120, read=120)
    async with (
        httpx.AsyncClient(base_url=url, timeout=timeout, cookies={"apex_session": cookie}) as c,
        c.stream("GET", f"/jobs/{job_id}/events", headers={"Accept": "text/event-stream"}) as r,
    ):
        async for line in r.aiter_lines():
            if line.startswith("id: "):
                seq = int(line[4:])
                if seq >= LINES:
                    got.append(seq)
                    return


async def _readers(
    url: str, cookie: str, job_id: int, pid: int, got: list[int], start: Path | None
) -> tuple[float, float]:
    """READERS viewers reading the whole log (``start`` lets the job begin once they are
    connected); the server's peak RSS meanwhile, and how long they took."""
    tasks = [asyncio.create_task(_read_all(url, cookie, job_id, got)) for _ in range(READERS)]
    await asyncio.sleep(1)
    began = time.monotonic()
    if start is not None:
        start.touch()
    peak = 0.0
    while not all(task.done() for task in tasks):
        peak = max(peak, _rss(pid))
        await asyncio.sleep(0.1)
    await asyncio.gather(*tasks)
    return peak, time.monotonic() - began


def measure(ctx: Context) -> Section:
    section = Section("live log memory")
    databases = Databases(ctx.server_url)
    ini = _project(ctx.workdir / "memory")
    try:
        store, target = databases.create("memstore"), databases.create("memtarget")
        settings = bench_settings(
            ctx.workdir, admin_database_url=store, database_url=target, alembic_config=ini
        )
        process, url = _serve(settings, ctx.workdir)
        try:
            secret = _token(settings.model_copy(update={"secret_key": SECRET}))
            cookie = _sign_in(url)
            _reset(target)
            created = httpx.post(
                f"{url}/api/v1/jobs",
                json={"kind": "upgrade", "target": "heads"},
                headers={"Authorization": f"Bearer {secret}"},
                timeout=60,
            )
            created.raise_for_status()
            job_id = int(created.json()["id"])
            time.sleep(1)
            baseline = _rss(process.pid)
            stalled = [_stalled(url, cookie, job_id) for _ in range(STALLED)]
            live_got: list[int] = []
            live_peak, read_in = asyncio.run(
                _readers(url, cookie, job_id, process.pid, live_got, ini.parent / START)
            )
            held = _open_streams(url)
            deadline = time.monotonic() + 120
            while _open_streams(url) > 0 and time.monotonic() < deadline:
                live_peak = max(live_peak, _rss(process.pid))
                time.sleep(0.2)
            after = _rss(process.pid)
            for sock in stalled:
                sock.close()
            burst_got: list[int] = []
            burst_peak, burst_in = asyncio.run(
                _readers(url, cookie, job_id, process.pid, burst_got, None)
            )
            (ini.parent / BARRIER).touch()
        finally:
            process.terminate()
            process.wait(60)
    finally:
        databases.drop_all()
    section.rows += [
        Row(None, "server RSS, the job running, no viewer yet", baseline, unit="MiB"),
        Row(
            None,
            f"server RSS, peak: {READERS} viewers following the 6 MB log live, {STALLED} "
            "never reading",
            live_peak,
            target=f"≤ 150 MiB + 100 KiB × {READERS + STALLED} = {BOUND_MIB:.1f} MiB",
            met=live_peak <= BOUND_MIB and len(live_got) == READERS,
            unit="MiB",
        ),
        Row(
            None,
            f"server RSS once SSE_SEND_TIMEOUT has dropped the {STALLED}",
            after,
            unit="MiB",
        ),
        Row(
            None,
            f"server RSS, peak: {READERS} new viewers reading the finished 6 MB log at once",
            burst_peak,
            unit="MiB",
        ),
    ]
    section.notes.append(
        f"{STALLED} viewers opened the job's page stream with a 4 KB receive buffer and never "
        f"read, {READERS} followed it; then the job printed {LINES:,} lines of {WIDTH:,} "
        f"characters (6 MB) in {read_in:.1f} s ({len(live_got)}/{READERS} readers got every "
        f"line; {held} streams were still open after that: the stalled ones). Later "
        f"{READERS} new viewers read the finished log at once ({len(burst_got)}/{READERS} got "
        f"every line, in {burst_in:.1f} s: 420 MB of events rendered on 2 CPUs). RSS is the "
        "server process's VmRSS, sampled every 0.1 s (every 0.2 s while waiting for the drops, "
        "which SSE_SEND_TIMEOUT, 20 s, makes about 25 s after the job began). The stalled "
        "clients' "
        "data beyond what the server holds sits in the kernel's socket buffers, not in the "
        "process. The issue's review measured 112 MB → 657 MB for 32 stalled streams, still "
        "657 MB after they closed."
    )
    section.notes.append(
        "What bounds it (admin/jobs/hub.py, admin/web/streams.py): lines go out in events of "
        "at most 16 KB, each made only once the last was taken, so a viewer that does not read "
        "holds the event being written and what its transport queued (admin/web/eventstream.py; "
        "the last 32 batches' events are kept once for all viewers); a viewer far behind reads "
        "a few events' worth of lines from the store at a "
        "time (fewer lines at once when they are long: before, a log's short first lines made "
        "a viewer read 500 of its 2 KB lines at once: 1.4 MiB a viewer, 240 MiB in all); a "
        "job's shared buffer is capped at 4 MB; a write that waits SSE_SEND_TIMEOUT "
        "(20 s) aborts the connection; the memory freed when the last stream closes is handed "
        "back to the system (malloc_trim)."
    )
    return section
