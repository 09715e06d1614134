"""The job page never stays on ``running`` after its job ended (issue 15, item 9).

The status block asks for itself on the stream's ``status`` and ``done`` events. htmx
drops a trigger while a request from the same element is in flight, so a ``done`` that
came during a status fetch was lost, the fetch's answer still said "running", and the
stream had closed: the page showed a live Cancel button for good. The block's element now
stays while its content is replaced, a trigger during a fetch is queued behind it, and
after the stream closes static/app.js asks again until the block shows an ended job; the
Details (finished, exit code) come with every answer.

Thirty short jobs on a tiny SQLite project, each held at a gate until the test opens its
page and then releases it at a different moment (some right after a status fetch has
started: the network is slowed so fetches take a while); every page must show the job's
final state, its finish time and exit code, without a reload.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import PASSWORD, LiveServer
from jobs_support import Browserless, plan_fingerprint, reset_target
from projects import Rev, write_project

from admin import migrations

pytestmark = [pytest.mark.browser, pytest.mark.slow]

JOBS = 30
# Release delays after the page shows the job running (seconds): some before the first
# status refresh is due (~1 s), some around it, some after.
DELAYS = (0.0, 0.1, 0.25, 0.45, 0.7, 1.0)


def _gate(release: Path) -> list[Rev]:
    """Step one waits for ``release`` (``fail`` in it makes the step fail); step two is
    quick, so its step line (and a status refresh) comes right before the end."""
    wait = f"""
import pathlib, time
release = pathlib.Path({str(release)!r})
deadline = time.monotonic() + 30
while not release.exists() and time.monotonic() < deadline:
    time.sleep(0.005)
if release.exists() and release.read_text() == "fail":
    raise RuntimeError("the test asked this step to fail")
"""
    return [
        Rev("gate01", None, "wait at the gate", wait),
        Rev("quick2", "gate01", "quick step", "op.execute('SELECT 1')"),
    ]


@pytest.fixture(scope="module")
def gate_server(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[LiveServer, Path, Path]]:
    root = tmp_path_factory.mktemp("browser-job-end")
    release = root / "release"
    ini = write_project(root / "project", _gate(release))
    target = f"sqlite:///{root / 'target.sqlite3'}"
    migrations.create_database(target)
    server = LiveServer(
        root / "server", env_overrides={"DATABASE_URL": target, "ALEMBIC_CONFIG": str(ini)}
    ).start()
    try:
        server.add_user("end-operator", "operator")
        yield server, ini, release
    finally:
        server.stop()
        migrations.dispose_engines()


def _slow_network(context: Any, page: Any) -> None:
    """Every answer takes ~0.15 s longer (the open stream's events are not held back): a
    status fetch is in flight long enough for the stream's done to arrive meanwhile."""
    cdp = context.new_cdp_session(page)
    cdp.send("Network.enable")
    cdp.send(
        "Network.emulateNetworkConditions",
        {"offline": False, "latency": 150, "downloadThroughput": -1, "uploadThroughput": -1},
    )


def test_thirty_short_jobs_each_end_on_the_open_page(
    gate_server: tuple[LiveServer, Path, Path], context: Any, page: Any
) -> None:
    server, ini, release = gate_server
    target = server.env()["DATABASE_URL"]
    base = server.url
    page.goto(base + "/login")
    page.fill("#username", "end-operator")
    page.fill("#password", PASSWORD)
    page.click("#login-form button[type=submit]")
    page.wait_for_url(base + "/")
    _slow_network(context, page)
    operator = Browserless(base, "end-operator", PASSWORD)
    stuck = []
    try:
        for number in range(JOBS):
            release.unlink(missing_ok=True)
            reset_target(target)
            job_id = operator.apply(plan_fingerprint(ini, target))
            page.goto(f"{base}/jobs/{job_id}")
            page.wait_for_selector("#job-status[data-status='running']", timeout=15_000)
            time.sleep(DELAYS[number % len(DELAYS)])
            outcome = "fail" if number % 5 == 4 else "ok"
            # Written aside, then renamed: the step never sees the file before its content.
            release.with_suffix(".tmp").write_text(outcome)
            release.with_suffix(".tmp").replace(release)
            expected = "failed" if outcome == "fail" else "succeeded"
            assert operator.wait(job_id, timeout=30)["status"] == expected
            try:
                page.wait_for_selector(f"#job-status[data-status='{expected}']", timeout=10_000)
            except Exception:  # noqa: BLE001 - collected, reported together below
                stuck.append((job_id, page.locator("#job-status").get_attribute("data-status")))
                continue
            # The end is complete on the page: no live parts left, the details refreshed
            # (in the viewer's time zone: times swapped in out of band are localised too,
            # by the script that runs once the swap has settled).
            try:
                page.wait_for_selector("#job-finished time.localized", timeout=5_000)
            except Exception:  # noqa: BLE001 - collected, reported together below
                stuck.append((job_id, "finished time not shown in local time"))
                continue
            assert page.locator("#cancel-job, #job-status .status-running").count() == 0
            assert page.locator("#job-finished time.localized").count() == 1
            exit_code = page.locator("#job-exit-code").inner_text()
            assert exit_code == ("exit code 0" if expected == "succeeded" else "exit code 1")
            assert page.locator("#job-steps").inner_text() == (
                "2 of 2" if expected == "succeeded" else "0 of 2"
            )
    finally:
        operator.close()
        release.unlink(missing_ok=True)
    assert stuck == [], f"job pages that did not show the end (job, shown status): {stuck}"
    assert page.console_errors == [], page.console_errors
