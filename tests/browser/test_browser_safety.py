"""In Chromium against real uvicorn: the preview of a destructive upgrade shows its badges
and asks for the typed confirmation (then the job runs); a downgrade across the
irreversible revision shows no Apply."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from helpers import PASSWORD, LiveServer
from playwright.sync_api import expect
from reading_support import CRM_INI, CRM_ORDER, IRREVERSIBLE, linear, make_project, stamp

from admin import migrations
from admin.migrations import Command

pytestmark = pytest.mark.browser

PHRASE = f"clients.passport_number, {IRREVERSIBLE}"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """The CRM project on a SQLite target migrated to the merge before the drop."""
    root = tmp_path_factory.mktemp("safety-live")
    url = f"sqlite:///{root / 'crm.sqlite3'}"
    engine = migrations.new_engine(url)
    try:
        with engine.connect() as connection:
            project = migrations.open_project(CRM_INI)
            migrations.run(
                project, connection, Command.UPGRADE, CRM_ORDER[4], on_event=lambda e: None
            )
    finally:
        engine.dispose()
    live = LiveServer(
        root / "server", env_overrides={"ALEMBIC_CONFIG": str(CRM_INI), "DATABASE_URL": url}
    ).start()
    live.add_user("safe-op", "operator")
    yield live
    live.stop()


def _sign_in(page: Any, base: str, username: str) -> None:
    page.goto(base + "/login")
    page.fill("#username", username)
    page.fill("#password", PASSWORD)
    page.click("#login-form button[type=submit]")
    page.wait_for_url(base + "/")


def test_destructive_upgrade_asks_for_its_confirmation_then_irreversible_downgrade_has_no_apply(
    server: LiveServer, page: Any
) -> None:
    base = server.url
    _sign_in(page, base, "safe-op")
    # The dashboard's pending list already shows the drop.
    pending = page.locator(f"#pending li[data-revision='{IRREVERSIBLE}'] .risk")
    # SQLite: batch mode needs the live table to render the drop offline. What only the
    # rendering shows arrives with the analysis (the fragment asks again while it runs).
    expect(pending).to_have_text(
        ["irreversible", "destructive", "needs a live database"], timeout=60_000
    )
    expect(page.locator("#pending .analysing")).to_have_count(0)

    page.click("#apply-link")
    page.wait_for_url(re.compile(r".*/preview\?.*"))
    summary = page.locator("#risk-summary .risk")
    assert "destructive" in summary.all_inner_texts()
    step = page.locator(f"#plan-steps li[data-revision='{IRREVERSIBLE}'] .risk")
    assert step.all_inner_texts() == ["irreversible", "destructive", "needs a live database"]
    assert step.first.get_attribute("title").startswith("once applied it cannot be undone")
    assert page.locator("#confirm-destructive-value").inner_text() == PHRASE
    assert page.locator("#backup_first").is_checked()
    # A wrong confirmation is refused with the phrase to type.
    page.fill("#confirm_destructive", "passport")
    page.click("#apply-submit")
    assert f"type '{PHRASE}'" in page.locator(".error-message").inner_text()
    page.go_back()
    page.fill("#confirm_destructive", PHRASE)
    page.click("#apply-submit")
    page.wait_for_url(re.compile(r".*/jobs/\d+$"))
    page.wait_for_selector("#job-status[data-status='succeeded']", timeout=60_000)
    assert page.locator("#job-log").inner_text().count("backup gate") >= 1

    page.goto(base + "/preview?direction=downgrade&target=base")
    assert page.locator("#apply-form").count() == 0
    blocked = page.locator("#plan-blocked")
    assert blocked.is_visible()
    assert f"lowest it can reach is {IRREVERSIBLE}" in blocked.inner_text()
    assert page.locator("#apply-refused").is_visible()


@pytest.fixture(scope="module")
def long_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """A project of 60 revisions (a long plan: its preview is folded), SQLite at base."""
    root = tmp_path_factory.mktemp("safety-long")
    ini = make_project(root / "project", linear(60))
    target = root / "long.sqlite3"
    stamp(f"sqlite:///{target}", None)
    live = LiveServer(
        root / "server",
        env_overrides={"ALEMBIC_CONFIG": str(ini), "DATABASE_URL": f"sqlite:///{target}"},
    ).start()
    live.add_user("long-rev", "reviewer")
    yield live
    live.stop()


def test_a_folded_step_loads_its_sql_when_opened(long_server: LiveServer, page: Any) -> None:
    base = long_server.url
    _sign_in(page, base, "long-rev")
    page.goto(base + "/preview?direction=upgrade&target=head")
    step = page.locator("#plan-steps li[data-revision='r00031'] details")
    assert step.locator(".step-sql").count() == 0
    step.locator("summary").click()
    page.wait_for_selector("#plan-steps li[data-revision='r00031'] .step-sql .sql")
    assert "CREATE TABLE t_r00031" in step.locator(".step-sql .sql").inner_text()
    # Closing and opening again does not load it twice.
    step.locator("summary").click()
    step.locator("summary").click()
    page.wait_for_timeout(300)
    assert step.locator(".step-sql").count() == 1
