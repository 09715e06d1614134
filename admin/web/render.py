"""Rendering pages and fragments, redirects after POST, and flash messages.

Every route answers through ``render`` or ``redirect``: they add what every template
needs (the user, the CSRF token, settings, static URLs, flash messages, the navigation)
and the right headers for htmx.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from jinja2_fragments.fastapi import Jinja2Blocks
from markupsafe import Markup
from sqlalchemy.exc import SQLAlchemyError
from starlette.requests import Request
from starlette.responses import Response

from admin import __version__
from admin.config import Environment, Settings
from admin.errors import AdminError
from admin.jobs import queue
from admin.live import naming
from admin.store.models import Job, Role
from admin.web import assets, highlight, job_views
from admin.web import principal as principals

log = logging.getLogger(__name__)

_FLASH_MAX_BYTES = 2048
LEVELS = ("success", "info", "warning", "error")


@dataclass(frozen=True)
class NavItem:
    label: str
    href: str
    min_role: Role = Role.VIEWER


# The panel's rooms. Links to rooms that do not exist yet answer 404 until they are built.
NAV: tuple[NavItem, ...] = (
    NavItem("Dashboard", "/"),
    NavItem("History", "/revisions"),
    NavItem("Preview", "/preview", Role.REVIEWER),
    NavItem("Jobs", "/jobs"),
    NavItem("Backups", "/backups"),
    NavItem("Audit", "/audit"),
    NavItem("Users", "/users", Role.ADMIN),
    NavItem("Tokens", "/tokens", Role.ADMIN),
)

ENVIRONMENT_BADGE = {
    Environment.PRODUCTION: "env-production",
    Environment.STAGING: "env-staging",
    Environment.DEVELOPMENT: "env-development",
}

# htmx settings that keep it within the Content-Security-Policy (no eval, no inline
# styles or scripts), keep pages out of localStorage, and let error fragments swap in.
HTMX_CONFIG: dict[str, Any] = {
    "allowEval": False,
    "allowScriptTags": False,
    "includeIndicatorStyles": False,
    "selfRequestsOnly": True,
    "historyCacheSize": 0,
    "refreshOnHistoryMiss": True,
    "responseHandling": [
        {"code": "204", "swap": False},
        {"code": "[23]..", "swap": True},
        # Error fragments are retargeted to the page's message area by the error handler.
        {"code": "[45]..", "swap": True, "error": True},
        {"code": "...", "swap": False},
    ],
}


def timestamp(value: datetime | None, *, relative: bool = False, seconds: bool = True) -> Markup:
    """A ``<time>`` in UTC, which static/app.js shows in the viewer's time zone (or as
    "3 min ago" when ``relative``) with the UTC time on hover; without JavaScript it stays
    as written here, in UTC."""
    if value is None:
        return Markup("—")
    utc = value.astimezone(UTC)
    shown = utc.strftime("%Y-%m-%d %H:%M:%S UTC" if seconds else "%Y-%m-%d %H:%M UTC")
    return Markup('<time datetime="{}" title="{}" data-local="{}"{}>{}</time>').format(
        utc.isoformat(),
        utc.strftime("%Y-%m-%d %H:%M:%S UTC"),
        "relative" if relative else "absolute",
        Markup(' data-seconds=""') if seconds else "",
        shown,
    )


def make_templates() -> Jinja2Blocks:
    templates = Jinja2Blocks(directory=str(assets.templates_dir()))
    env = templates.env
    env.globals["static_url"] = assets.static_url
    env.globals["product_name"] = "APEX Schema Admin"
    env.globals["version"] = __version__
    env.globals["htmx_config"] = HTMX_CONFIG
    env.globals["Role"] = Role
    env.globals["timestamp"] = timestamp
    env.filters["describe_job"] = queue.describe
    env.globals["live_lock_mode"] = naming.lock_mode
    env.filters.update(highlight.FILTERS)
    env.trim_blocks = True
    env.lstrip_blocks = True
    return templates


def _templates(request: Request) -> Jinja2Blocks:
    templates: Jinja2Blocks = request.app.state.templates
    return templates


def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


# Flash messages travel in a short signed cookie from the POST to the page after the redirect.


def _sign(key: bytes, payload: bytes) -> str:
    return hmac.new(key, b"flash\0" + payload, hashlib.sha256).hexdigest()[:32]


def _encode_flash(key: bytes, messages: list[tuple[str, str]]) -> str:
    payload = base64.urlsafe_b64encode(json.dumps(messages).encode()).decode()
    return f"{payload}.{_sign(key, payload.encode())}"


def _decode_flash(key: bytes, value: str | None) -> list[tuple[str, str]]:
    if not value or len(value) > _FLASH_MAX_BYTES * 2:
        return []
    payload, _, signature = value.rpartition(".")
    if not hmac.compare_digest(signature, _sign(key, payload.encode())):
        return []
    try:
        data = json.loads(base64.urlsafe_b64decode(payload.encode()))
    except (ValueError, TypeError):
        return []
    return [
        (str(level), str(text))
        for level, text in data
        if isinstance(level, str) and level in LEVELS
    ]


def flash(request: Request, text: str, level: str = "success") -> None:
    """Queue a message for the next page this browser sees (set by ``redirect``/``render``)."""
    if level not in LEVELS:
        raise ValueError(f"unknown flash level {level!r}")
    pending: list[tuple[str, str]] = getattr(request.state, "flash_out", [])
    pending.append((level, text))
    request.state.flash_out = pending


def _apply_flash(request: Request, response: Response, *, consumed: bool) -> None:
    name = principals.cookie_name(request, principals.FLASH_COOKIE)
    pending: list[tuple[str, str]] = getattr(request.state, "flash_out", [])
    if pending:
        value = _encode_flash(_settings(request).secret, pending)
        if len(value) <= _FLASH_MAX_BYTES:
            response.set_cookie(
                name,
                value,
                max_age=300,
                path="/",
                httponly=True,
                samesite="lax",
                secure=principals.is_https(request),
            )
            return
    if consumed:
        response.delete_cookie(
            name, path="/", httponly=True, samesite="lax", secure=principals.is_https(request)
        )


def _incoming_flash(request: Request) -> list[tuple[str, str]]:
    name = principals.cookie_name(request, principals.FLASH_COOKIE)
    return _decode_flash(_settings(request).secret, request.cookies.get(name))


def nav_for(role: Role | None) -> list[NavItem]:
    if role is None:
        return []
    return [item for item in NAV if role.at_least(item.min_role)]


def running_job(request: Request) -> Job | None:
    """The active job on the panel's target, for the banner every page shows (None when
    nothing runs, or when the store cannot say: the banner must never break a page)."""
    runtime = getattr(request.app.state, "runtime", None)
    if runtime is None:
        return None
    key = job_views.target_jobs_key(runtime.settings)
    if key is None:
        return None
    try:
        with runtime.reads() as session:
            job = queue.active(session, key)
            if job is not None:
                session.expunge(job)
            return job
    except (AdminError, SQLAlchemyError) as exc:
        log.debug("no running-job banner: %s", exc)
        return None


def base_context(request: Request) -> dict[str, Any]:
    """What every template may use (only already-resolved state; never touches the store)."""
    settings = _settings(request)
    principal = principals.cached(request)
    user = principal.user if principal else None
    role = user.role_enum if user else None
    return {
        "request": request,
        "user": user,
        "role": role,
        "csrf_token": principal.csrf_token if principal else None,
        "settings": settings,
        "environment": settings.environment.value,
        "environment_class": ENVIRONMENT_BADGE[settings.environment],
        # Anonymous pages (sign-in, errors) say nothing about the target database.
        "target_url": settings.target_url_masked if user is not None else None,
        "nav": nav_for(role),
        "current_path": request.url.path,
        "hx_headers": (
            {"X-CSRF-Token": principal.csrf_token} if principal and principal.csrf_token else None
        ),
    }


def render(
    request: Request,
    template: str,
    context: dict[str, Any] | None = None,
    *,
    block: str | None = None,
    status: int = 200,
    headers: dict[str, str] | None = None,
) -> Response:
    """Render a page, or only ``block`` of it when htmx asks for a fragment.

    With ``block`` the response varies with the ``HX-Request`` header and says so.
    """
    values = base_context(request)
    fragment = block if block and principals.wants_fragment(request) else None
    if not fragment and values["user"] is not None:
        values["running_job"] = running_job(request)
    pending: list[tuple[str, str]] = getattr(request.state, "flash_out", [])
    request.state.flash_out = []
    # A fragment shows only its own messages; queued ones wait for the next full page.
    incoming = [] if fragment else _incoming_flash(request)
    values["flashes"] = incoming + pending
    values.update(context or {})
    templates = _templates(request)
    if fragment:
        response = templates.TemplateResponse(
            request, template, values, status_code=status, headers=headers, block_name=fragment
        )
    else:
        response = templates.TemplateResponse(
            request, template, values, status_code=status, headers=headers
        )
    if block:
        response.headers.append("Vary", "HX-Request")
    if incoming:
        _apply_flash(request, response, consumed=True)
    return response


def redirect(
    request: Request,
    url: str,
    *,
    message: str | None = None,
    level: str = "success",
) -> Response:
    """After a POST: 303 to ``url`` (``HX-Redirect`` for htmx), with an optional flash."""
    if message:
        flash(request, message, level)
    if request.headers.get("hx-request") == "true":
        response = Response(status_code=200, headers={"HX-Redirect": url})
    else:
        response = Response(status_code=303, headers={"Location": url})
    _apply_flash(request, response, consumed=False)
    return response


def safe_next(value: str | None, default: str = "/") -> str:
    """A local path to go to after sign-in; anything else (another site) becomes ``default``."""
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return default
    if any(ord(ch) < 32 for ch in value):
        return default
    return value
