"""API tokens: bearer secrets for /api/v1, created and revoked by admins, stored hashed."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from admin import audit
from admin.auth import users
from admin.auth.keyed import keyed_hash, new_token
from admin.config import Settings
from admin.errors import Conflict, InvalidInput, NotFound
from admin.store.models import ApiToken, utcnow

PREFIX = "sat_"
# The shown prefix lets a person tell tokens apart; it is not enough to guess one.
_SHOWN = len(PREFIX) + 8
_NAME = re.compile(r"^[\w .:@/()-]{1,100}$")
MAX_DAYS = 3650
# last_used_at is written at most this often.
_TOUCH_EVERY = timedelta(seconds=60)


@dataclass(frozen=True)
class Created:
    """A new token and its secret (the only time the secret exists)."""

    row: ApiToken
    secret: str


def _check_name(name: str) -> str:
    name = name.strip()
    if not _NAME.match(name):
        raise InvalidInput(
            "a token name is 1 to 100 letters, digits, spaces or . : @ / ( ) - _ "
            "(say what will use it, e.g. 'deploy pipeline')"
        )
    return name


def create(
    session: Session,
    settings: Settings,
    actor: audit.Actor,
    *,
    name: str,
    username: str,
    expires_in_days: int | None = None,
) -> Created:
    """A token that acts as ``username`` (with that user's role) until revoked or expired."""
    name = _check_name(name)
    user = users.get(session, username)
    if user.disabled:
        raise Conflict(f"{user.username!r} is disabled; enable the user first")
    if expires_in_days is not None and not 1 <= expires_in_days <= MAX_DAYS:
        raise InvalidInput(f"a token expires after 1 to {MAX_DAYS} days, or never")
    now = utcnow()
    secret = PREFIX + new_token(32)
    row = ApiToken(
        name=name,
        prefix=secret[:_SHOWN],
        token_hash=keyed_hash(settings.secret, secret),
        user_id=user.id,
        created_by=actor.name,
        created_at=now,
        expires_at=now + timedelta(days=expires_in_days) if expires_in_days else None,
    )
    session.add(row)
    session.flush()
    audit.record(
        session, audit.ApiTokenCreated(username=user.username, token_id=row.id, name=name), actor
    )
    return Created(row=row, secret=secret)


def revoke(session: Session, actor: audit.Actor, token_id: int) -> ApiToken:
    row = session.get(ApiToken, token_id)
    if row is None:
        raise NotFound(f"there is no API token {token_id}")
    if row.revoked_at is not None:
        return row
    row.revoked_at = utcnow()
    audit.record(
        session,
        audit.ApiTokenRevoked(username=row.user.username, token_id=row.id, name=row.name),
        actor,
    )
    return row


def list_tokens(session: Session) -> list[ApiToken]:
    return list(session.scalars(select(ApiToken).order_by(ApiToken.id.desc())))


def authenticate(
    session: Session, settings: Settings, secret: str, now: datetime | None = None
) -> ApiToken | None:
    """The live token for a bearer secret, or None (unknown, revoked, expired, disabled user)."""
    if not secret.startswith(PREFIX) or len(secret) > 200:
        return None
    now = now or utcnow()
    row = session.scalar(
        select(ApiToken).where(ApiToken.token_hash == keyed_hash(settings.secret, secret))
    )
    if row is None or row.revoked_at is not None or row.user.disabled:
        return None
    if row.expires_at is not None and row.expires_at <= now:
        return None
    if row.last_used_at is None or now - row.last_used_at >= _TOUCH_EVERY:
        row.last_used_at = now
    return row
