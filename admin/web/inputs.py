"""Refuse control characters in anything a request carries, before any route reads it.

One app-wide dependency looks at the path parameters, the query, the headers (cookies
included), and the body when it is a form or JSON. A NUL byte or another control character
is refused with a 400 and one line naming the field; on a route that is audited the refusal
is audited too (errors.py). Without this, a NUL reaches PostgreSQL, which cannot store it
(a 500), or an export stops mid-stream.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.datastructures import UploadFile
from starlette.requests import Request

from admin import controls
from admin.errors import InvalidInput

_FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")


class ControlCharacters(InvalidInput):
    """A field holds a control character (400)."""

    title = "Invalid input"


def _refuse(place: str, found: tuple[str, str] | None) -> None:
    if found is None:
        return
    name, char = found
    raise ControlCharacters(
        f"{place} {name!r} contains a control character ({controls.describe(char)}); "
        "remove it and try again."
    )


async def _body_items(request: Request) -> list[tuple[str, Any]]:
    content_type = request.headers.get("content-type", "")
    if content_type.startswith(_FORM_TYPES):
        items: list[tuple[str, Any]] = []
        for name, value in (await request.form()).multi_items():
            if isinstance(value, UploadFile):
                items.append((name, value.filename or ""))
            else:
                items.append((name, value))
        return items
    if "json" in content_type:
        body = await request.body()
        try:
            parsed = json.loads(body) if body else None
        except (ValueError, UnicodeDecodeError):
            return []  # not JSON: the route's own validation says so
        return [("", parsed)]
    return []


async def refuse_control_characters(request: Request) -> None:
    """App-wide dependency: a control character anywhere in the request is a 400."""
    _refuse("The address part", controls.first_control(request.path_params.items(), where="line"))
    _refuse(
        "The query parameter",
        controls.first_control(request.query_params.multi_items(), where="line"),
    )
    _refuse("The header", controls.first_control(request.headers.items(), where="header"))
    if request.method in ("POST", "PUT", "PATCH", "DELETE"):
        found = controls.first_control(await _body_items(request))
        if found is not None and not found[0]:
            found = ("body", found[1])
        _refuse("The field", found)
