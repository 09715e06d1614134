"""The wheel carries templates/ and static/: built, installed into a fresh venv, served."""

from __future__ import annotations

import re
import subprocess
import sys
import urllib.request
import zipfile
from pathlib import Path

import pytest
from helpers import REPO_ROOT, LiveServer

pytestmark = pytest.mark.slow


class InstalledServer(LiveServer):
    """``schema-admin serve`` from a venv where the wheel is installed (not this checkout)."""

    venv: Path

    def command(self) -> list[str]:
        return [str(self.venv / "bin" / "schema-admin"), "serve", "--host", "127.0.0.1"]


def _run(*args: str, cwd: Path | None = None) -> None:
    result = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, f"{args}: {result.stdout[-2000:]}\n{result.stderr[-4000:]}"


def test_wheel_installs_and_serves_its_templates_and_static_files(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    _run(sys.executable, "-m", "pip", "wheel", "--no-deps", "-w", str(dist), str(REPO_ROOT))
    [wheel] = dist.glob("apex_schema_admin-*.whl")
    # The password policy's list of common passwords ships inside the package.
    assert "admin/auth/data/common-passwords.txt" in zipfile.ZipFile(wheel).namelist()

    venv = tmp_path / "venv"
    _run(sys.executable, "-m", "venv", str(venv))
    _run(str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", str(wheel))

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    # The installed package, not this checkout, is what gets imported there.
    where = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import admin; print(admin.__file__)"],
        cwd=elsewhere,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert str(venv) in where and str(REPO_ROOT) not in where

    server = InstalledServer(elsewhere)
    server.venv = venv
    server.start(timeout=60)
    try:
        with urllib.request.urlopen(server.url + "/login", timeout=10) as answer:
            assert answer.status == 200
            html = answer.read().decode()
        assert re.search(r'<form method="post" action="/login"', html)
        match = re.search(r'src="(/static/[0-9a-f]+/vendor/htmx-2[^"]+\.js)"', html)
        assert match, "no versioned htmx script on the sign-in page"
        with urllib.request.urlopen(server.url + match.group(1), timeout=10) as answer:
            assert answer.status == 200
            assert b'version:"2.' in answer.read()
            assert "immutable" in answer.headers["Cache-Control"]
    finally:
        server.stop()
