"""An operator's pages in a real browser: every page fits a phone (no sideways scrolling of
the page), refusals are shown in place with what was typed kept, quick actions open the
right preview, and times are local with JavaScript and UTC without.

One server for the module: a SQLite store, a SQLite target with the CRM project at its
second revision, and jobs of every kind run from the test as the CLI runs them (an
upgrade, a backup, a restore into a new database, a migration that fails on a held lock).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from helpers import PASSWORD, LiveServer, create_user

from admin import audit, migrations
from admin.backups import actions
from admin.config import Settings
from admin.jobs import JobRequest, run_in_foreground
from admin.runtime import Runtime
from admin.store.models import Job, JobKind, Role, Source

pytestmark = [pytest.mark.browser, pytest.mark.slow]

EARLY = "20240101000000"
INITIAL = "196dfdb50f6c"
WIDTHS = (390, 360)
CLI = audit.Actor("ux-tests", None, Source.CLI)


def _settings(server: LiveServer) -> Settings:
    """The server's own settings (its store and target), for jobs run from the test."""
    env = server.env()
    names = {name.upper() for name in Settings.model_fields}
    return Settings(_env_file=None, **{k.lower(): v for k, v in env.items() if k in names})


def _run(server: LiveServer, request: JobRequest) -> Job:
    """A job run here in the foreground, as the CLI runs one (a worker process, the store)."""
    runtime = Runtime.open(_settings(server))
    try:
        return run_in_foreground(runtime, request, CLI, echo=lambda line: None)
    finally:
        runtime.close()


def _upgrade(server: LiveServer, target: str) -> Job:
    settings = _settings(server)
    project = migrations.open_project(settings.alembic_config)
    _, current = migrations.read_current(project, settings.database_url)
    plan = migrations.make_plan(project, migrations.Direction.UPGRADE, target, current)
    return _run(server, JobRequest(JobKind.UPGRADE, target, plan.fingerprint))


def _stamp(server: LiveServer, target: str) -> Job:
    return _run(server, JobRequest(JobKind.STAMP, target))


@pytest.fixture(scope="module")
def ux_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    root = tmp_path_factory.mktemp("browser-ux")
    server = LiveServer(root / "server", env_overrides={"MIGRATION_LOCK_WAIT": "0.3"}).start()
    try:
        settings = _settings(server)
        migrations.create_database(settings.database_url)
        assert _upgrade(server, EARLY).status == "succeeded"  # job 1
        backup = actions.backup_request(settings, fmt=None)
        assert _run(server, backup).status == "succeeded"  # job 2: backup 1
        ask = actions.RestoreAsk(1, "new", "copy.sqlite3", actions.confirmation_name(settings))
        runtime = Runtime.open(settings)
        try:
            restore = actions.restore_request(runtime, ask, CLI)
            create_user(runtime, "ux-admin", Role.ADMIN)
        finally:
            runtime.close()
        assert _run(server, restore).status == "succeeded"  # job 3
        # Job 4: an upgrade that fails, the migration lock being held elsewhere.
        lock = migrations.migration_lock(settings.database_url, wait=1, owner="a test")
        with lock:
            assert _upgrade(server, "head").status == "failed"
        yield server
    finally:
        server.stop()
        migrations.dispose_engines()


def _sign_in(page: Any, base: str, username: str = "ux-admin") -> None:
    page.goto(base + "/login")
    page.fill("#username", username)
    page.fill("#password", PASSWORD)
    page.click("#login-form button[type=submit]")
    page.wait_for_url(base + "/")


PAGES = (
    "/",
    "/revisions",
    "/revisions?q=client",
    f"/revisions/{EARLY}",
    "/preview",
    "/preview?direction=upgrade&target=head",
    "/preview?direction=downgrade&target=base",
    "/preview?direction=upgrade&target=nope",
    "/jobs",
    "/jobs?kind=backup",
    "/jobs/1",
    "/jobs/2",
    "/jobs/3",
    "/jobs/4",
    "/backups",
    "/backups/1",
    "/audit",
    "/users",
    "/tokens",
    "/account/password",
    "/no-such-page",
)


def _overflow(page: Any) -> int:
    """How many pixels the page is wider than the window (0: no sideways scrolling)."""
    return int(
        page.evaluate(
            "Math.max(document.documentElement.scrollWidth, document.body.scrollWidth)"
            " - document.documentElement.clientWidth"
        )
    )


def test_every_page_fits_a_phone(ux_server: LiveServer, browser: Any) -> None:
    base = ux_server.url
    for width in WIDTHS:
        context = browser.new_context(viewport={"width": width, "height": 800})
        try:
            page = context.new_page()
            page.goto(base + "/login")
            assert _overflow(page) <= 0, f"/login is wider than {width} px"
            _sign_in(page, base)
            too_wide = {}
            for path in PAGES:
                page.goto(base + path)
                if (extra := _overflow(page)) > 0:
                    too_wide[path] = extra
            assert too_wide == {}, f"pages wider than {width} px (by px): {too_wide}"
            # Wide tables scroll inside their own box, never the page: the history's does.
            page.goto(base + "/revisions")
            inner = page.locator("#history-table .table-wrap").evaluate(
                "box => box.scrollWidth > box.clientWidth"
            )
            assert inner and _overflow(page) <= 0
        finally:
            context.close()


def test_the_dashboard_shows_it_all_on_a_laptop_screen(ux_server: LiveServer, browser: Any) -> None:
    """State, pending, last migration, last backup and recent jobs, without scrolling."""
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    try:
        page = context.new_page()
        _sign_in(page, ux_server.url)
        assert page.locator("#recent-jobs tr[data-job-id]").count() == 4
        assert page.locator("#pending li").count() == 6
        for part in ("#state-badge", "#pending", "#apply-link", "#rollback-last",
                     "#last-migration", "#last-backup", "#recent-jobs"):  # fmt: skip
            box = page.locator(part).bounding_box()
            assert box is not None and box["y"] + box["height"] <= 800, (part, box)
    finally:
        context.close()


def _apply_typing(page: Any, confirmation: str) -> int:
    """Type the downgrade's confirmation, press Apply: the status of the answer."""
    page.fill("#confirm_target", confirmation)
    with page.expect_response(re.compile(r".*/jobs$")) as answer:
        page.click("#apply-submit")
    return int(answer.value.status)


def test_a_wrong_confirmation_is_shown_above_the_form_with_what_was_typed(
    ux_server: LiveServer, page: Any
) -> None:
    base = ux_server.url
    _sign_in(page, base)
    page.goto(base + "/preview?direction=downgrade&target=base")
    assert _apply_typing(page, "not-the-revision") == 400
    refused = page.locator("#apply #apply-refused")
    assert "does not match" in refused.locator(".error-message").inner_text()
    # Still the preview of the same plan, with its form and the typed value.
    assert page.locator("#plan-to").inner_text() == "base"
    assert page.locator("#confirm_target").input_value() == "not-the-revision"
    assert page.locator("#confirm_target").get_attribute("aria-invalid") == "true"
    # The reason sits above the form it is about.
    above = page.evaluate(
        "document.querySelector('#apply-refused').compareDocumentPosition("
        "document.querySelector('#apply-form')) & Node.DOCUMENT_POSITION_FOLLOWING"
    )
    assert above
    # The page's own 400 is the only thing the console reports (no CSP violation, no error).
    assert all("status of 400" in e for e in page.console_errors), page.console_errors


def test_a_changed_plan_says_what_changed_and_offers_the_new_plan(
    ux_server: LiveServer, page: Any
) -> None:
    base = ux_server.url
    _sign_in(page, base)
    page.goto(base + "/preview?direction=downgrade&target=base")
    assert page.locator("#plan-steps li").count() == 2
    # Meanwhile someone moves the database (a stamp from the command line).
    assert _stamp(ux_server, INITIAL).status == "succeeded"
    try:
        assert _apply_typing(page, "base") == 409
        refused = page.locator("#apply-refused")
        assert refused.locator(".error-title").inner_text() == "Plan changed"
        moved = page.locator("#change-database-moved").inner_text()
        assert f"it was at {EARLY}" in moved and f"it is now at {INITIAL}" in moved
        assert EARLY in page.locator("#change-removed").inner_text()
        # No form to apply a plan nobody has seen; the form above keeps the request.
        assert page.locator("#apply-form").count() == 0
        assert page.locator("#target").input_value() == "base"
        page.click("#review-new-plan")
        page.wait_for_url(re.compile(r".*/preview\?direction=downgrade&target=base$"))
        assert page.locator("#plan-steps li").count() == 1
        assert page.locator("#plan-from").inner_text() == INITIAL
    finally:
        assert _stamp(ux_server, EARLY).status == "succeeded"


def test_quick_actions_open_the_right_preview(ux_server: LiveServer, page: Any) -> None:
    base = ux_server.url
    _sign_in(page, base)
    # The dashboard: the last migration is the failed job 4, apart from the recent jobs.
    assert page.locator("#last-migration [data-job-id]").get_attribute("data-job-id") == "4"
    page.click("#rollback-last")
    page.wait_for_url(re.compile(r".*/preview\?direction=downgrade&target=-1$"))
    assert page.locator("#plan-from").inner_text() == EARLY
    assert page.locator("#plan-to").inner_text() == INITIAL
    assert page.locator("#apply-form").count() == 1  # applied from there, never from here

    # A succeeded upgrade: roll it back (downgrade to where it started).
    page.goto(base + "/jobs/1")
    assert page.locator("#retry-job").count() == 0
    page.click("#rollback-job")
    page.wait_for_url(re.compile(r".*/preview\?direction=downgrade&target=base$"))
    assert page.locator("#plan-steps li").count() == 2

    # A failed upgrade: retry it through its preview.
    page.goto(base + "/jobs/4")
    assert page.locator("#job-status").get_attribute("data-status") == "failed"
    assert page.locator("#rollback-job").count() == 0
    page.click("#retry-job")
    page.wait_for_url(re.compile(r".*/preview\?direction=upgrade&target=head$"))
    assert page.locator("#plan-steps li").count() == 6

    # A backup job offers neither (nothing to roll back; it succeeded).
    page.goto(base + "/jobs/2")
    assert page.locator("#rollback-job, #retry-job").count() == 0
    # The upgrade's preview answers 422 (a step cannot be rendered offline on SQLite).
    assert all("status of 422" in e for e in page.console_errors), page.console_errors


def _utc_shown(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%d %H:%M:%S UTC").replace(tzinfo=UTC)


def test_times_are_local_with_javascript_and_utc_without(
    ux_server: LiveServer, browser: Any, nojs_page: Any
) -> None:
    base = ux_server.url
    _sign_in(nojs_page, base)
    nojs_page.goto(base + "/jobs/1")
    queued = nojs_page.locator("#job-queued time")
    utc_text = queued.inner_text()
    assert utc_text.endswith(" UTC")
    at = _utc_shown(utc_text)
    exact = datetime.fromisoformat(str(queued.get_attribute("datetime")))
    assert exact.replace(microsecond=0) == at
    nojs_page.goto(base + "/jobs")
    assert nojs_page.locator("#jobs tr[data-job-id='1'] time").inner_text().endswith(" UTC")

    context = browser.new_context(timezone_id="Asia/Tokyo", locale="en-GB")
    try:
        page = context.new_page()
        _sign_in(page, base)
        page.goto(base + "/jobs/1")
        local = page.locator("#job-queued time")
        tokyo = at + timedelta(hours=9)
        assert local.inner_text() == tokyo.strftime("%Y-%m-%d %H:%M:%S") + " GMT+9"
        assert local.get_attribute("title") == utc_text  # UTC on hover
        # Lists say how long ago, with both times on hover.
        page.goto(base + "/jobs")
        listed = page.locator("#jobs tr[data-job-id='1'] time")
        assert re.fullmatch(r"just now|\d+ min ago|1 hour ago|\d+ hours ago", listed.inner_text())
        assert listed.get_attribute("title").endswith(" UTC")
        assert tokyo.strftime("%Y-%m-%d %H:%M") in listed.get_attribute("title")
    finally:
        context.close()


def test_job_pages_show_the_facts_of_their_kind(ux_server: LiveServer, page: Any) -> None:
    base = ux_server.url
    _sign_in(page, base)
    # A backup: no steps, no plan; its file, size, checksum and verification.
    page.goto(base + "/jobs/2")
    assert page.locator("h1").inner_text() == "Job 2: backup"
    assert page.locator("#job-steps, #job-plan").count() == 0
    assert page.locator("#job-backup-format").inner_text().startswith("sqlite")
    assert re.fullmatch(r"[0-9a-f]{64}", page.locator("#job-backup-sha256").inner_text())
    assert "read back in full" in page.locator("#job-backup-verified").inner_text()
    assert page.locator("#job-backup a").get_attribute("href") == "/backups/1"
    # A restore into a new database: the target is not touched, the copy has its revision.
    page.goto(base + "/jobs/3")
    assert page.locator("h1").inner_text() == "Job 3: restore of backup 1 into a new database"
    assert page.locator("#job-revision-after").count() == 0
    assert page.locator("#job-target-revision").inner_text() == f"not touched: at {EARLY}"
    destination = page.locator("#job-destination").inner_text()
    assert "copy.sqlite3" in destination and EARLY in destination
    assert page.locator("#job-backup a").get_attribute("href") == "/backups/1"
    assert page.locator("#job-safety-backup").inner_text() == "none"
