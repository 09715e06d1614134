"""Playwright on Debian's Chromium (``/usr/bin/chromium``; Playwright cannot download one here).

Fixtures: ``browser`` (per module), ``context`` and ``page`` (per test, JavaScript on),
``nojs_context`` / ``nojs_page`` (JavaScript off). Use them with the ``live_server`` or
``make_live_server`` fixtures from tests/conftest.py; mark tests ``@pytest.mark.browser``.
Every page collects console errors (CSP violations among them) in ``page.console_errors``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = Path(os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium"))
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]


# Module scope, not session: Playwright's sync API keeps an event loop running in the main
# thread while it is started, and every later test calling asyncio.run() would fail.
@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        reason = f"{CHROMIUM} is missing: apt-get install -y chromium"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(reason)
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


def _watch(page: Any) -> Any:
    page.console_errors = []
    page.dialogs = []
    page.on(
        "console", lambda msg: page.console_errors.append(msg.text) if msg.type == "error" else None
    )

    def on_dialog(dialog: Any) -> None:
        page.dialogs.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", on_dialog)
    page.set_default_timeout(10_000)
    return page


@pytest.fixture
def context(browser: Any) -> Iterator[Any]:
    ctx = browser.new_context()
    yield ctx
    ctx.close()


@pytest.fixture
def page(context: Any) -> Any:
    return _watch(context.new_page())


@pytest.fixture
def nojs_context(browser: Any) -> Iterator[Any]:
    ctx = browser.new_context(java_script_enabled=False)
    yield ctx
    ctx.close()


@pytest.fixture
def nojs_page(nojs_context: Any) -> Any:
    return _watch(nojs_context.new_page())
