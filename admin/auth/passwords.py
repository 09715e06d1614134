"""Password hashing with argon2id through passlib (libpass)."""

from __future__ import annotations

import functools
import secrets
from typing import TYPE_CHECKING

from admin.auth import policy
from admin.errors import InvalidInput

if TYPE_CHECKING:
    from passlib.context import CryptContext

MAX_PASSWORD_BYTES = policy.MAX_BYTES
MIN_PASSWORD_LENGTH = policy.MIN_LENGTH

# argon2id's costs (RFC 9106's second recommended option, with 4 lanes) unless the
# settings say otherwise (PASSWORD_HASH_MEMORY_KIB, PASSWORD_HASH_TIME_COST).
DEFAULT_MEMORY_KIB = 65536
DEFAULT_TIME_COST = 3


def _make_context(memory_kib: int, time_cost: int) -> CryptContext:
    from passlib.context import CryptContext

    # Old schemes stay verifiable and are rehashed to argon2id at the next sign-in; so are
    # argon2id hashes made at other costs (passlib compares them with these).
    return CryptContext(
        schemes=["argon2", "pbkdf2_sha256"],
        deprecated="auto",
        argon2__type="ID",
        argon2__memory_cost=memory_kib,
        argon2__rounds=time_cost,
        argon2__parallelism=4,
    )


_costs = (DEFAULT_MEMORY_KIB, DEFAULT_TIME_COST)


def configure(memory_kib: int, time_cost: int) -> None:
    """Hash at these costs from now on in this process (the settings' values)."""
    global _costs
    if (memory_kib, time_cost) != _costs:
        _costs = (memory_kib, time_cost)
        _dummy_hash.cache_clear()


@functools.cache
def _context_for(costs: tuple[int, int]) -> CryptContext:
    # Made on first use, not at import: CLI commands that hash nothing do not load passlib.
    return _make_context(*costs)


def _context() -> CryptContext:
    return _context_for(_costs)


# Verified against when the user does not exist, so unknown names cost the same time.
@functools.cache
def _dummy_hash() -> str:
    return _context().hash(secrets.token_urlsafe(16))


def check_length(password: str) -> None:
    """Refuse an oversized password before any hashing work is done."""
    if len(password.encode("utf-8", "surrogatepass")) > MAX_PASSWORD_BYTES:
        raise InvalidInput(f"a password may be at most {MAX_PASSWORD_BYTES} bytes long")


def validate_new(password: str, username: str = "") -> None:
    """Rules for a password a person chooses (``policy.check``: length, common, context)."""
    policy.check(password, username=username)


def hash_password(password: str) -> str:
    check_length(password)
    return _context().hash(password)


def verify(password: str, stored_hash: str | None) -> tuple[bool, str | None]:
    """Check a password; returns (ok, new hash when the stored one should be replaced)."""
    check_length(password)
    if stored_hash is None:
        _context().verify(password, _dummy_hash())
        return False, None
    try:
        return _context().verify_and_update(password, stored_hash)
    except (ValueError, TypeError):
        return False, None


def scheme_of(stored_hash: str) -> str | None:
    """The passlib scheme name of a stored hash (``argon2``, ``pbkdf2_sha256``), or None."""
    try:
        return _context().identify(stored_hash)
    except (ValueError, TypeError):
        return None


def random_password() -> str:
    return secrets.token_urlsafe(18)
