"""A rehearsal in a real browser: an operator rehearses the plan from the preview, watches
the job's log live, opens the report, and applies the plan with the rehearsal shown (the
panel runs with REQUIRE_REHEARSAL=true, so the Apply is refused before the rehearsal).

A real uvicorn (SQLite store) with a PostgreSQL target."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from helpers import PASSWORD, LiveServer
from jobs_support import write_project
from projects import Rev

from admin import migrations

pytestmark = [pytest.mark.browser, pytest.mark.postgres, pytest.mark.slow]

JOB_URL = re.compile(r".*/jobs/(\d+)$")
REPORT_URL = re.compile(r".*/rehearsals/(\d+)$")
PROJECT = [
    Rev(
        "f1f1f1",
        None,
        "create items",
        "op.create_table('items', sa.Column('id', sa.Integer, primary_key=True))\n"
        "op.execute('INSERT INTO items SELECT generate_series(1, 500)')",
        "op.drop_table('items')",
    ),
    Rev(
        "f2f2f2",
        "f1f1f1",
        "items get a label, slowly",
        "op.add_column('items', sa.Column('label', sa.String(20)))\n"
        "op.execute('SELECT pg_sleep(2)')",
        "op.drop_column('items', 'label')",
    ),
]


@pytest.fixture(scope="module")
def rehearsal_server(
    tmp_path_factory: pytest.TempPathFactory, pg_databases: Any
) -> Iterator[LiveServer]:
    root = tmp_path_factory.mktemp("browser-rehearsal")
    ini = write_project(root / "project", PROJECT)
    server = LiveServer(
        root / "server",
        env_overrides={
            "DATABASE_URL": pg_databases.create("browser_rehearsal"),
            "ALEMBIC_CONFIG": str(ini),
            "REQUIRE_REHEARSAL": "true",
        },
    ).start()
    server.cli("migrate", "f1f1f1")
    server.add_user("web-operator", "operator")
    yield server
    server.stop()
    migrations.dispose_engines()


def test_rehearse_from_the_preview_watch_it_open_the_report_and_apply(
    rehearsal_server: LiveServer, page: Any
) -> None:
    base = rehearsal_server.url
    page.goto(base + "/login")
    page.fill("#username", "web-operator")
    page.fill("#password", PASSWORD)
    page.click("#login-form button[type=submit]")
    page.wait_for_url(base + "/")

    preview = base + "/preview?direction=upgrade&target=head"
    page.goto(preview)
    assert page.locator("#rehearsal-none").count() == 1
    assert "Not rehearsed" in page.locator("#apply-rehearsal").inner_text()

    page.click("#rehearse-submit")
    page.wait_for_url(JOB_URL)
    job_id = int(JOB_URL.fullmatch(page.url).group(1))  # type: ignore[union-attr]
    # The step sleeps: its lines arrive through the live stream while the job runs.
    page.wait_for_selector("#job-status[data-status='running']", timeout=30_000)
    page.wait_for_selector("#job-log .log-line:has-text('restored in')", timeout=30_000)
    page.wait_for_selector("#job-log .log-line:has-text('round trip: identical')", timeout=30_000)
    page.wait_for_selector("#job-status[data-status='succeeded']", timeout=30_000)
    assert page.url.endswith(f"/jobs/{job_id}")

    page.click("#job-rehearsal-report a")
    page.wait_for_url(REPORT_URL)
    rehearsal_id = REPORT_URL.fullmatch(page.url).group(1)  # type: ignore[union-attr]
    assert page.locator("#rehearsal-status").inner_text() == "succeeded"
    assert "identical" in page.locator("#rehearsal-round-trip").inner_text()
    assert page.locator("#rehearsal-step-table tbody tr[data-revision='f2f2f2']").count() == 1
    assert "public.items" in page.locator("#rehearsal-longest-lock").inner_text()

    page.goto(preview)
    newest = page.locator("#rehearsal-newest")
    assert newest.get_attribute("data-rehearsal-id") == rehearsal_id
    assert newest.get_attribute("data-clears") == "yes"
    assert "clears this Apply" in page.locator("#apply-rehearsal").inner_text()
    page.click("#apply-submit")
    page.wait_for_url(JOB_URL)
    page.wait_for_selector("#job-status[data-status='succeeded']", timeout=30_000)
    cleared = page.locator("#job-cleared-by a")
    assert cleared.get_attribute("href") == f"/rehearsals/{rehearsal_id}"
    assert page.console_errors == []
