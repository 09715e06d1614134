"""Reads of the target for the busiest pages run on threads of their own.

A sync route runs on the thread pool every request shares (40 threads). A read of the target
may wait up to TARGET_READ_TIMEOUT (plus a second) for a lock or a free connection
(``admin.migrations.reads``), so fifty status calls against a locked version table would hold
every shared thread, and requests that need only the store (``/api/v1/me``, sign-in, job
pages) would queue behind them. The status API, the dashboard, ``/metrics`` and ``/readyz``
are async instead and hand their read to this limiter: waiting costs them a coroutine, not a
shared thread. Its size only bounds threads; connections are bounded by TARGET_READ_POOL.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import anyio.to_thread
from anyio import CapacityLimiter
from starlette.requests import Request

T = TypeVar("T")
THREADS = 32


def _limiter(request: Request) -> CapacityLimiter:
    state = request.app.state
    limiter: CapacityLimiter | None = getattr(state, "target_reads", None)
    if limiter is None:
        limiter = state.target_reads = CapacityLimiter(THREADS)
    return limiter


async def run(request: Request, read: Callable[..., T], *args: object) -> T:
    """``read(*args)`` on a target-read thread (a blocking call: status, metrics, readiness)."""
    return await anyio.to_thread.run_sync(read, *args, limiter=_limiter(request))
