"""Signing in: throttling, constant-cost verification, rehashing, and an audit per attempt.

The caller commits whatever the outcome: a failed attempt's audit event and failure count
must be kept, so failures are returned, not raised.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.orm import Session

from admin import audit
from admin.auth import passwords, throttle, users
from admin.config import Settings
from admin.store.models import Source, User, utcnow

WRONG = "The user name or the password is not correct."


@dataclass(frozen=True)
class Attempt:
    """The outcome of one sign-in: the user, or a message and an HTTP status."""

    user: User | None
    message: str = ""
    status: int = 200
    retry_after: int | None = None  # seconds, for a 429

    @property
    def ok(self) -> bool:
        return self.user is not None


def _actor(
    username: str, user: User | None, client_addr: str | None, source: Source
) -> audit.Actor:
    # A failed attempt is recorded under the name that was typed: who tried matters.
    return audit.Actor(
        name=(user.username if user else username[:255]) or "anonymous",
        role=user.role if user else None,
        source=source,
        client_addr=client_addr,
    )


def _fail(
    session: Session,
    settings: Settings,
    actor: audit.Actor,
    username: str,
    reason: str,
    *,
    message: str = WRONG,
    status: int = 401,
    count: bool = True,
    retry_after: int | None = None,
) -> Attempt:
    if count:
        throttle.record_failure(session, settings, username, actor.client_addr)
    audit.record(session, audit.LoginFailed(username=username[:255], reason=reason), actor)
    return Attempt(None, message, status, retry_after)


def sign_in(
    session: Session,
    settings: Settings,
    username: str,
    password: str,
    *,
    client_addr: str | None,
    source: Source = Source.WEB,
) -> Attempt:
    """Check a user name and password; every attempt is audited, failures are counted."""
    username = username.strip()
    anonymous = _actor(username, None, client_addr, source)
    if len(password.encode("utf-8", "surrogatepass")) > passwords.MAX_PASSWORD_BYTES:
        # Refused before any hashing: a huge password must not buy a huge hash computation.
        return _fail(
            session,
            settings,
            anonymous,
            username,
            "password too long",
            message=f"A password is at most {passwords.MAX_PASSWORD_BYTES} bytes long.",
            status=400,
        )
    limited = throttle.check(session, settings, username, client_addr)
    if limited is not None:
        return _fail(
            session,
            settings,
            anonymous,
            username,
            f"throttled ({limited.scope})",
            message=limited.message,
            status=429,
            count=False,
            retry_after=limited.retry_after,
        )
    user = users.find(session, username) if users.USERNAME.match(username) else None
    # An unknown name is checked against a dummy hash: it costs what a known one costs.
    ok, new_hash = passwords.verify(password, user.password_hash if user else None)
    if user is None:
        return _fail(session, settings, anonymous, username, "unknown user")
    actor = _actor(username, user, client_addr, source)
    if not ok:
        return _fail(session, settings, actor, user.username, "wrong password")
    if user.disabled:
        return _fail(session, settings, actor, user.username, "user disabled")
    if new_hash is not None:
        old_scheme = passwords.scheme_of(user.password_hash) or "unknown"
        user.password_hash = new_hash
        audit.record(
            session,
            audit.PasswordRehashed(username=user.username, old_scheme=old_scheme),
            actor,
        )
    user.last_login_at = utcnow()
    throttle.clear_account(session, user.username, client_addr)
    audit.record(session, audit.LoginSucceeded(username=user.username), actor)
    return Attempt(user)
