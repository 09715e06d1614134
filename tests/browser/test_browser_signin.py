"""In a real browser against real uvicorn: the first admin's sign-in, and pages without JS."""

from __future__ import annotations

from typing import Any

import pytest

pytestmark = pytest.mark.browser

NEW_PASSWORD = "browser-chosen-password-1"


def _sign_in(page: Any, base: str, username: str, password: str) -> None:
    page.goto(base + "/login")
    page.fill("#username", username)
    page.fill("#password", password)
    page.click("#login-form button[type=submit]")


def test_first_admin_signs_in_changes_password_sees_dashboard_signs_out(
    make_live_server: Any, page: Any
) -> None:
    server = make_live_server()
    base = server.url
    page.goto(base + "/")
    assert page.url == base + "/login"

    one_time = server.initial_admin_password()
    _sign_in(page, base, "admin", one_time)
    page.wait_for_url(base + "/account/password")
    assert page.locator("#password-required").is_visible()
    # Every page sends them back here until the password is changed.
    page.goto(base + "/users")
    page.wait_for_url(base + "/account/password")

    page.fill("#current_password", one_time)
    page.fill("#new_password", NEW_PASSWORD)
    page.fill("#confirm_password", NEW_PASSWORD)
    page.click("#password-form button[type=submit]")
    page.wait_for_url(base + "/")
    assert page.locator("h1").inner_text() == "Dashboard"
    assert page.locator("#messages .notice").inner_text() == "Your password has been changed."
    assert page.locator("header .env-badge").inner_text().lower() == "development"
    assert page.locator("#migration-state").is_visible()

    # htmx loaded and took its CSRF header from <body>.
    assert page.evaluate("typeof htmx !== 'undefined' && htmx.version.startsWith('2.')")
    assert page.evaluate("htmx.config.allowEval") is False

    page.click("details.account-menu summary")
    page.click("form.sign-out button")
    page.wait_for_url(base + "/login")
    assert page.locator("#messages .notice").inner_text() == "You are signed out."
    page.goto(base + "/")
    assert page.url == base + "/login"
    assert page.console_errors == [], page.console_errors

    # The one-time password is spent: its file is gone, and it signs in no more.
    assert not (server.root / "var" / "initial-admin-password").exists()
    _sign_in(page, base, "admin", one_time)
    assert "not correct" in page.locator("#login-error").inner_text()
    _sign_in(page, base, "admin", NEW_PASSWORD)
    page.wait_for_url(base + "/")


def test_pages_are_readable_without_javascript(live_server: Any, nojs_page: Any) -> None:
    live_server.add_user("nojs-admin", "admin")
    base = live_server.url
    page = nojs_page
    _sign_in(page, base, "nojs-admin", "correct-horse-battery-9")
    page.wait_for_url(base + "/")
    assert page.locator("h1").inner_text() == "Dashboard"
    assert page.locator("#target .target-url").inner_text().startswith("sqlite:///")
    page.click("nav.main-nav a[href='/users']")
    page.wait_for_url(base + "/users")
    assert page.locator("#users tr[data-username='nojs-admin']").count() == 1
    # Forms work as plain forms: add a user, read the one-time password.
    page.fill("#new-username", "made-without-js")
    page.click("#add-user button[type=submit]")
    assert len(page.locator("#secret").inner_text()) >= 16
    page.goto(base + "/tokens")
    assert page.locator("#create-token").is_visible()
    # The account menu opens without JS (<details>), and signing out is a plain POST.
    page.click("details.account-menu summary")
    page.click("form.sign-out button")
    page.wait_for_url(base + "/login")
