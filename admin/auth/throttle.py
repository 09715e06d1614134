"""Failed sign-ins slow down who fails, never lock out everyone else.

Failures are counted within ``LOGIN_WINDOW_MINUTES`` for an account *from one address*,
and for an address over all accounts. Past ``LOGIN_MAX_FAILURES`` (account and address) or
``LOGIN_MAX_FAILURES_PER_ADDRESS`` (address), each further attempt must wait after the last
failure: 1 s, then 2, 4, 8... up to the window. An attacker elsewhere who knows a user name
only slows themself down: the user, signing in from their own address, is not delayed by
failures that came from another one. 429 answers say how long to wait (Retry-After).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, delete, func, select
from sqlalchemy.orm import Session

from admin.config import Settings
from admin.store.models import LoginFailure, utcnow

# login_failures.username is 255 wide; longer names are counted by their first 255.
_NAME_WIDTH = 255
_ADDR_WIDTH = 64


def _key(username: str) -> str:
    return username.strip().lower()[:_NAME_WIDTH]


def _addr(client_addr: str | None) -> str | None:
    return client_addr[:_ADDR_WIDTH] if client_addr else None


@dataclass(frozen=True)
class Throttled:
    """Why sign-in is refused for now, and for how long."""

    scope: str  # "account" (this account from this address) or "address"
    retry_after: int  # seconds

    @property
    def message(self) -> str:
        wait = self.retry_after
        shown = f"{wait} second{'' if wait == 1 else 's'}"
        if wait >= 120:
            minutes = math.ceil(wait / 60)
            shown = f"{minutes} minutes"
        who = "this account from your address" if self.scope == "account" else "your address"
        return (
            f"Too many failed sign-ins for {who}. Wait {shown} and try again "
            "(each further failure doubles the wait), or ask an admin to reset the password."
        )


def _window(settings: Settings) -> timedelta:
    return timedelta(minutes=settings.login_window_minutes)


def delay(over: int, cap: float) -> float:
    """Seconds to wait after the last failure once ``over`` failures are past the limit."""
    if over <= 0:
        return 0.0
    return min(2.0 ** min(over - 1, 30), cap)


def _counted(
    session: Session, since: datetime, *where: ColumnElement[bool]
) -> tuple[int, datetime | None]:
    count, last = session.execute(
        select(func.count(), func.max(LoginFailure.created_at)).where(
            LoginFailure.created_at > since, *where
        )
    ).one()
    return int(count), last


def _wait(count: int, limit: int, last: datetime | None, cap: float, now: datetime) -> int:
    if last is None or count < limit:
        return 0
    until = last + timedelta(seconds=delay(count - limit + 1, cap))
    return max(0, math.ceil((until - now).total_seconds()))


def check(
    session: Session,
    settings: Settings,
    username: str,
    client_addr: str | None,
    now: datetime | None = None,
) -> Throttled | None:
    """A Throttled while this account from this address, or this address, has to wait."""
    now = now or utcnow()
    window = _window(settings)
    since = now - window
    cap = window.total_seconds()
    addr = _addr(client_addr)
    same_addr = (
        LoginFailure.client_addr == addr if addr is not None else LoginFailure.client_addr.is_(None)
    )
    count, last = _counted(session, since, LoginFailure.username == _key(username), same_addr)
    wait = _wait(count, settings.login_max_failures, last, cap, now)
    if wait:
        return Throttled("account", wait)
    if addr is not None:
        count, last = _counted(session, since, LoginFailure.client_addr == addr)
        wait = _wait(count, settings.login_max_failures_per_address, last, cap, now)
        if wait:
            return Throttled("address", wait)
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
        LoginFailure(username=_key(username), client_addr=_addr(client_addr), created_at=now)
    )
    session.flush()


def clear_account(session: Session, username: str, client_addr: str | None = None) -> None:
    """After a successful sign-in this account's failures from this address are forgotten
    (the address's failures for other accounts are not)."""
    addr = _addr(client_addr)
    same_addr = (
        LoginFailure.client_addr == addr if addr is not None else LoginFailure.client_addr.is_(None)
    )
    session.execute(delete(LoginFailure).where(LoginFailure.username == _key(username), same_addr))
