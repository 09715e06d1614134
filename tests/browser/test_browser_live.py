"""The live view and the readable log in a real browser: a session outside the panel holds
a lock the job needs; the live view names it and goes away once the job is through; steps
fold once done; the search box finds a statement; the text download is the log."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg2
import pytest
from helpers import PASSWORD, LiveServer
from jobs_support import long_job, write_project
from projects import Rev
from sqlalchemy import create_engine
from sqlalchemy.orm import Session

from admin import migrations

pytestmark = [pytest.mark.browser, pytest.mark.postgres, pytest.mark.slow]

JOB_URL = re.compile(r".*/jobs/(\d+)$")
REVISIONS = [
    Rev("a1a1a1", None, "first", "op.execute('SELECT 1')"),
    Rev(
        "b2b2b2",
        "a1a1a1",
        "add a column",
        "op.execute('ALTER TABLE clients ADD COLUMN IF NOT EXISTS note text')",
    ),
    Rev("c3c3c3", "b2b2b2", "last", "op.execute('SELECT 3')"),
]
EXPORT = re.compile(r"(\S+Z) +(\S+) (\w+) +(.*)", re.DOTALL)


def _dsn(url: str) -> str:
    return url.replace("postgresql+psycopg2://", "postgresql://")


@pytest.fixture(scope="module")
def live_server_pg(
    tmp_path_factory: pytest.TempPathFactory, pg_databases: Any
) -> Iterator[tuple[LiveServer, str]]:
    root = tmp_path_factory.mktemp("browser-live")
    ini = write_project(root / "project", REVISIONS)
    target = pg_databases.create("browserlive")
    server = LiveServer(
        root / "server",
        env_overrides={"DATABASE_URL": target, "ALEMBIC_CONFIG": str(ini), "LOCK_TIMEOUT": "60s"},
    ).start()
    server.add_user("live-operator", "operator")
    yield server, target
    server.stop()
    migrations.dispose_engines()


def _sign_in(page: Any, base: str, username: str) -> None:
    page.goto(base + "/login")
    page.fill("#username", username)
    page.fill("#password", PASSWORD)
    page.click("#login-form button[type=submit]")
    page.wait_for_url(base + "/")


def _line_texts(page: Any) -> list[str]:
    return list(page.locator("#job-log .log-line").evaluate_all(
        "lines => lines.map(line => line.textContent)"
    ))  # fmt: skip


def _export(path: Path) -> list[str]:
    texts: list[str] = []
    width = 0
    for row in path.read_text().split("\n")[:-1]:
        found = EXPORT.fullmatch(row)
        if found:
            width = len(row) - len(found.group(4))
            texts.append(found.group(4))
        else:
            texts[-1] += "\n" + row[width:]
    return texts


def test_live_view_steps_search_and_text_download(
    live_server_pg: tuple[LiveServer, str], page: Any, tmp_path: Path
) -> None:
    server, target = live_server_pg
    holder = psycopg2.connect(_dsn(target), application_name="crm-api")
    try:
        cursor = holder.cursor()
        cursor.execute("CREATE TABLE IF NOT EXISTS clients (id int)")
        holder.commit()
        cursor.execute("SELECT pg_backend_pid()")
        pid = cursor.fetchone()[0]
        cursor.execute("LOCK TABLE clients IN SHARE MODE")

        _sign_in(page, server.url, "live-operator")
        page.click("#apply-link")
        page.wait_for_url(re.compile(r".*/preview\?.*"))
        page.click("#apply-submit")
        page.wait_for_url(JOB_URL)

        # The live view appears, naming the blocker.
        blocker = page.wait_for_selector(
            f"#job-live-view #live-blockers tr[data-pid='{pid}']", timeout=30_000
        )
        assert "LOCK TABLE clients" in blocker.inner_text()
        assert "ACCESS EXCLUSIVE" in page.locator("#live-waiting").inner_text()
        holder.commit()
    finally:
        holder.close()

    # ...and disappears once the job is through.
    page.wait_for_selector("#job-status[data-status='succeeded']", timeout=60_000)
    page.wait_for_selector("#job-live-view", state="detached")

    # Each step is a group, folded once done, with its duration.
    page.wait_for_function(
        "document.querySelectorAll('#job-log details.log-step[data-done]').length === 3"
    )
    assert page.locator("#job-log details.log-step[open]").count() == 0
    assert page.locator("#job-log details.log-step .step-duration").count() == 3
    streamed = _line_texts(page)
    assert any(text.startswith("waited ") for text in streamed)

    # The search box finds the statement (and opens its step).
    page.fill("#log-search", "add column if not exists")
    hit = page.locator("#job-log .log-line.search-hit")
    hit.first.wait_for()
    assert hit.count() == 1 and hit.first.is_visible()
    assert "ALTER TABLE clients" in hit.first.inner_text()
    assert page.locator("#job-log .log-line.level-step.search-miss").count() > 0
    assert page.locator("#log-search-count").inner_text() == "1 line"

    # The text download is the log (what streamed, and the page rendered again).
    with page.expect_download() as download:
        page.click("#log-text")
    saved = tmp_path / "job.log"
    download.value.save_as(saved)
    assert _export(saved) == streamed
    page.reload()
    assert _line_texts(page) == streamed
    assert page.locator("#job-log details.log-step[data-done]").count() == 3
    assert page.console_errors == []


def test_the_search_opens_the_folded_ranges_that_match(
    live_server_pg: tuple[LiveServer, str], page: Any
) -> None:
    server, _ = live_server_pg
    engine = create_engine(server.store_url)
    try:
        with Session(engine) as session, session.begin():
            job_id, _ = long_job(session, 700)
    finally:
        engine.dispose()
    _sign_in(page, server.url, "live-operator")
    page.goto(f"{server.url}/jobs/{job_id}")
    assert page.locator("#job-log details.log-range").count() > 0
    assert page.locator("#job-log details.log-range[open]").count() == 0
    # Step 350's statement is in a folded range: the search loads that range (only).
    page.fill("#log-search", "table T350 (")
    hit = page.locator("#job-log .log-line.search-hit")
    hit.first.wait_for()
    assert hit.count() == 1 and hit.first.inner_text().endswith("CREATE TABLE t350 (id int)")
    assert hit.first.is_visible()
    assert page.locator("#job-log details.log-range[open]").count() == 1
    page.wait_for_function("document.getElementById('log-search-count').textContent === '1 line'")
    assert page.console_errors == []
