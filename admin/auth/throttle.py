"""Failed sign-ins counted per account and per client address within a window."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from admin.config import Settings
from admin.store.models import LoginFailure, utcnow

# login_failures.username is 255 wide; longer names are counted by their first 255.
_NAME_WIDTH = 255


def _key(username: str) -> str:
    return username.strip().lower()[:_NAME_WIDTH]


@dataclass(frozen=True)
class Throttled:
    """Why sign-in is refused for now, and for how long."""

    scope: str  # "account" or "address"
    retry_after: int  # seconds

    @property
    def message(self) -> str:
        minutes = max(1, math.ceil(self.retry_after / 60))
        who = "this account" if self.scope == "account" else "your address"
        return (
            f"Too many failed sign-ins for {who}. Wait {minutes} minute"
            f"{'' if minutes == 1 else 's'} and try again, or ask an admin to reset the password."
        )


def _window(settings: Settings) -> timedelta:
    return timedelta(minutes=settings.login_window_minutes)


def _retry_after(oldest: datetime | None, window: timedelta, now: datetime) -> int:
    if oldest is None:
        return int(window.total_seconds())
    return max(1, int((oldest + window - now).total_seconds()))


def check(
    session: Session,
    settings: Settings,
    username: str,
    client_addr: str | None,
    now: datetime | None = None,
) -> Throttled | None:
    """A Throttled when the account or the address has used up its failures in the window."""
    now = now or utcnow()
    window = _window(settings)
    since = now - window
    count, oldest = session.execute(
        select(func.count(), func.min(LoginFailure.created_at)).where(
            LoginFailure.username == _key(username), LoginFailure.created_at > since
        )
    ).one()
    if count >= settings.login_max_failures:
        return Throttled("account", _retry_after(oldest, window, now))
    if client_addr:
        count, oldest = session.execute(
            select(func.count(), func.min(LoginFailure.created_at)).where(
                LoginFailure.client_addr == client_addr, LoginFailure.created_at > since
            )
        ).one()
        if count >= settings.login_max_failures_per_address:
            return Throttled("address", _retry_after(oldest, window, now))
    return None


def record_failure(
    session: Session,
    settings: Settings,
    username: str,
    client_addr: str | None,
    now: datetime | None = None,
) -> None:
    now = now or utcnow()
    # Rows older than the window count for nothing; drop them as we go.
    session.execute(delete(LoginFailure).where(LoginFailure.created_at <= now - _window(settings)))
    session.add(
        LoginFailure(username=_key(username), client_addr=(client_addr or None), created_at=now)
    )
    session.flush()


def clear_account(session: Session, username: str) -> None:
    """After a successful sign-in the account's count starts again (the address's does not)."""
    session.execute(delete(LoginFailure).where(LoginFailure.username == _key(username)))
