"""Live logs against real uvicorn: bounded memory, caps, dropped readers, SIGTERM.

- M1: 30 streams that never read, from four sessions of one viewer, on a job with 6 MB of
  backlog: the server's RSS (from /proc) stays within 150 MB + 100 KB per stream, the
  streams are dropped after SSE_SEND_TIMEOUT, and the memory goes back down. Open streams
  are capped per user across sessions and per server (429 with Retry-After).
- L7: clients that go away leave no traceback in the server's log.
- Issue 15 (2): SIGTERM with a viewer on a running job: every stream ends with a
  ``restarting`` event, the job is cancelled, and the process exits within the bound the
  README names.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import anyio
import httpx
import pytest
from helpers import PASSWORD, LiveServer
from jobs_support import Browserless, plan_fingerprint, read_events, write_project
from projects import Rev
from starlette.types import Message, Receive, Scope, Send

from admin.web import streams

pytestmark = [pytest.mark.slow]

LINES = 3000
LINE_WIDTH = 2000
# A job that prints 6 MB of 2 KB lines at once, then stays running.
NOISY = [
    Rev(
        "e1e1e1e1e1e1",
        None,
        "noisy",
        "import sys, time\n"
        f"for i in range({LINES}):\n"
        f"    print(f'{{i:05d}} ' + 'x' * {LINE_WIDTH})\n"
        "sys.stdout.flush()\n"
        "time.sleep(120)",
    )
]
MB = 1024 * 1024
BASE_BOUND = 150 * MB
PER_VIEWER = 100 * 1024


def rss(pid: int) -> int:
    """Resident memory of a process in bytes (VmRSS in /proc/PID/status)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def open_stalled_stream(port: int, cookie: str, job_id: int, after: int = 0) -> socket.socket:
    """A live-log request whose client reads the status line and then never reads again."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.settimeout(30)
    sock.connect(("127.0.0.1", port))
    sock.sendall(
        f"GET /jobs/{job_id}/events?after={after} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Cookie: apex_session={cookie}\r\nAccept: text/event-stream\r\n\r\n".encode()
    )
    return sock


def status_of(sock: socket.socket) -> int:
    head = sock.recv(12)
    return int(head.split()[1])


def open_streams(server: LiveServer) -> int:
    text = httpx.get(server.url + "/metrics", timeout=10).text
    for line in text.splitlines():
        if line.startswith("schema_admin_sse_open_streams "):
            return int(float(line.split()[1]))
    raise AssertionError("no open-streams metric")


def wait_for(condition: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, what
        time.sleep(0.2)


@pytest.fixture
def noisy_server(make_live_server: object, tmp_path: Path) -> Iterator[tuple[LiveServer, Path]]:
    ini = write_project(tmp_path / "project", NOISY)
    server: LiveServer = make_live_server(  # type: ignore[operator]
        ALEMBIC_CONFIG=str(ini),
        SSE_MAX_STREAMS="32",
        SSE_MAX_STREAMS_TOTAL="40",
        SSE_SEND_TIMEOUT="15",
        SSE_KEEPALIVE="1",
        JOB_CANCEL_GRACE="2",
    )
    server.add_user("op", "operator")
    server.add_user("watcher", "viewer")
    sqlite3.connect(server.root / "target.sqlite3").close()  # an empty target
    yield server, ini


def start_noisy_job(server: LiveServer, ini: Path) -> tuple[Browserless, int]:
    operator = Browserless(server.url, "op", PASSWORD)
    target = server.env()["DATABASE_URL"]
    job_id = operator.apply(plan_fingerprint(ini, target))
    # Every line is stored (and read once by a reader, which fills the hub's buffer).
    with operator.events(job_id) as response:
        seen = 0
        for event in read_events(response):
            if event.event == "line":
                seen = int(event.id or 0)
            if seen >= LINES:
                break
    return operator, job_id


def test_streams_are_capped_per_user_across_sessions_and_per_server(
    noisy_server: tuple[LiveServer, Path],
) -> None:
    server, ini = noisy_server
    operator, job_id = start_noisy_job(server, ini)
    sessions = [Browserless(server.url, "watcher", PASSWORD) for _ in range(5)]
    cookies = [str(s.http.cookies.get("apex_session")) for s in sessions]
    held: list[socket.socket] = []
    try:
        # Streams at the end of the log (nothing to send but keep-alives): none is dropped.
        for index in range(32):
            held.append(open_stalled_stream(server.port, cookies[index % 4], job_id, LINES))
            assert status_of(held[-1]) == 200
        # The cap per user counts every session of the viewer: the fifth is refused too.
        with sessions[4].events(job_id, after=LINES) as refused:
            assert refused.status_code == 429
            assert refused.headers["Retry-After"] == "5"
        # The cap per server: 40 in all, whoever asks.
        operator_cookie = str(operator.http.cookies.get("apex_session"))
        for _ in range(8):
            held.append(open_stalled_stream(server.port, operator_cookie, job_id, LINES))
            assert status_of(held[-1]) == 200
        with operator.http.stream("GET", f"/api/v1/jobs/{job_id}/events") as refused:
            assert refused.status_code == 429 and "Retry-After" in refused.headers
        assert open_streams(server) == 40
    finally:
        for sock in held:
            sock.close()
        for session in sessions:
            session.close()
    # Clients that leave give their slots back.
    wait_for(lambda: open_streams(server) == 0, 15, "the slots were not given back")
    operator.post(f"/jobs/{job_id}/cancel")
    operator.close()


def test_non_reading_streams_stay_within_the_memory_bound_and_are_dropped(
    noisy_server: tuple[LiveServer, Path],
) -> None:
    server, ini = noisy_server
    assert server.process is not None
    pid = server.process.pid
    operator, job_id = start_noisy_job(server, ini)
    sessions = [Browserless(server.url, "watcher", PASSWORD) for _ in range(4)]
    cookies = [str(s.http.cookies.get("apex_session")) for s in sessions]
    before = rss(pid)
    stalled: list[socket.socket] = []
    try:
        # 30 that never read, from 4 sessions of one viewer, each at the start of 6 MB.
        peak = before
        for index in range(30):
            stalled.append(open_stalled_stream(server.port, cookies[index % 4], job_id))
            assert status_of(stalled[-1]) == 200
            peak = max(peak, rss(pid))
        # Each writes until its socket is full, then waits: sample the memory meanwhile.
        for _ in range(10):
            time.sleep(0.2)
            peak = max(peak, rss(pid))
        assert peak <= BASE_BOUND + 30 * PER_VIEWER, f"RSS {peak / MB:.0f} MB"
        assert open_streams(server) == 30, "a stream was dropped before the memory was read"
        # None of them reads: each is dropped after SSE_SEND_TIMEOUT, its memory freed.
        wait_for(lambda: open_streams(server) == 0, 60, "the stalled streams were not dropped")
        after = rss(pid)
        assert after < peak or peak - before < MB, f"{before / MB:.0f} -> {peak / MB:.0f} MB"
        assert after <= before + 8 * MB, f"RSS {before / MB:.0f} -> {after / MB:.0f} MB"
        # The slots are given back: the viewer follows the log again.
        with sessions[0].events(job_id, after=LINES) as response:
            assert response.status_code == 200
    finally:
        for sock in stalled:
            sock.close()
        for session in sessions:
            session.close()
        operator.post(f"/jobs/{job_id}/cancel")
        operator.close()
    # Dropped and departed clients are normal: no traceback, no "unexpected error".
    log = server.log_path.read_text()
    assert "Traceback" not in log and "unexpected error" not in log, log[-3000:]


def test_sigterm_ends_live_logs_cancels_the_job_and_exits_within_the_bound(
    noisy_server: tuple[LiveServer, Path],
) -> None:
    server, ini = noisy_server
    assert server.process is not None
    operator, job_id = start_noisy_job(server, ini)
    viewer = Browserless(server.url, "watcher", PASSWORD)
    stalled = open_stalled_stream(server.port, str(viewer.http.cookies.get("apex_session")), job_id)
    assert status_of(stalled) == 200
    events: list[str] = []
    try:
        with viewer.events(job_id, after=LINES) as response:
            reader = read_events(response)
            first = next(reader)  # the opening comment: the stream is open
            assert first.event == "comment"
            started = time.monotonic()
            os.kill(server.process.pid, signal.SIGTERM)
            events.extend(event.event for event in reader)
        # 1 s for the streams, 3 s for other responses, JOB_CANCEL_GRACE (2) + 5 for the job.
        bound = 1 + 3 + 2 + 5
        server.process.wait(timeout=bound + 5)
        elapsed = time.monotonic() - started
    finally:
        stalled.close()
        with contextlib.suppress(httpx.HTTPError):
            viewer.close()
            operator.close()
    assert "restarting" in events, events
    assert elapsed <= bound, f"the panel took {elapsed:.1f}s to exit"
    # uvicorn ends by the signal it handled (-15) once its graceful shutdown is done.
    assert server.process.returncode in (0, -signal.SIGTERM), server.log_path.read_text()[-2000:]
    store = sqlite3.connect(server.root / "store.sqlite3")
    try:
        (status,) = store.execute("SELECT status FROM jobs WHERE id = ?", (job_id,)).fetchone()
    finally:
        store.close()
    assert status == "cancelled"
    log = server.log_path.read_text()
    assert "Traceback" not in log, log[-3000:]


class _Transport:
    def __init__(self, queued: int) -> None:
        self.queued = queued
        self.aborted = False

    def get_write_buffer_size(self) -> int:
        return self.queued

    def abort(self) -> None:
        self.aborted = True


class _Cycle:
    """What uvicorn's ``send`` is bound to: a request cycle holding the transport."""

    def __init__(self, transport: _Transport) -> None:
        self.transport = transport
        self.sent: list[bytes] = []

    async def send(self, message: dict[str, object]) -> None:
        await anyio.sleep(0)  # a checkpoint, as uvicorn's send may have
        self.sent.append(message.get("body", b""))  # type: ignore[arg-type]


@pytest.mark.parametrize("queued", [0, 10])
def test_a_write_that_cannot_wait_is_never_dropped_by_the_guard(queued: int) -> None:
    """Writes through an empty transport cannot wait: they take no timer (a timer per write
    and viewer was a sixth of the work per line with 100 viewers). A write behind queued
    data is timed: with a timeout of 0 it is dropped and the connection aborted."""
    transport = _Transport(queued)
    cycle = _Cycle(transport)

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        headers = [(b"content-type", b"text/event-stream")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b"data: 1\n\n", "more_body": True})

    async def receive() -> Message:
        return {"type": "http.disconnect"}

    guard = streams.SlowClientGuard(app, timeout=lambda: 0.0)
    anyio.run(guard, {"type": "http", "path": "/jobs/1/events"}, receive, cycle.send)
    if queued:
        assert transport.aborted and cycle.sent == []
    else:
        assert not transport.aborted and cycle.sent == [b"", b"data: 1\n\n"]
