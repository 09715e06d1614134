"""In Chromium against real uvicorn: dashboard, history (filtered), a revision, SQL preview
and its download; markup in a message stays text; the pages read without JavaScript."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import PASSWORD, LiveServer
from reading_support import Rev, make_project, stamp

from admin import migrations
from admin.migrations import Direction

pytestmark = pytest.mark.browser

SCRIPT = "<script>alert(1)</script>"
HEAD = "dddd00000006"


def _table(name: str) -> str:
    return f"op.create_table('{name}', sa.Column('id', sa.Integer, primary_key=True))"


REVISIONS = [
    Rev("aaaa00000001", None, "create accounts", _table("accounts"), "op.drop_table('accounts')"),
    Rev("aaaa00000002", "aaaa00000001", SCRIPT, _table("notes"), "op.drop_table('notes')"),
    Rev("bbbb00000003", "aaaa00000002", "add invoices", _table("invoices")),
    Rev("cccc00000004", "aaaa00000002", "add payments", _table("payments")),
    Rev("abab00000005", ("bbbb00000003", "cccc00000004"), "merge invoices and payments"),
    Rev(HEAD, "abab00000005", "add audit trail", _table("audit_trail")),
]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """A panel on a small project with a branch, a merge and a message that is markup; its
    SQLite target exists and has no revision applied yet."""
    root = tmp_path_factory.mktemp("reading-live")
    ini = make_project(root / "project", REVISIONS)
    target = root / "crm.sqlite3"
    stamp(f"sqlite:///{target}", None)
    live = LiveServer(
        root / "server",
        env_overrides={"ALEMBIC_CONFIG": str(ini), "DATABASE_URL": f"sqlite:///{target}"},
    ).start()
    live.add_user("reader-op", "operator")
    live.add_user("reader-nojs", "reviewer")
    yield live
    live.stop()


def _sign_in(page: Any, base: str, username: str) -> None:
    page.goto(base + "/login")
    page.fill("#username", username)
    page.fill("#password", PASSWORD)
    page.click("#login-form button[type=submit]")
    page.wait_for_url(base + "/")


def test_read_filter_open_preview_download_sign_out(server: LiveServer, page: Any) -> None:
    base = server.url
    _sign_in(page, base, "reader-op")

    # Dashboard: where the database stands, what is pending, in order.
    assert page.locator("#state-badge").inner_text() == "Empty database: 6 pending"
    assert "no version table" in page.locator("#state-message").inner_text()
    pending = page.locator("#pending li")
    assert pending.count() == 6
    assert SCRIPT in pending.nth(1).inner_text()

    # History: every revision, the graph drawn, the message that is markup shown as text.
    page.click("nav.main-nav a[href='/revisions']")
    page.wait_for_url(base + "/revisions")
    assert page.locator("#revisions tbody tr").count() == 6
    assert page.locator("#revisions td.graph svg").count() == 6
    cell = page.locator("tr[data-revision='aaaa00000002'] .rev-message")
    assert cell.inner_text() == SCRIPT

    # Filtering swaps the table (htmx) and puts the filter in the address.
    page.fill("#q", "invoice")
    page.wait_for_url(base + "/revisions?q=invoice")
    page.wait_for_function("document.querySelectorAll('#revisions tbody tr').length === 2")
    rows = page.locator("#revisions tbody tr")
    assert [rows.nth(i).get_attribute("data-revision") for i in range(2)] == [
        "abab00000005",
        "bbbb00000003",
    ]
    assert page.locator("h1").inner_text() == "History"

    # A revision: its source and its own SQL.
    page.click("tr[data-revision='bbbb00000003'] .rev-id a")
    page.wait_for_url(base + "/revisions/bbbb00000003")
    assert page.locator("#revision-message").inner_text() == "add invoices"
    assert "create_table" in page.locator("#source").inner_text()
    assert "CREATE TABLE invoices" in page.locator("#upgrade-sql-text").inner_text()
    assert page.locator("#upgrade-sql .copy-button").is_visible()

    # The dashboard's Apply… leads to the preview of upgrade to head.
    page.goto(base + "/")
    page.click("#apply-link")
    page.wait_for_url(base + "/preview?direction=upgrade&target=head")
    assert page.locator("#plan-steps li").count() == 6
    assert page.locator("#copy-all").is_visible()
    assert page.locator("#apply-form input[name=plan_fingerprint]").get_attribute("value") == (
        page.locator("#plan-fingerprint").inner_text()
    )
    with page.expect_download() as info:
        page.click("#download-sql")
    download = info.value
    assert download.suggested_filename == f"upgrade_base_{HEAD}_sqlite.sql"
    content = Path(download.path()).read_text()
    project = migrations.open_project(Path(server.env()["ALEMBIC_CONFIG"]))
    plan = migrations.make_plan(project, Direction.UPGRADE, "head", ())
    url = server.env()["DATABASE_URL"]
    # A comment header says what the file is (plan, from/to, fingerprints, when, who); the
    # script follows it as rendered.
    header, _, script = content.partition("\n\n")
    assert script == migrations.render(project, plan, url, "sqlite").text
    assert header.startswith(f"-- APEX Schema Admin: upgrade from base to {HEAD}")
    assert f"-- Plan fingerprint: {plan.fingerprint}" in header.splitlines()
    for table in ("accounts", "notes", "invoices", "payments", "audit_trail"):
        assert f"CREATE TABLE {table}" in content

    page.click("details.account-menu summary")
    page.click("form.sign-out button")
    page.wait_for_url(base + "/login")
    assert page.dialogs == [], page.dialogs
    assert page.console_errors == [], page.console_errors


def test_markup_in_a_message_never_runs(server: LiveServer, page: Any) -> None:
    base = server.url
    _sign_in(page, base, "reader-op")
    for path in ("/", "/revisions", "/revisions/aaaa00000002", "/revisions?q=alert"):
        page.goto(base + path)
        assert page.get_by_text(SCRIPT).first.is_visible(), path
    assert page.locator("#revision-message").count() == 0
    page.goto(base + "/revisions/aaaa00000002")
    assert page.locator("#revision-message").inner_text() == SCRIPT
    page.wait_for_timeout(300)
    assert page.dialogs == []
    assert page.console_errors == [], page.console_errors


def test_reading_pages_without_javascript(server: LiveServer, nojs_page: Any) -> None:
    base = server.url
    page = nojs_page
    _sign_in(page, base, "reader-nojs")
    assert page.locator("#state-badge").inner_text() == "Empty database: 6 pending"
    page.click("#state a.refresh")
    page.wait_for_url(base + "/")
    assert page.locator("#pending li").count() == 6

    page.goto(base + "/revisions")
    page.fill("#q", "payments")
    page.click("#history-filter button[type=submit]")
    page.wait_for_url(base + "/revisions?q=payments")
    rows = page.locator("#revisions tbody tr")
    assert rows.count() == 2
    page.click("tr[data-revision='cccc00000004'] .rev-id a")
    page.wait_for_url(base + "/revisions/cccc00000004")
    assert "CREATE TABLE payments" in page.locator("#upgrade-sql-text").inner_text()
    # Copy buttons need JavaScript: without it they stay hidden.
    assert not page.locator("#upgrade-sql .copy-button").is_visible()

    page.click("#preview-upgrade")
    page.wait_for_url(base + "/preview?direction=upgrade&target=cccc00000004")
    assert page.locator("#plan-steps li").count() == 3
    page.select_option("#direction", "upgrade")
    page.fill("#target", "head")
    page.click("#preview-submit")
    page.wait_for_url(base + "/preview?direction=upgrade&target=head&from=")
    assert page.locator("#plan-steps li").count() == 6
    assert page.locator("#download-sql").is_visible()
    assert page.locator("#apply-form").count() == 0
    assert not page.locator("#copy-all").is_visible()
