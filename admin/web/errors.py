"""One way errors reach people: an HTML page, an htmx fragment, or JSON under /api.

Handlers for ``AdminError`` (status, title, message), FastAPI's validation errors and
Starlette's HTTP errors (404, 405, 413), plus a catch-all that logs an unexpected
exception and answers with a plain apology. Nobody ever sees a traceback.
A 401 on a page sends the browser to sign in. Refusals are audited as AccessDenied
(refusals.py): every 403 and 409; a 401 on a route that changes something or with a bad
token; a control character (400) on a route that is audited (``record_refusal`` for a
route that renders a refusal itself). A 429 says when to try again (Retry-After).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from http import HTTPStatus
from typing import Any
from urllib.parse import quote

import anyio
from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.routing import iter_route_contexts
from sqlalchemy.orm import Session
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import compile_path
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from admin import audit
from admin.errors import AdminError, TooManyRequests
from admin.web import principal as principals
from admin.web import refusals
from admin.web.inputs import ControlCharacters
from admin.web.render import render

log = logging.getLogger(__name__)

ERROR_TEMPLATE = "error.html"
ERROR_BLOCK = "error_fragment"
# Where an htmx error fragment goes (layout.html's message area).
MESSAGES_TARGET = "#messages"
APOLOGY = (
    "Something went wrong on the panel's side. The error has been logged; "
    "try again, and if it keeps happening tell an admin when it happened."
)


class Redirect(Exception):
    """Raised by a dependency to send the browser elsewhere (e.g. to change a password)."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.url = url


def _redirect(request: Request, url: str) -> Response:
    if request.headers.get("hx-request") == "true":
        return Response(status_code=200, headers={"HX-Redirect": url})
    return Response(status_code=303, headers={"Location": url})


def _principal(request: Request) -> principals.Principal | None:
    """The caller, for the page around the error; an error here must not hide the first."""
    try:
        return principals.resolve(request)
    except Exception:  # noqa: BLE001 - the store may be what failed
        return None


_UNSAFE = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# A GET whose path has one of these hands out data or SQL: it is audited like a change.
_AUDITED_GET_WORDS = ("download", "export", "preview", "/sql")


def _audited_route(request: Request) -> bool:
    path = request.url.path
    return request.method in _UNSAFE or any(word in path for word in _AUDITED_GET_WORDS)


def _is_audited_refusal(request: Request, status: int) -> bool:
    """Which refusals the trail keeps: every 403 and 409; a 401 on a route that is audited
    or with a token that is not valid; a control character on a route that is audited."""
    if getattr(request.state, "refusal_audited", False):
        return False
    if status in (403, 409):
        return True
    if status == 401:
        return _audited_route(request) or bool(request.headers.get("authorization"))
    if getattr(request.state, "control_characters", False):
        return _audited_route(request)
    return False


def answer_401_plainly(request: Request) -> None:
    """Mark a request whose 401 must stay a 401 (an EventSource cannot follow a sign-in page)."""
    request.state.plain_401 = True


def record_refusal(request: Request, session: Session, actor: audit.Actor, exc: AdminError) -> None:
    """Audit a 403/409 that a route catches and renders itself, in the route's transaction."""
    if exc.status not in (403, 409) or exc.audited:
        return
    event = audit.AccessDenied(
        method=request.method,
        path=request.url.path[:400],
        status=exc.status,
        reason=exc.message[:500],
    )
    audit.record(session, event, actor)


def _sign_in_url(request: Request) -> str:
    target = request.url.path
    if request.url.query:
        target += "?" + request.url.query
    if request.method != "GET" or target == "/":
        return "/login"
    return "/login?next=" + quote(target, safe="/")


def error_response(
    request: Request,
    status: int,
    title: str,
    message: str,
    *,
    headers: Mapping[str, str] | None = None,
) -> Response:
    """The answer for an error, shaped for the caller: JSON, an htmx fragment, or a page."""
    # Refusals are audited (refusals.record: anonymous repeats aggregated), unless the
    # service that refused already recorded its own event (AdminError.audited).
    if _is_audited_refusal(request, status):
        if principals.cached(request) is None:
            _principal(request)
        refusals.record(request, status, message)
    if principals.is_api(request):
        extra = dict(headers or {})
        if status == 401:
            extra.setdefault("WWW-Authenticate", 'Bearer realm="api"')
        return JSONResponse(
            {"status": status, "title": title, "detail": message},
            status_code=status,
            headers=extra,
        )
    if status == 401 and not getattr(request.state, "plain_401", False):
        response = _redirect(request, _sign_in_url(request))
        stale = principals.cookie_name(request, principals.SESSION_COOKIE)
        if stale in request.cookies:
            response.delete_cookie(stale, path="/", secure=principals.is_https(request))
        return response
    if principals.cached(request) is None:
        _principal(request)
    context: dict[str, Any] = {"status": status, "title": title, "message": message}
    response = render(
        request,
        ERROR_TEMPLATE,
        context,
        block=ERROR_BLOCK,
        status=status,
        headers=dict(headers or {}),
    )
    if principals.wants_fragment(request):
        response.headers["HX-Retarget"] = MESSAGES_TARGET
        response.headers["HX-Reswap"] = "innerHTML"
    return response


def _admin_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, AdminError)
    request.state.refusal_audited = exc.audited
    request.state.control_characters = isinstance(exc, ControlCharacters)
    headers = None
    if isinstance(exc, TooManyRequests) and exc.retry_after is not None:
        headers = {"Retry-After": str(max(1, math.ceil(exc.retry_after)))}
    return error_response(request, exc.status, exc.title, exc.message, headers=headers)


def _redirect_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, Redirect)
    return _redirect(request, exc.url)


def _validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    problems = []
    for error in exc.errors()[:10]:
        loc = [str(part) for part in error.get("loc", ()) if part not in ("body", "query")]
        where = ".".join(loc) or "request"
        problems.append(f"{where}: {error.get('msg', 'is not valid')}")
    message = "Please correct: " + "; ".join(problems) if problems else "The request is not valid."
    return error_response(request, 400, "Invalid input", message)


_HTTP_TEXT = {
    404: (
        "Not found",
        "There is nothing at this address. Check the link, or go back to the dashboard.",
    ),
    413: (
        "Too large",
        "The request is too large. Send less data (a form field may be far too long).",
    ),
}


def allowed_methods(request: Request) -> list[str]:
    """Every method some route accepts at this path (a 405's Allow header names them all)."""
    methods: set[str] = set()
    for route in iter_route_contexts(request.app.routes):
        if route.methods and route.path and compile_path(route.path)[0].match(request.url.path):
            methods |= set(route.methods)
    return sorted(methods)


def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    status = exc.status_code
    title = HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else "Error"
    headers = dict(exc.headers or {})
    if status == 405:
        message = f"This address does not accept {request.method} requests."
        headers["Allow"] = ", ".join(allowed_methods(request)) or headers.get("Allow", "")
    elif status in _HTTP_TEXT:
        title, message = _HTTP_TEXT[status]
    else:
        message = exc.detail if isinstance(exc.detail, str) else title
    return error_response(request, status, title, message, headers=headers)


def install(app: FastAPI) -> None:
    app.add_exception_handler(AdminError, _admin_error)
    app.add_exception_handler(Redirect, _redirect_handler)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)


_GONE = (
    anyio.BrokenResourceError,
    anyio.ClosedResourceError,
    anyio.EndOfStream,
    ClientDisconnect,
    ConnectionError,
)


def client_went_away(exc: BaseException) -> bool:
    """Whether ``exc`` (or every exception in a group) says the client is gone."""
    if isinstance(exc, BaseExceptionGroup):
        return all(client_went_away(inner) for inner in exc.exceptions)
    return isinstance(exc, _GONE)


class CatchAllMiddleware:
    """Logs an unexpected exception and answers 500 with an apology and no details."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception as exc:
            if started and client_went_away(exc):
                # A client that leaves in the middle of a response (a closed tab, a dropped
                # live log) is normal: one debug line, no traceback.
                log.debug("client left %s %s", scope.get("method"), scope.get("path"))
                return
            log.exception("unexpected error on %s %s", scope.get("method"), scope.get("path"))
            if started:
                return
            response = self._apology(Request(scope, receive))
            await response(scope, receive, send)

    @staticmethod
    def _apology(request: Request) -> Response:
        if principals.is_api(request):
            return JSONResponse(
                {"status": 500, "title": "Internal error", "detail": APOLOGY}, status_code=500
            )
        try:
            context = {"status": 500, "title": "Internal error", "message": APOLOGY}
            return render(request, ERROR_TEMPLATE, context, status=500)
        except Exception:
            log.exception("the error page itself failed")
            return PlainTextResponse(APOLOGY, status_code=500)
