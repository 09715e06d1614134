"""Who is making a request: a signed-in browser (session cookie) or an API token.

Resolved at most once per request and kept on ``request.state``; the store is touched
only when the request carries a credential.
"""

from __future__ import annotations

from dataclasses import dataclass

from starlette.requests import Request

from admin.auth import sessions, tokens
from admin.errors import NotAuthenticated
from admin.runtime import Runtime
from admin.store.models import Source, User

SESSION_COOKIE = "apex_session"
FLASH_COOKIE = "apex_flash"
API_PREFIX = "/api/"
_UNSET = object()


@dataclass(frozen=True)
class Principal:
    """The caller: a user, how they authenticated, and their session's CSRF token."""

    user: User
    via: Source  # Source.WEB: session cookie; Source.API: bearer token
    session_id: int | None = None
    csrf_token: str | None = None
    token_id: int | None = None


def runtime_of(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


def is_https(request: Request) -> bool:
    return request.url.scheme == "https"


def cookie_name(request: Request, base: str) -> str:
    """``__Host-`` names over HTTPS: the browser then insists on Secure, Path=/, no Domain."""
    return f"__Host-{base}" if is_https(request) else base


def is_api(request: Request) -> bool:
    return request.url.path.startswith(API_PREFIX)


def wants_fragment(request: Request) -> bool:
    """An htmx request that swaps a part of the page (not a boost or a history restore)."""
    headers = request.headers
    return (
        headers.get("hx-request") == "true"
        and headers.get("hx-boosted") != "true"
        and headers.get("hx-history-restore-request") != "true"
    )


def client_addr(request: Request) -> str | None:
    # Behind a proxy listed in FORWARDED_ALLOW_IPS uvicorn has put X-Forwarded-For here.
    return request.client.host if request.client else None


def bearer_secret(request: Request) -> str | None:
    """The token of an ``Authorization: Bearer`` header on an API request."""
    if not is_api(request):
        return None
    header = request.headers.get("authorization")
    if header is None:
        return None
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        raise NotAuthenticated("Send the API token as 'Authorization: Bearer <token>'.")
    return value.strip()


def _resolve(request: Request) -> Principal | None:
    runtime = runtime_of(request)
    settings = runtime.settings
    secret = bearer_secret(request)
    if secret is not None:
        with runtime.transaction() as session:
            token = tokens.authenticate(session, settings, secret)
            if token is None:
                raise NotAuthenticated(
                    "The API token is not valid: it is unknown, revoked or expired, "
                    "or its user is disabled."
                )
            return Principal(user=token.user, via=Source.API, token_id=token.id)
    cookie = request.cookies.get(cookie_name(request, SESSION_COOKIE))
    if not cookie:
        return None
    with runtime.transaction() as session:
        row = sessions.resolve(session, settings, cookie)
        if row is None:
            return None
        return Principal(
            user=row.user, via=Source.WEB, session_id=row.id, csrf_token=row.csrf_token
        )


def resolve(request: Request) -> Principal | None:
    """The request's principal (None when signed out), resolved once and cached.

    Blocking (it reads the store): call it from a sync dependency or a thread.
    """
    known = getattr(request.state, "principal", _UNSET)
    if known is None or isinstance(known, Principal):
        return known
    principal = _resolve(request)
    request.state.principal = principal
    return principal


def cached(request: Request) -> Principal | None:
    """The principal if it was already resolved for this request, else None (no store access)."""
    value = getattr(request.state, "principal", None)
    return value if isinstance(value, Principal) else None
