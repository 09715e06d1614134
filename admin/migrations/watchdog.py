"""A deadline on a database connection's wait: past it, the connection's socket is shut down.

libpq waits for an answer without a limit of its own. A server that stops answering without
closing the connection (a black-holed network, a proxy that stopped forwarding) leaves the
read hanging until TCP gives up. TCP keepalives and ``tcp_user_timeout`` find a dead link on
a plain network, but a middlebox that keeps acknowledging (a proxy, a load balancer) hides
it from them. Shutting the socket down wakes the blocked call at once with a connection
error, and only that connection is lost; the caller knows from ``Guard.fired`` why.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import os
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Guard:
    """One armed deadline; ``fired`` once the watchdog shut its connection down."""

    at: float
    fileno: int
    seconds: float
    fired: bool = False
    done: bool = False
    key: int = field(default=0)


class Watchdog:
    """One thread per process that shuts down connections whose deadline has passed."""

    def __init__(self) -> None:
        self._lock = threading.Condition()
        self._heap: list[tuple[float, int, Guard]] = []
        self._counter = itertools.count()
        self._thread: threading.Thread | None = None
        self._pid = 0

    def arm(self, fileno: int, seconds: float) -> Guard:
        guard = Guard(time.monotonic() + seconds, fileno, seconds, key=next(self._counter))
        with self._lock:
            heapq.heappush(self._heap, (guard.at, guard.key, guard))
            self._ensure_thread()
            self._lock.notify()
        return guard

    def disarm(self, guard: Guard) -> None:
        """After this returns the watchdog never touches the guard's socket again."""
        with self._lock:
            guard.done = True

    def _ensure_thread(self) -> None:
        # A forked child has the parent's object but not its thread.
        if self._thread is not None and self._thread.is_alive() and self._pid == os.getpid():
            return
        self._pid = os.getpid()
        self._thread = threading.Thread(target=self._run, name="target-watchdog", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            with self._lock:
                while self._heap and self._heap[0][2].done:
                    heapq.heappop(self._heap)
                if not self._heap:
                    self._lock.wait()
                    continue
                at, _, guard = self._heap[0]
                wait = at - time.monotonic()
                if wait > 0:
                    self._lock.wait(wait)
                    continue
                heapq.heappop(self._heap)
                # Under the lock: disarm() cannot return while the socket is being shut.
                guard.fired = True
                guard.done = True
                _shut(guard.fileno)


def _shut(fileno: int) -> None:
    with contextlib.suppress(OSError):
        duplicate = socket.socket(fileno=os.dup(fileno))
        try:
            duplicate.shutdown(socket.SHUT_RDWR)
        finally:
            duplicate.close()


_watchdog = Watchdog()


def socket_of(dbapi_connection: Any) -> int | None:
    """The socket of a psycopg2 connection (None for SQLite, which has none)."""
    fileno = getattr(dbapi_connection, "fileno", None)
    if fileno is None:
        return None
    try:
        return int(fileno())
    except Exception:  # noqa: BLE001 - a closed connection has no socket to guard
        return None


@contextlib.contextmanager
def deadline(dbapi_connection: Any, seconds: float) -> Iterator[Guard | None]:
    """Shut ``dbapi_connection``'s socket down if the block is still running after ``seconds``."""
    fileno = socket_of(dbapi_connection)
    if fileno is None:
        yield None
        return
    guard = _watchdog.arm(fileno, seconds)
    try:
        yield guard
    finally:
        _watchdog.disarm(guard)
