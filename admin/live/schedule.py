"""Lock retries: the schedule of lock_timeouts a revision's transaction is tried with.

A schedule is written ``5x3s`` (five attempts, each with a 3 s lock_timeout), as a list
``1s,3s,10s``, or both (``3x1s,2x5s``); ``off`` (or nothing) is one attempt with
``LOCK_TIMEOUT``. Between two attempts the worker sleeps ``LOCK_RETRY_PAUSE`` seconds; when
the schedule is used up the job fails, or makes a last attempt without a lock_timeout when
``LOCK_RETRY_FINAL_WITHOUT_TIMEOUT`` says so.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_ITEM = re.compile(r"^(?:(\d+)\s*x\s*)?(\d+\s*(?:us|ms|s|min|h)?)$")
MAX_ATTEMPTS = 100
EXAMPLE = "expected e.g. 5x3s, 1s,3s,10s or off"


@dataclass(frozen=True)
class Schedule:
    """The lock_timeouts of successive attempts (PostgreSQL durations; "0" = none)."""

    timeouts: tuple[str, ...]
    pause: float = 3.0

    @property
    def retries(self) -> bool:
        return len(self.timeouts) > 1

    def describe(self) -> str:
        shown = ", ".join(self.timeouts)
        return f"{len(self.timeouts)} attempts (lock_timeout {shown}), {self.pause:g} s apart"


def parse(text: str) -> tuple[str, ...]:
    """The lock_timeouts a schedule names (() for off); ValueError says what is wrong."""
    value = text.strip().lower()
    if value in ("", "off", "none", "0", "no"):
        return ()
    timeouts: list[str] = []
    for raw in value.split(","):
        match = _ITEM.match(raw.strip())
        if match is None:
            raise ValueError(f"{raw.strip()[:20]!r} is not a lock retry step; {EXAMPLE}")
        count = int(match.group(1) or 1)
        duration = match.group(2).replace(" ", "")
        if count < 1 or int(re.sub(r"\D", "", duration)) == 0:
            raise ValueError(f"{raw.strip()[:20]!r}: each attempt needs a lock_timeout above 0")
        timeouts.extend([duration] * count)
        if len(timeouts) > MAX_ATTEMPTS:
            raise ValueError(f"at most {MAX_ATTEMPTS} attempts; {EXAMPLE}")
    return tuple(timeouts)


def schedule_for(
    retries: str, lock_timeout: str, pause: float, final_without_timeout: bool
) -> Schedule:
    """What a run tries: the schedule, or one attempt with ``lock_timeout``."""
    timeouts = parse(retries) or (lock_timeout,)
    if final_without_timeout and parse(retries):
        timeouts = (*timeouts, "0")
    return Schedule(timeouts, pause)
