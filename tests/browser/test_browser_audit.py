"""In Chromium against real uvicorn: an admin filters the audit trail to one user's jobs
(htmx swaps the results and puts the filter in the address) and opens one event's job."""

from __future__ import annotations

import getpass
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from helpers import PASSWORD, LiveServer
from reading_support import Rev, make_project, stamp

pytestmark = pytest.mark.browser

FIRST, SECOND = "a0d1a0d1a0d1", "a0d2a0d2a0d2"
REVISIONS = [
    Rev(FIRST, None, "first", "op.execute('SELECT 1')"),
    Rev(SECOND, FIRST, "second", "op.execute('SELECT 2')"),
]
JOB_URL = re.compile(r".*/jobs/(\d+)$")


def _sign_in(page: Any, base: str, username: str) -> None:
    page.goto(base + "/login")
    page.fill("#username", username)
    page.fill("#password", PASSWORD)
    page.click("#login-form button[type=submit]")
    page.wait_for_url(base + "/")


def test_admin_filters_to_one_users_jobs_and_opens_a_job(
    make_live_server: Callable[..., LiveServer], tmp_path: Path, page: Any
) -> None:
    ini = make_project(tmp_path / "project", REVISIONS)
    target = f"sqlite:///{tmp_path / 'crm.sqlite3'}"
    stamp(target, None)
    server = make_live_server(ALEMBIC_CONFIG=str(ini), DATABASE_URL=target)
    base = server.url
    server.add_user("opal", "operator")
    server.add_user("audrey", "admin")

    # A job at the terminal (the OS user), then one in the browser (opal, from the preview).
    server.cli("migrate", FIRST)
    _sign_in(page, base, "opal")
    page.goto(f"{base}/preview?direction=upgrade&target={SECOND}")
    page.click("#apply-submit")
    page.wait_for_url(JOB_URL)
    job_id = int(JOB_URL.match(page.url).group(1))  # type: ignore[union-attr]
    page.locator("#job-status[data-status=succeeded]").wait_for()
    page.click("details.account-menu summary")
    page.click("form.sign-out button")
    page.wait_for_url(base + "/login")

    _sign_in(page, base, "audrey")
    page.click("nav.main-nav a[href='/audit']")
    page.wait_for_url(base + "/audit")
    actors = set(page.locator("#audit-events tr.audit-event").evaluate_all(
        "rows => rows.map(row => row.dataset.actor)"
    ))  # fmt: skip
    assert {"opal", "audrey", getpass.getuser()} <= actors

    # Filter: the actor typed, the action group picked (htmx swaps only the results).
    page.evaluate("window.notReloaded = true")
    page.fill("#filter-actor", "opal")
    page.select_option("#filter-action", "job-*")
    page.click("#audit-filters button[type=submit]")
    page.wait_for_url(re.compile(r".*/audit\?actor=opal&action=job-(\*|%2A)$"))
    rows = page.locator("#audit-events tr.audit-event")
    rows.first.wait_for()
    page.wait_for_function(
        "() => [...document.querySelectorAll('#audit-events tr.audit-event')]"
        ".every(row => row.dataset.actor === 'opal')"
    )
    shown = rows.evaluate_all(
        "rows => rows.map(row => [row.dataset.actor, row.dataset.action, row.dataset.source])"
    )
    assert shown == [
        ["opal", "job-finished", "web"],
        ["opal", "job-started", "web"],
        ["opal", "job-queued", "web"],
    ]
    # The filter form kept its values, and the page was not reloaded.
    assert page.input_value("#filter-actor") == "opal"
    assert page.evaluate("window.notReloaded === true")

    # Open the newest event's job.
    rows.first.locator("a.job-link").click()
    page.wait_for_url(f"{base}/jobs/{job_id}")
    assert page.locator("h1").inner_text().startswith(f"Job {job_id}: upgrade")
    assert page.locator("#job-status").get_attribute("data-status") == "succeeded"

    # Back: the filtered trail again (the address carried the filter).
    page.go_back()
    page.wait_for_url(re.compile(r".*/audit\?actor=opal"))
    page.locator("#audit-events tr.audit-event").first.wait_for()
    assert set(page.locator("#audit-events tr.audit-event").evaluate_all(
        "rows => rows.map(row => row.dataset.actor)"
    )) == {"opal"}  # fmt: skip
    assert page.console_errors == [], page.console_errors
