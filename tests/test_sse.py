"""The live log over Server-Sent Events, against real uvicorn (``python -m admin serve``).

One server for the module: a SQLite store, a PostgreSQL target, and ``LIVE_REVISIONS``
(steps that sleep in SQL, a line that tries to forge an SSE event, one that carries HTML).
Each test that runs a job first puts the target back at base.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from bs4 import BeautifulSoup
from helpers import PASSWORD, TEST_SECRET_KEY, LiveServer
from jobs_support import (
    FORGED,
    INJECTED,
    LIVE_REVISIONS,
    Browserless,
    fragments,
    lines_until,
    plan_fingerprint,
    read_events,
    reset_target,
    seqs,
    write_project,
)
from projects import Rev

from admin import audit, migrations
from admin.auth import tokens
from admin.config import Settings
from admin.jobs import Finished, JobRequest, LogHub, Published, Runner
from admin.runtime import Runtime
from admin.store.models import JobKind, Source
from admin.web import eventstream, livelog

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

MAX_STREAMS = 3


@pytest.fixture(scope="module")
def sse_server(
    tmp_path_factory: pytest.TempPathFactory, pg_databases: Any
) -> Iterator[tuple[LiveServer, Path, str]]:
    root = tmp_path_factory.mktemp("sse")
    ini = write_project(root / "project", LIVE_REVISIONS)
    target = pg_databases.create("sse")
    server = LiveServer(
        root / "server",
        env_overrides={
            "DATABASE_URL": target,
            "ALEMBIC_CONFIG": str(ini),
            "SSE_KEEPALIVE": "0.5",
            "SSE_MAX_STREAMS": str(MAX_STREAMS),
            "JOB_HEARTBEAT": "0.5",
        },
    ).start()
    server.add_user("sse-operator", "operator")
    server.add_user("sse-viewer", "viewer")
    yield server, ini, target
    server.stop()
    migrations.dispose_engines()


@pytest.fixture
def operator(sse_server: tuple[LiveServer, Path, str]) -> Iterator[Browserless]:
    client = Browserless(sse_server[0].url, "sse-operator", PASSWORD)
    yield client
    client.close()


def _start(server: tuple[LiveServer, Path, str], client: Browserless) -> int:
    _, ini, target = server
    reset_target(target)
    return client.apply(plan_fingerprint(ini, target))


@pytest.fixture(scope="module")
def finished_job(sse_server: tuple[LiveServer, Path, str]) -> int:
    client = Browserless(sse_server[0].url, "sse-operator", PASSWORD)
    try:
        job_id = _start(sse_server, client)
        assert client.wait(job_id)["status"] == "succeeded"
        return job_id
    finally:
        client.close()


def test_lines_arrive_live_then_done(
    sse_server: tuple[LiveServer, Path, str], operator: Browserless
) -> None:
    job_id = _start(sse_server, operator)
    status_at_first_step = None
    keepalives = 0
    lines = []
    order: list[str] = []
    statuses = []
    done = None
    with operator.events(job_id) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["cache-control"] == "no-cache"
        for event in read_events(response):
            order.append(event.event)
            if event.event == "comment":
                keepalives += "keep-alive" in event.comments
            elif event.event == "status":
                statuses.append(event)
            elif event.event == "line":
                lines.append(event)
                if status_at_first_step is None and "[1/4]" in event.data:
                    status_at_first_step = operator.job(job_id)["status"]
            elif event.event == "done":
                done = event
                break
    # Lines came while the job ran, not all at its end.
    assert status_at_first_step == "running"
    assert done is not None and done.data == "succeeded" and done.id is None
    # The steps sleep 1 s each: the stream stayed alive with comments meanwhile.
    assert keepalives >= 1
    # "Fetch the status block again": right after the first lines, then as steps finish,
    # never twice within a second, never with an id (the last event id stays a line's).
    assert [e for e in order if e != "comment"][:2] == ["line", "status"]
    assert 2 <= len(statuses) <= 5 and all(e.id is None for e in statuses)
    gaps = [b.received - a.received for a, b in zip(statuses, statuses[1:], strict=False)]
    assert all(gap >= 0.9 for gap in gaps), gaps
    stored = operator.log(job_id)
    divs = fragments(lines)
    assert [int(div["data-seq"]) for div in divs] == [line["seq"] for line in stored]
    assert [line["seq"] for line in stored] == list(range(1, len(stored) + 1))
    for div, line in zip(divs, stored, strict=True):
        assert div["id"] == f"line-{line['seq']}" and div.text == line["text"]
        assert f"level-{line['level']}" in div["class"]
    # Each event is one data line: no line break from a log line reaches the wire.
    assert all("\n" not in event.data for event in lines)
    # The line that tries to forge "event: done" is one line, its text intact, and the
    # stream went on after it to the real end.
    [forged] = [div for div in divs if "event: done" in div.text]
    assert FORGED in forged.text and int(forged["data-seq"]) < len(stored) - 3
    [injected] = [div for div in divs if "onerror" in div.text]
    assert injected.select("img") == [] and INJECTED in injected.text
    assert all("<img" not in event.data for event in lines)


def test_reconnect_resumes_with_no_gap_and_no_duplicate(
    sse_server: tuple[LiveServer, Path, str], operator: Browserless
) -> None:
    job_id = _start(sse_server, operator)
    with operator.events(job_id) as response:
        first, done = lines_until(response, 3)
    assert done is None and operator.job(job_id)["status"] in ("queued", "running")
    # The browser's own reconnect: the same URL (after=0) with Last-Event-ID.
    with operator.events(job_id, **{"Last-Event-ID": first[-1].id or ""}) as response:
        rest, done = lines_until(response)
    assert done is not None and done.data == "succeeded"
    every = seqs(first + rest)
    assert every == list(range(1, len(every) + 1))
    assert len(every) == len(operator.log(job_id))
    # after= alone (a re-created EventSource), and the later of the two when both come.
    for after, header, first_seq in ((4, None, 5), (5, "2", 6), (2, "5", 6), (2, "x", 3)):
        extra = {"Last-Event-ID": header} if header is not None else {}
        with operator.events(job_id, after=after, **extra) as response:
            again, done = lines_until(response)
        assert seqs(again)[0] == first_seq and done is not None
        assert seqs(again) == every[first_seq - 1 :]


def test_a_finished_job_streams_its_whole_log_then_done_and_closes(
    sse_server: tuple[LiveServer, Path, str], operator: Browserless, finished_job: int
) -> None:
    started = time.monotonic()
    with operator.events(finished_job) as response:
        events = list(read_events(response))  # ends: the server closes the stream
    assert time.monotonic() - started < 10
    lines = [e for e in events if e.event == "line"]
    assert seqs(lines) == [line["seq"] for line in operator.log(finished_job)]
    assert events[-1].event == "done" and events[-1].data == "succeeded"
    assert events[0].event == "comment"  # the opening comment (with the retry hint)
    past_the_end = operator.http.get(
        f"/jobs/{finished_job}/events", params={"after": seqs(lines)[-1]}, timeout=10
    )
    assert [line for line in past_the_end.text.splitlines() if line.startswith("event:")] == [
        "event: done"
    ]


def test_no_session_is_a_401_not_a_redirect(
    sse_server: tuple[LiveServer, Path, str], finished_job: int
) -> None:
    server = sse_server[0]
    with httpx.Client(base_url=server.url, timeout=10) as anonymous:
        page = anonymous.get(f"/jobs/{finished_job}/events", follow_redirects=False)
        assert page.status_code == 401 and "location" not in page.headers
        api = anonymous.get(f"/api/v1/jobs/{finished_job}/events", follow_redirects=False)
        assert api.status_code == 401 and api.json()["status"] == 401
    with httpx.Client(base_url=server.url, timeout=10, cookies={"apex_session": "x"}) as stale:
        assert stale.get(f"/jobs/{finished_job}/events").status_code == 401
    viewer = Browserless(server.url, "sse-viewer", PASSWORD)
    try:
        assert viewer.http.get("/jobs/999999/events").status_code == 404
        assert viewer.http.get(f"/jobs/{finished_job}/events?after=-1").status_code == 400
    finally:
        viewer.close()


def _bearer(server: LiveServer, username: str) -> str:
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        admin_database_url=server.store_url,
        database_url="sqlite://",
        secret_key=TEST_SECRET_KEY,
        var_dir=server.root / "var",
    )
    runtime = Runtime.open(settings)
    try:
        with runtime.transaction() as session:
            created = tokens.create(
                session,
                settings,
                audit.Actor("tests", None, Source.CLI),
                name="sse",
                username=username,
            )
            return created.secret
    finally:
        runtime.close()


def test_api_events_are_json_with_a_token(
    sse_server: tuple[LiveServer, Path, str], finished_job: int
) -> None:
    server = sse_server[0]
    secret = _bearer(server, "sse-viewer")
    with (
        httpx.Client(base_url=server.url, timeout=10) as program,
        program.stream(
            "GET",
            f"/api/v1/jobs/{finished_job}/events",
            headers={"Authorization": f"Bearer {secret}", "Last-Event-ID": "2"},
        ) as response,
    ):
        assert response.status_code == 200
        lines, done = lines_until(response)
    assert done is not None and json.loads(done.data) == {"status": "succeeded"}
    payloads = [json.loads(e.data) for e in lines]
    assert [p["seq"] for p in payloads] == [e.seq for e in lines]
    assert payloads[0]["seq"] == 3
    assert {"seq", "level", "stream", "text"} <= set(payloads[0])
    assert any(FORGED in p["text"] for p in payloads)


def test_open_streams_are_capped_per_session(
    sse_server: tuple[LiveServer, Path, str], operator: Browserless
) -> None:
    job_id = _start(sse_server, operator)
    try:
        with contextlib.ExitStack() as stack:
            # Kept: a reader dropped half-way closes its response (a disconnect).
            readers = []
            for _ in range(MAX_STREAMS):
                response = stack.enter_context(operator.events(job_id))
                assert response.status_code == 200
                readers.append(read_events(response))
                next(readers[-1])  # the opening comment: the stream is counted
            refused = operator.http.get(f"/jobs/{job_id}/events", timeout=10)
            assert refused.status_code == 429
            message = BeautifulSoup(refused.text, "html.parser").select_one(".error-message")
            assert message is not None and f"{MAX_STREAMS} live logs" in message.text
            # Another session is not affected.
            viewer = Browserless(sse_server[0].url, "sse-viewer", PASSWORD)
            try:
                with viewer.events(job_id) as other:
                    assert other.status_code == 200
            finally:
                viewer.close()
        # Closed streams give their slots back (once the server notices the disconnect).
        deadline = time.monotonic() + 10
        while True:
            with operator.events(job_id) as response:
                if response.status_code == 200:
                    break
            assert time.monotonic() < deadline, "the slots were not given back"
            time.sleep(0.2)
    finally:
        operator.wait(job_id)


# The hub's keep-alive ticks, without HTTP (a fix in admin/jobs/hub.py).


def test_keepalive_ticks_while_a_step_is_silent(
    make_settings: Any, alembic_project: Any, pg_databases: Any
) -> None:
    ini = alembic_project([Rev("a1", None, "slow", "op.execute('SELECT pg_sleep(2)')")])
    runtime = Runtime.open(
        make_settings(database_url=pg_databases.create("tick"), alembic_config=ini)
    )
    runtime.upgrade_store(audit.Actor("tests", None, Source.CLI))

    async def follow() -> tuple[int, str]:
        hub = LogHub(runtime, poll_interval=0.1)
        hub.bind(asyncio.get_running_loop())
        runner = Runner(runtime, publish=hub.publish)
        job = runner.submit(JobRequest(JobKind.UPGRADE, "head"), audit.Actor.os_user())
        ticks, status = 0, ""
        async for item in hub.follow(job.id, 0, keepalive=0.4):
            if item is None:
                ticks += 1
            elif isinstance(item, Finished):
                status = item.status
                break
        await asyncio.to_thread(runner.stop)
        return ticks, status

    try:
        ticks, status = asyncio.run(follow())
    finally:
        runtime.close()
        migrations.dispose_engines()
    assert status == "succeeded"
    # The poller wakes the channel every 0.1 s; the 2 s step still gets its ticks.
    assert ticks >= 3


def _events(written: bytes) -> list[dict[str, str]]:
    """The events in one write of a stream, each as its fields."""
    events = []
    for block in written.decode().split("\n\n")[:-1]:
        fields = dict(line.split(": ", 1) for line in block.split("\n"))
        events.append(fields)
    return events


def test_the_page_is_told_to_refresh_its_status_at_most_once_an_interval() -> None:
    def kinds(written: bytes) -> list[str]:
        return [e["event"] for e in _events(written)]

    def step(seq: int) -> Published:
        return Published(seq, "step", "stdout", f"step {seq} finished")

    def sql(seq: int) -> Published:
        return Published(seq, "sql", "stdout", "SELECT 1")

    page = livelog.PageEvents(1, status_interval=0.2, spread=0)
    first = _events(page.lines([sql(1), sql(2)]))
    # The first lines: the page may still show "queued" (one write: the lines, then status).
    assert [e["event"] for e in first] == ["line", "status"] and "id" not in first[1]
    assert first[0]["id"] == "2" and first[1]["data"] == "2"
    assert kinds(page.lines([sql(3)])) == ["line"]  # nothing new for the status block
    assert kinds(page.lines([step(4)])) == ["line"]  # a step, but within the interval
    assert kinds(page.tick()) == []
    time.sleep(0.25)
    # The refresh held back goes with the next tick (or lines), once.
    assert kinds(page.tick()) == ["status"]
    assert kinds(page.tick()) == []
    time.sleep(0.25)
    assert kinds(page.lines([sql(5)])) == ["line"]
    assert kinds(page.lines([step(6)])) == ["line", "status"]
    assert kinds(page.done("succeeded")) == ["done"]


def test_viewers_that_opened_together_get_their_status_events_apart() -> None:
    pages = [livelog.PageEvents(1, status_interval=1.0) for _ in range(50)]
    for page in pages:
        page.lines([Published(1, "step", "stdout", "step 1 finished")])
    waits = {page._wait for page in pages}
    assert len(waits) > 40 and all(1.0 <= wait <= 1.25 for wait in waits)


def test_a_batch_is_encoded_once_for_all_its_viewers(monkeypatch: pytest.MonkeyPatch) -> None:
    encoded: list[str | None] = []
    encode = eventstream.event

    def counting(**fields: Any) -> bytes:
        encoded.append(fields.get("name"))
        return encode(**fields)

    monkeypatch.setattr(eventstream, "event", counting)
    batch = [Published(seq, "sql", "stdout", f"SELECT {seq}") for seq in (1, 2, 3)]
    viewers = [livelog.PageEvents(9001) for _ in range(20)]
    written = [viewer.lines(batch) for viewer in viewers]
    assert encoded.count("line") == 1
    lines = {_events(w)[0]["data"] for w in written}
    assert len(lines) == 1 and lines.pop().count('class="log-line') == 3
    # Another job's lines with the same numbers are its own event.
    livelog.PageEvents(9002).lines([Published(1, "sql", "stdout", "SELECT other")])
    assert encoded.count("line") == 2
