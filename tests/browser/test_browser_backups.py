"""Backups in a real browser: an operator takes a backup, watches its log stream live on the
job's page, and sees it verified in the list.

A real uvicorn (SQLite store) with a PostgreSQL target. While the page is open, another
session holds a lock on a table, so pg_dump waits: the rest of its log can only arrive
through the live stream once the lock is released.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import PASSWORD, LiveServer
from jobs_support import write_project
from projects import Rev
from sqlalchemy import create_engine, text

from admin import migrations

pytestmark = [pytest.mark.browser, pytest.mark.postgres, pytest.mark.slow]

JOB_URL = re.compile(r".*/jobs/(\d+)$")
PROJECT = [
    Rev(
        "f1f1f1",
        None,
        "create items",
        "op.create_table('items', sa.Column('id', sa.Integer, primary_key=True))\n"
        "op.execute('INSERT INTO items SELECT generate_series(1, 500)')",
        "op.drop_table('items')",
    )
]


@pytest.fixture(scope="module")
def backups_server(
    tmp_path_factory: pytest.TempPathFactory, pg_databases: Any
) -> Iterator[tuple[LiveServer, str]]:
    root = tmp_path_factory.mktemp("browser-backups")
    ini = write_project(root / "project", PROJECT)
    target = pg_databases.create("browser_backups")
    server = LiveServer(
        root / "server",
        env_overrides={
            "DATABASE_URL": target,
            "ALEMBIC_CONFIG": str(ini),
            "BACKUP_LOCK_WAIT_TIMEOUT": "60s",
        },
    ).start()
    server.cli("migrate")
    server.add_user("web-operator", "operator")
    yield server, target
    server.stop()
    migrations.dispose_engines()


def test_operator_takes_a_backup_watches_its_log_and_sees_it_verified(
    backups_server: tuple[LiveServer, str], page: Any
) -> None:
    server, target = backups_server
    base = server.url
    page.goto(base + "/login")
    page.fill("#username", "web-operator")
    page.fill("#password", PASSWORD)
    page.click("#login-form button[type=submit]")
    page.wait_for_url(base + "/")
    assert page.locator("#no-last-backup").count() == 1

    page.goto(base + "/backups")
    assert page.locator("#no-backups").count() == 1
    page.select_option("#backup-format", "custom")
    engine = create_engine(target)
    holder = engine.connect()
    try:
        holder.execute(text("LOCK TABLE items IN ACCESS EXCLUSIVE MODE"))
        page.click("#take-backup-button")
        page.wait_for_url(JOB_URL)
        job_id = int(JOB_URL.fullmatch(page.url).group(1))  # type: ignore[union-attr]
        # pg_dump has started and waits for the lock: nothing is dumped yet.
        page.wait_for_selector("#job-log .log-line:has-text('pg_dump: reading')")
        assert page.locator("#job-log .log-line:has-text('dumping contents')").count() == 0
        # The status block follows the lines: the job is running (a backup has no steps).
        page.wait_for_selector("#job-status[data-status='running']", timeout=10_000)
        assert "so far" in page.locator("#job-duration").inner_text()
    finally:
        holder.rollback()
        holder.close()
        engine.dispose()

    # The rest arrives through the live stream, without a reload.
    page.wait_for_selector(
        "#job-log .log-line:has-text('pg_dump: dumping contents of table \"public.items\"')",
        timeout=30_000,
    )
    page.wait_for_selector("#job-log .log-line:has-text('verified')", timeout=30_000)
    page.wait_for_selector("#job-status[data-status='succeeded']", timeout=30_000)
    assert page.url.endswith(f"/jobs/{job_id}")
    backup_link = page.locator("#job-backup a")
    assert backup_link.count() == 1
    href = backup_link.get_attribute("href")
    assert href is not None and re.fullmatch(r"/backups/\d+", href)

    page.goto(base + "/backups")
    row = page.locator(f"#backups tr[data-backup-id='{href.rsplit('/', 1)[1]}']")
    assert row.get_attribute("data-state") == "verified"
    assert "verified" in row.locator(".backup-state").inner_text()
    assert row.locator(".backup-revision").inner_text() == "f1f1f1"
    assert row.locator(".backup-by").inner_text() == "web-operator"
    row.locator("a", has_text="Backup").click()
    page.wait_for_url(base + href)
    assert page.locator("#backup-revision").inner_text() == "f1f1f1"
    page.goto(base + "/")
    assert page.locator("#last-backup-link").get_attribute("href") == href
    assert page.console_errors == []
    assert list(Path(server.root / "backups").glob(".partial-*")) == []
