"""A newcomer's first run: ``make run`` in a clean copy of the repo, then Apply from the
dashboard and watch the migration finish.

The copy has the repo's files and no ``var/``; its ``.venv`` is this checkout's (so
nothing is installed again). ``make run`` creates the SQLite demo target at an early
revision of the CRM project with a few rows: the dashboard shows pending revisions at once,
and Apply runs them as a job whose log streams into the page.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import sqlite3
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import free_port
from projects import REPO_ROOT
from screenshots import first_sign_in, initial_password

from admin.demo import DEMO_REVISION

pytestmark = [pytest.mark.browser, pytest.mark.slow]

NEW_PASSWORD = "first-run-password-42"
# What a fresh shell would not have set: the copy must run on the embedded default.
CLEARED = ("DATABASE_URL", "ADMIN_DATABASE_URL", "VAR_DIR", "BACKUP_DIR", "ALEMBIC_CONFIG")


def _clean_copy(destination: Path) -> Path:
    """The repo's files as a fresh clone has them (tracked and new, not ignored ones)."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=REPO_ROOT,
        capture_output=True,
        check=True,
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        source = REPO_ROOT / name
        if not source.is_file():
            continue  # deleted in the working tree
        target = destination / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target)  # mtimes kept: make sees the venv as up to date
    (destination / ".venv").symlink_to(REPO_ROOT / ".venv")
    return destination


@pytest.fixture(scope="module")
def first_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    if not (REPO_ROOT / ".venv" / ".installed").exists():
        pytest.skip("needs this checkout's .venv (make lint or make test creates it)")
    copy = _clean_copy(tmp_path_factory.mktemp("first-run") / "repo")
    assert not (copy / "var").exists()
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in CLEARED}
    env.update({"PORT": str(port), "HOST": "127.0.0.1", "LOG_LEVEL": "WARNING"})
    log = (copy.parent / "make-run.log").open("wb")
    process = subprocess.Popen(
        ["make", "run"], cwd=copy, env=env, stdout=log, stderr=subprocess.STDOUT,
        start_new_session=True,  # make and the server it starts: one group to stop
    )  # fmt: skip
    log.close()
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            if process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError((copy.parent / "make-run.log").read_text()[-3000:])
            try:
                with urllib.request.urlopen(base + "/healthz", timeout=1):
                    break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(0.2)
        yield base, copy
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)


def test_make_run_creates_a_demo_that_an_operator_can_apply(
    first_run: tuple[str, Path], page: Any
) -> None:
    base, copy = first_run
    output = (copy.parent / "make-run.log").read_text()
    assert "Demo target created" in output and "Apply" in output
    demo = copy / "var" / "demo.sqlite3"
    with sqlite3.connect(demo) as db:
        assert db.execute("SELECT version_num FROM alembic_version").fetchall() == [
            (DEMO_REVISION,)
        ]
        assert db.execute("SELECT count(*) FROM clients").fetchone()[0] > 0

    # Sign in with the printed one-time password, choose a new one.
    password = initial_password(copy / "var")
    assert password in output
    first_sign_in(page, base, password, NEW_PASSWORD)

    # The dashboard: pending revisions, the demo's job as the last migration, Apply.
    assert page.locator("#state-badge").inner_text() == "6 pending"
    assert page.locator("#current-revisions").inner_text().strip() == DEMO_REVISION
    assert page.locator("#last-migration .status-badge").inner_text() == "succeeded"
    # A cold preview renders the plan and analyses each step in child processes: on a busy
    # machine that takes longer than a click's default wait.
    page.click("#apply-link", no_wait_after=True)
    page.wait_for_url(re.compile(r".*/preview\?direction=upgrade&target=head$"), timeout=90_000)
    assert page.locator("#plan-steps li").count() == 6
    # The plan drops clients.passport_number: Apply asks for what it drops, typed again.
    phrase = page.locator("#confirm-destructive-value").inner_text()
    assert "clients.passport_number" in phrase
    page.fill("#confirm_destructive", phrase)
    page.click("#apply-submit")
    page.wait_for_url(re.compile(r".*/jobs/\d+$"))

    # The log streams in, the page ends on the job's outcome without a reload.
    page.wait_for_selector("#job-log .log-line:has-text('[6/6]')", timeout=30_000)
    page.wait_for_selector("#job-status[data-status='succeeded']", timeout=30_000)
    assert page.locator("#job-steps").inner_text() == "6 of 6"
    assert page.locator("#job-finished time").count() == 1
    assert page.locator("#rollback-job").is_visible()
    page.goto(base + "/")
    assert page.locator("#state-badge").inner_text() == "Up to date"
    with sqlite3.connect(demo) as db:
        columns = [row[1] for row in db.execute("PRAGMA table_info(clients)")]
    assert "passport_number" not in columns  # e47a90b3d6f1 ran on the demo's rows
    # Only the preview's own 422: on SQLite one step (a batch "move and copy") cannot be
    # rendered offline, which the preview says; its SQL is in the job's log.
    assert all("status of 422" in e for e in page.console_errors), page.console_errors
