"""Keyed hashes of bearer secrets (session cookies, API tokens).

Only ``HMAC-SHA256(SECRET_KEY, token)`` is stored: a copy of the store alone lets nobody
in, and a lookup by hash needs no comparison loop.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets


def keyed_hash(key: bytes, token: str) -> str:
    return hmac.new(key, token.encode("utf-8", "surrogatepass"), hashlib.sha256).hexdigest()


def new_token(nbytes: int = 32) -> str:
    """A random URL-safe token (``nbytes`` of entropy)."""
    return secrets.token_urlsafe(nbytes)
