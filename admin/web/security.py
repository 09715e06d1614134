"""Request guard (same origin + CSRF token on unsafe methods) and security headers."""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers, MutableHeaders
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from admin.auth import csrf
from admin.errors import PermissionDenied
from admin.store.models import Source
from admin.web import principal as principals

CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        # Pico draws its select arrows and checkmarks as data: SVGs.
        "img-src 'self' data:",
        "font-src 'self'",
        "connect-src 'self'",
        "object-src 'none'",
        "frame-ancestors 'none'",
        "base-uri 'self'",
        "form-action 'self'",
    ]
)
HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
}
HSTS = "max-age=31536000; includeSubDomains"
_FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")

CSRF_MESSAGE = (
    "This form has expired or was not sent by the panel itself. Reload the page and try again."
)


def own_origin(request: Request) -> str:
    return f"{request.url.scheme}://{request.url.netloc}"


async def _submitted_token(request: Request) -> str | None:
    given = request.headers.get(csrf.HEADER)
    if given:
        return given
    content_type = request.headers.get("content-type", "")
    if content_type.startswith(_FORM_TYPES):
        value = (await request.form()).get(csrf.FORM_FIELD)
        return value if isinstance(value, str) else None
    return None


async def guard_request(request: Request) -> None:
    """App-wide dependency: unsafe methods must come from this origin and carry the token.

    Runs before every route's own dependencies. Requests authenticated by an API token
    are exempt (a browser cannot attach that header cross-site); requests with a session
    cookie must send the session's CSRF token as the ``csrf_token`` form field or the
    ``X-CSRF-Token`` header (htmx sends it from ``hx-headers`` on ``<body>``).
    """
    if request.method not in csrf.UNSAFE_METHODS:
        return
    if principals.is_api(request) and request.headers.get("authorization"):
        await run_in_threadpool(principals.resolve, request)
        return
    ok, why = csrf.same_origin(
        own_origin(request), request.headers.get("origin"), request.headers.get("referer")
    )
    if not ok:
        raise PermissionDenied(f"Refused: {why}. {CSRF_MESSAGE}", title="Cross-site request")
    principal = await run_in_threadpool(principals.resolve, request)
    if principal is None or principal.via is not Source.WEB:
        return
    if not csrf.token_matches(principal.csrf_token, await _submitted_token(request)):
        raise PermissionDenied(CSRF_MESSAGE, title="Form expired")


class SecurityHeadersMiddleware:
    """Adds the security headers to every response; HSTS only when served over HTTPS.

    Responses that set no Cache-Control get ``no-store``: pages show who may do what,
    and must not be served from a cache after signing out.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        https = scope.get("scheme") == "https"

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in HEADERS.items():
                    headers.setdefault(name, value)
                if https:
                    headers.setdefault("Strict-Transport-Security", HSTS)
                headers.setdefault("Cache-Control", "no-store")
            await send(message)

        await self.app(scope, receive, send_with_headers)


class BodyLimitMiddleware:
    """Refuses a request body over ``max_bytes`` with 413, through the app's error handler.

    The check happens as the body is read (by form parsing or the CSRF guard), so the
    HTTPException it raises reaches the same handler as every other error.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = Headers(scope=scope).get("content-length", "")
        too_big = declared.isdigit() and int(declared) > self.max_bytes
        total = 0

        async def limited_receive() -> Message:
            nonlocal total
            if too_big:
                raise HTTPException(413)
            message = await receive()
            if message["type"] == "http.request":
                total += len(message.get("body", b""))
                if total > self.max_bytes:
                    raise HTTPException(413)
            return message

        await self.app(scope, limited_receive, send)
