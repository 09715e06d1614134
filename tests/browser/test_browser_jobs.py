"""Jobs in a real browser: Apply from the preview, the live log, escaping, roles, and the
log resuming after the htmx SSE extension re-creates its EventSource (no Last-Event-ID).

One server for the module (a SQLite store, a PostgreSQL target, steps that sleep 2 s);
each test puts the target back at base before it starts a job.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from helpers import PASSWORD, LiveServer
from jobs_support import (
    INJECTED,
    Browserless,
    live_revisions,
    plan_fingerprint,
    read_events,
    reset_target,
    write_project,
)

from admin import migrations

pytestmark = [pytest.mark.browser, pytest.mark.postgres, pytest.mark.slow]

JOB_URL = re.compile(r".*/jobs/(\d+)$")


@pytest.fixture(scope="module")
def jobs_server(
    tmp_path_factory: pytest.TempPathFactory, pg_databases: Any
) -> Iterator[tuple[LiveServer, Path, str]]:
    root = tmp_path_factory.mktemp("browser-jobs")
    ini = write_project(root / "project", live_revisions(2))
    target = pg_databases.create("browser")
    server = LiveServer(
        root / "server", env_overrides={"DATABASE_URL": target, "ALEMBIC_CONFIG": str(ini)}
    ).start()
    server.add_user("web-operator", "operator")
    server.add_user("web-viewer", "viewer")
    yield server, ini, target
    server.stop()
    migrations.dispose_engines()


def _sign_in(page: Any, base: str, username: str) -> None:
    page.goto(base + "/login")
    page.fill("#username", username)
    page.fill("#password", PASSWORD)
    page.click("#login-form button[type=submit]")
    page.wait_for_url(base + "/")


def _log_seqs(page: Any) -> list[int]:
    return [int(seq) for seq in page.locator("#job-log .log-line").evaluate_all(
        "lines => lines.map(line => line.getAttribute('data-seq'))"
    )]  # fmt: skip


def _stored_seqs(server: LiveServer, job_id: int) -> list[int]:
    client = Browserless(server.url, "web-viewer", PASSWORD)
    try:
        client.wait(job_id)
        return [line["seq"] for line in client.log(job_id)]
    finally:
        client.close()


def test_operator_applies_and_watches_the_log_live(
    jobs_server: tuple[LiveServer, Path, str], page: Any
) -> None:
    server, _, target = jobs_server
    base = server.url
    reset_target(target)
    _sign_in(page, base, "web-operator")
    page.click("#apply-link")  # the dashboard's Apply… opens the preview of the plan
    page.wait_for_url(re.compile(r".*/preview\?.*"))
    page.click("#apply-submit")
    page.wait_for_url(JOB_URL)
    job_id = int(JOB_URL.match(page.url).group(1))  # type: ignore[union-attr]
    badge = page.locator("#job-status .status-badge")
    rendered = int(page.locator("#job-log").get_attribute("data-last-seq"))
    assert badge.inner_text() in ("queued", "running")

    # Lines arrive through the stream while the job still runs.
    page.wait_for_selector("#job-log .log-line:has-text('[3/4]')")
    assert badge.inner_text() == "running"
    assert len(_log_seqs(page)) > rendered

    # The end: the status area refreshes itself, the stream is closed.
    page.wait_for_selector("#job-status[data-status='succeeded']", timeout=30_000)
    assert badge.inner_text() == "succeeded"
    assert page.locator("#job-steps").inner_text() == "4 of 4"
    assert page.locator("#job-status [hx-trigger]").count() == 0
    seqs = _log_seqs(page)
    assert seqs == _stored_seqs(server, job_id)

    # The line with HTML in it is text: no element, no script ran.
    assert page.locator("#job-log img").count() == 0
    assert page.locator(f"#job-log .log-line:has-text('{INJECTED}')").count() == 1
    assert page.dialogs == []
    assert page.locator("#job-log .log-line:has-text('event: done')").count() == 1

    # Auto-scroll kept the newest line in view; the reader can pause it.
    follow = page.locator("#log-follow")
    assert follow.is_visible() and follow.get_attribute("aria-pressed") == "false"
    at_bottom = page.locator("#job-log").evaluate(
        "log => log.scrollHeight - log.scrollTop - log.clientHeight < 4"
    )
    assert at_bottom
    follow.click()
    assert follow.get_attribute("aria-pressed") == "true"
    assert follow.inner_text() == "Resume auto-scroll"
    assert page.console_errors == [], page.console_errors

    # A reload of a finished job shows it all, without a stream.
    page.reload()
    assert _log_seqs(page) == seqs
    assert page.locator("#job[sse-connect]").count() == 0


def test_viewer_sees_no_apply_and_a_post_from_them_is_403(
    jobs_server: tuple[LiveServer, Path, str], page: Any
) -> None:
    server, _, _ = jobs_server
    base = server.url
    _sign_in(page, base, "web-viewer")
    assert page.locator("#apply-link").count() == 0
    page.goto(base + "/jobs")
    assert page.locator("h1").inner_text() == "Jobs"
    assert page.locator("form[action='/jobs'][method='post']").count() == 0
    status = page.evaluate(
        """async () => {
            const token = document.querySelector("input[name=csrf_token]").value;
            const body = new URLSearchParams({csrf_token: token, kind: "upgrade",
                                              target: "head", plan_fingerprint: "x"});
            const answer = await fetch("/jobs", {method: "POST", body: body});
            return answer.status;
        }"""
    )
    assert status == 403


def _partial_stream(server: LiveServer, url: str, session: str, count: int) -> tuple[bytes, int]:
    """The next ``count`` events of the real stream, as a response that then ends; and the
    sequence number of the last line they carry."""
    parts = ["retry: 200\n\n"]
    last = 0
    with (
        httpx.Client(cookies={"apex_session": session}, timeout=30) as client,
        client.stream("GET", url, headers={"Accept": "text/event-stream"}) as response,
    ):
        assert response.status_code == 200
        seen = 0
        for event in read_events(response):
            if event.event != "line":
                continue
            parts.append(f"id: {event.id}\nevent: line\ndata: {event.data}\n\n")
            last = event.seq
            seen += 1
            if seen == count:
                break
    return "".join(parts).encode(), last


def test_the_log_resumes_after_the_event_source_is_re_created(
    jobs_server: tuple[LiveServer, Path, str], page: Any, context: Any
) -> None:
    """The connection drops, the browser's reconnect gets a 502 (a proxy while the panel
    restarts): EventSource gives up, the extension makes a new one from sse-connect, which
    sends no Last-Event-ID. The page still shows every line once."""
    server, ini, target = jobs_server
    base = server.url
    reset_target(target)
    _sign_in(page, base, "web-operator")
    session = next(c["value"] for c in context.cookies() if c["name"] == "apex_session")
    seen: list[tuple[str, str | None]] = []
    served: list[int] = []  # the last line the cut stream carried

    def route(route: Any, request: Any) -> None:
        seen.append((request.url, request.all_headers().get("last-event-id")))
        if len(seen) == 1:
            body, last = _partial_stream(server, request.url, session, 2)
            served.append(last)
            route.fulfill(status=200, headers={"Content-Type": "text/event-stream"}, body=body)
        elif len(seen) == 2:
            route.fulfill(status=502, headers={"Content-Type": "text/plain"}, body="bad gateway")
        else:
            route.continue_()

    page.route(re.compile(r".*/jobs/\d+/events.*"), route)
    operator = Browserless(base, "web-operator", PASSWORD)
    try:
        job_id = operator.apply(plan_fingerprint(ini, target))
    finally:
        operator.close()
    page.goto(f"{base}/jobs/{job_id}")
    rendered = int(page.locator("#job-log").get_attribute("data-last-seq"))
    page.wait_for_selector("#job-status[data-status='succeeded']", timeout=40_000)

    assert len(seen) >= 3, seen
    first, second, third = seen[:3]
    assert first[0].endswith(f"/jobs/{job_id}/events?after={rendered}") and first[1] is None
    # The browser's own reconnect keeps its URL (and would send Last-Event-ID, which
    # Playwright does not show; tests/test_sse.py checks the server's side of that).
    assert second[0] == first[0]
    # The extension's new EventSource: no Last-Event-ID, after= follows the page.
    assert served[0] > rendered
    assert third[0].endswith(f"/jobs/{job_id}/events?after={served[0]}") and third[1] is None
    seqs = _log_seqs(page)
    assert seqs == _stored_seqs(server, job_id)  # no gap, no duplicate
    # htmx logs the two failed connections (its htmx:sseError events); nothing else.
    assert all(e in ("[object Event]",) or "502" in e for e in page.console_errors), (
        page.console_errors
    )
