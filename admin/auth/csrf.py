"""CSRF: a per-session token compared in constant time, and the same-origin rule."""

from __future__ import annotations

import hmac
from urllib.parse import urlsplit

from admin.auth.keyed import new_token

FORM_FIELD = "csrf_token"
HEADER = "X-CSRF-Token"
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_DEFAULT_PORTS = {"http": 80, "https": 443}


def new_csrf_token() -> str:
    return new_token(32)


def token_matches(expected: str | None, given: str | None) -> bool:
    if not expected or not given:
        return False
    return hmac.compare_digest(expected.encode(), given.encode())


def origin_of(url: str) -> tuple[str, str, int] | None:
    """(scheme, host, port) of an absolute http(s) URL, or None when it has none."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS or not parts.hostname:
        return None
    return scheme, parts.hostname.lower(), port or _DEFAULT_PORTS[scheme]


def same_origin(own: str, origin: str | None, referer: str | None) -> tuple[bool, str]:
    """Whether an unsafe request comes from ``own`` origin, judged by Origin, then Referer.

    A request with neither header (a script, curl) passes this check; what protects a
    signed-in browser then is the CSRF token, which such a request must still carry.
    """
    mine = origin_of(own)
    if origin is not None:
        if origin_of(origin) != mine:
            return False, f"the request came from another origin ({origin[:100]})"
        return True, ""
    if referer:
        if origin_of(referer) != mine:
            return False, "the request was sent from a page of another site"
        return True, ""
    return True, ""
