"""Server-side sign-in sessions: a random cookie token, only its keyed hash in the store.

A session ends when it is signed out, when its user is disabled (``users.end_sessions``),
after ``SESSION_IDLE_MINUTES`` without a request, or ``SESSION_MAX_HOURS`` after sign-in.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, or_, select
from sqlalchemy.orm import Session

from admin.auth.csrf import new_csrf_token
from admin.auth.keyed import keyed_hash, new_token
from admin.config import Settings
from admin.store.models import User, UserSession, utcnow

# last_seen_at is written at most this often: a page with many fragments costs one write.
TOUCH_EVERY = timedelta(seconds=30)
_UA_WIDTH = 255
_ADDR_WIDTH = 64


@dataclass(frozen=True)
class Started:
    """A new session and the cookie token for it (the only time the token exists)."""

    row: UserSession
    token: str


def _idle(settings: Settings) -> timedelta:
    return timedelta(minutes=settings.session_idle_minutes)


def prune_expired(session: Session, settings: Settings, now: datetime | None = None) -> int:
    """Delete sessions past their absolute or idle lifetime."""
    now = now or utcnow()
    result = session.execute(
        delete(UserSession).where(
            or_(UserSession.expires_at <= now, UserSession.last_seen_at <= now - _idle(settings))
        )
    )
    return int(getattr(result, "rowcount", 0) or 0)


def start(
    session: Session,
    settings: Settings,
    user: User,
    *,
    client_addr: str | None = None,
    user_agent: str | None = None,
    now: datetime | None = None,
) -> Started:
    """A fresh session for ``user`` with a new token and a new CSRF token."""
    now = now or utcnow()
    prune_expired(session, settings, now)
    token = new_token(32)
    row = UserSession(
        token_hash=keyed_hash(settings.secret, token),
        user_id=user.id,
        csrf_token=new_csrf_token(),
        created_at=now,
        last_seen_at=now,
        expires_at=now + timedelta(hours=settings.session_max_hours),
        client_addr=(client_addr or None) and client_addr[:_ADDR_WIDTH],
        user_agent=(user_agent or None) and user_agent[:_UA_WIDTH],
    )
    session.add(row)
    session.flush()
    return Started(row=row, token=token)


def resolve(
    session: Session, settings: Settings, token: str | None, now: datetime | None = None
) -> UserSession | None:
    """The live session a cookie token belongs to, or None (unknown, expired, disabled user).

    A session found expired is deleted; a live one has its last-seen time moved on.
    """
    if not token or len(token) > 200:
        return None
    now = now or utcnow()
    row = session.scalar(
        select(UserSession).where(UserSession.token_hash == keyed_hash(settings.secret, token))
    )
    if row is None:
        return None
    if row.expires_at <= now or row.last_seen_at <= now - _idle(settings) or row.user.disabled:
        session.delete(row)
        session.flush()
        return None
    if now - row.last_seen_at >= TOUCH_EVERY:
        row.last_seen_at = now
    return row


def end(session: Session, settings: Settings, token: str | None) -> UserSession | None:
    """End the session of a cookie token (sign-out); returns the ended row, if any."""
    if not token or len(token) > 200:
        return None
    row = session.scalar(
        select(UserSession).where(UserSession.token_hash == keyed_hash(settings.secret, token))
    )
    if row is not None:
        session.delete(row)
        session.flush()
    return row
