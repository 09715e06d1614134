"""``make screenshots``: the panel's main pages at 1280 and 390 px, into docs/screenshots/.

Starts ``python -m admin serve`` on the embedded default in a fresh directory (so the demo
target is created as on a first ``make run``), signs in as the first admin, takes a backup,
then photographs the dashboard and the preview of the pending revisions, applies them, and
photographs the job's page and the history. Run from the repo root:
``.venv/bin/python tests/browser/screenshots.py [OUT_DIR] [--all]`` (``--all`` adds the
other pages, for a review; ``make screenshots`` commits only the four).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path(os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium"))
WIDTHS = {1280: 800, 390: 844}
NEW_PASSWORD = "screenshots-password-42"
# Settings the shot must not inherit from the shell (the demo needs the embedded default).
CLEARED = ("DATABASE_URL", "ADMIN_DATABASE_URL", "VAR_DIR", "BACKUP_DIR", "ENVIRONMENT")


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_server(root: Path, port: int) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if k not in CLEARED}
    env.update({"ALEMBIC_CONFIG": str(REPO_ROOT / "alembic.ini"), "LOG_LEVEL": "WARNING"})
    log = (root / "server.log").open("ab")
    process = subprocess.Popen(
        [sys.executable, "-m", "admin", "serve", "--host", "127.0.0.1", "--port", str(port)],
        cwd=root,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"the server exited: {(root / 'server.log').read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1):
                return process
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.2)
    process.terminate()
    raise SystemExit("the server did not answer /healthz")


def first_sign_in(page: Any, base: str, password: str, new_password: str) -> None:
    """The first admin's first sign-in: the one-time password, then a new one."""
    page.goto(base + "/login")
    page.fill("#username", "admin")
    page.fill("#password", password)
    page.click("#login-form button[type=submit]")
    page.wait_for_url(re.compile(r".*/account/password.*"))
    page.fill("#current_password", password)
    page.fill("#new_password", new_password)
    page.fill("#confirm_password", new_password)
    page.click("#password-form button[type=submit]")
    page.wait_for_url(base + "/")


def initial_password(var_dir: Path) -> str:
    """The first admin's one-time password, as ``serve`` wrote it."""
    return (var_dir / "initial-admin-password").read_text().splitlines()[1]


def shoot(context: Any, url: str, name: str, out: Path) -> None:
    for width, height in WIDTHS.items():
        page = context.new_page()
        page.set_viewport_size({"width": width, "height": height})
        page.goto(url)
        page.wait_for_load_state("networkidle")
        page.screenshot(path=str(out / f"{name}-{width}.png"), full_page=True)
        page.close()


# The other pages (--all): their paths once the main shots are taken.
MORE = {
    "jobs": "/jobs",
    "backups": "/backups",
    "backup": "/backups/1",
    "backup-job": "/jobs/2",
    "audit": "/audit",
    "users": "/users",
    "tokens": "/tokens",
    "revision": "/revisions/e47a90b3d6f1",
    "downgrade-preview": "/preview?direction=downgrade&target=-1",
    "account": "/account/password",
}


def main(out: Path, everything: bool = False) -> None:
    from playwright.sync_api import sync_playwright

    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="apex-screenshots-") as tmp:
        root = Path(tmp)
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        server = start_server(root, port)
        try:
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(
                    executable_path=str(CHROMIUM), args=["--no-sandbox", "--disable-gpu"]
                )
                context = browser.new_context(timezone_id="Asia/Bangkok", locale="en-GB")
                page = context.new_page()
                first_sign_in(page, base, initial_password(root / "var"), NEW_PASSWORD)
                # A verified backup for the dashboard's "Last backup".
                page.goto(base + "/backups")
                page.click("#take-backup-button")
                page.wait_for_selector("#job-status[data-status='succeeded']", timeout=60_000)
                shoot(context, base + "/", "dashboard", out)
                shoot(context, base + "/preview?direction=upgrade&target=head", "preview", out)
                page.goto(base + "/preview?direction=upgrade&target=head")
                page.click("#apply-submit")
                page.wait_for_selector("#job-status[data-status='succeeded']", timeout=60_000)
                shoot(context, page.url, "job", out)
                shoot(context, base + "/revisions", "history", out)
                if everything:
                    for name, path in MORE.items():
                        shoot(context, base + path, name, out)
                    shoot(browser.new_context(), base + "/login", "login", out)
                browser.close()
        finally:
            server.terminate()
            server.wait(timeout=20)
    print(f"screenshots written to {out}")


if __name__ == "__main__":
    arguments = [a for a in sys.argv[1:] if a != "--all"]
    main(
        Path(arguments[0]) if arguments else REPO_ROOT / "docs" / "screenshots",
        everything="--all" in sys.argv[1:],
    )
