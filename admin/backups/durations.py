"""PostgreSQL-style durations ('30s', '500ms', '2min'; a bare number is milliseconds)."""

from __future__ import annotations

import re

from admin.errors import InvalidInput

_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*(us|ms|s|min|h|d)?")
_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "min": 60.0, "h": 3600.0, "d": 86400.0}


def seconds(duration: str) -> float:
    """The duration in seconds (0 = no limit); InvalidInput when it is not one."""
    match = _DURATION.fullmatch(duration.strip())
    if match is None:
        raise InvalidInput(f"{duration!r} is not a duration such as 0, 500ms, 10s or 2min")
    return float(match.group(1)) * _UNITS[match.group(2) or "ms"]


def checked(duration: str) -> str:
    """The duration without spaces, once checked: it ends up in a program's arguments."""
    seconds(duration)
    return duration.replace(" ", "")
