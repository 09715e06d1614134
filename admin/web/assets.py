"""Where templates and static files are: inside the wheel, or at the checkout's top level."""

from __future__ import annotations

from pathlib import Path

from admin.config import PACKAGE_DIR, SOURCE_ROOT


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
