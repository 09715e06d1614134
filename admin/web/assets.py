"""Where templates and static files are, and how static files are served.

Static URLs carry a version (``/static/<hash of the files>/...``) so they can be cached
for a year: a release that changes any file changes every URL.
"""

from __future__ import annotations

import hashlib
import os
from functools import lru_cache
from pathlib import Path

from starlette.responses import Response
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

from admin.config import PACKAGE_DIR, SOURCE_ROOT

STATIC_PREFIX = "/static"
_YEAR = 365 * 24 * 3600


def _located(name: str) -> Path:
    # A wheel carries them as admin/templates and admin/static (pyproject force-include);
    # a source checkout or an editable install has them at the top level.
    inside = PACKAGE_DIR / name
    if inside.is_dir():
        return inside
    return SOURCE_ROOT / name


def templates_dir() -> Path:
    return _located("templates")


def static_dir() -> Path:
    return _located("static")


@lru_cache(maxsize=4)
def static_version(directory: Path | None = None) -> str:
    """A short hash over every static file's path and content."""
    root = directory or static_dir()
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        digest.update(path.relative_to(root).as_posix().encode())
        digest.update(b"\0")
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def static_url(path: str) -> str:
    """The versioned URL of a file under static/ (``vendor/htmx-2.0.11/htmx.min.js``)."""
    return f"{STATIC_PREFIX}/{static_version()}/{path.lstrip('/')}"


class VersionedStaticFiles(StaticFiles):
    """Static files whose URLs change with their content: cached for a year, immutable."""

    def file_response(
        self,
        full_path: str | os.PathLike[str],
        stat_result: os.stat_result,
        scope: Scope,
        status_code: int = 200,
    ) -> Response:
        response = super().file_response(full_path, stat_result, scope, status_code)
        response.headers["Cache-Control"] = f"public, max-age={_YEAR}, immutable"
        return response


def static_mount_path() -> str:
    return f"{STATIC_PREFIX}/{static_version()}"
