"""Memory the process has freed, given back to the system.

glibc keeps freed memory for reuse: after a burst (viewers of a long log leaving, a graph of
50,000 revisions replaced by a reloaded one) the process would otherwise stay at its
high-water mark for good. ``release_free_memory`` asks it to return what it can (a no-op
where the C library is not glibc).
"""

from __future__ import annotations

import ctypes
import ctypes.util
from collections.abc import Callable


def _malloc_trim() -> Callable[[int], int] | None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim: Callable[[int], int] = libc.malloc_trim
    except (OSError, AttributeError):  # not glibc
        return None
    return trim


_TRIM = _malloc_trim()


def release_free_memory() -> None:
    """Give the memory freed since the last call back to the system (where glibc can)."""
    if _TRIM is not None:
        _TRIM(0)
