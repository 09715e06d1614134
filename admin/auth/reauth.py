"""Re-entering one's own password before a dangerous action (a production downgrade).

Failures count towards the sign-in throttle: a stolen session must not become a way to
guess its user's password. Like sign-in, failures are returned (so the caller commits the
count), not raised.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.orm import Session

from admin.auth import passwords, throttle
from admin.config import Settings
from admin.store.models import User


@dataclass(frozen=True)
class Refusal:
    """Why the password was not accepted, and the HTTP status that says so."""

    status: int
    message: str
    retry_after: int | None = None  # seconds, for a 429


def reconfirm(
    session: Session,
    settings: Settings,
    user: User,
    password: str,
    *,
    client_addr: str | None,
    purpose: str,
) -> Refusal | None:
    """None when ``password`` is ``user``'s own; otherwise a Refusal (403 or 429)."""
    if not password:
        return Refusal(403, f"{purpose} needs your own password: type it and try again.")
    if len(password.encode("utf-8", "surrogatepass")) > passwords.MAX_PASSWORD_BYTES:
        return Refusal(403, "The password is not correct.")
    limited = throttle.check(session, settings, user.username, client_addr)
    if limited is not None:
        return Refusal(429, limited.message, limited.retry_after)
    ok, _ = passwords.verify(password, user.password_hash)
    if not ok:
        throttle.record_failure(session, settings, user.username, client_addr)
        return Refusal(403, f"The password is not correct: {purpose} needs your own password.")
    return None
