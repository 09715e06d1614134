"""Refused requests in the audit trail, without letting an anonymous flood grow it unbounded.

A refusal by a signed-in caller (a 403 for the role, a 409) is recorded every time: the
caller is known and answers for it. A refusal of an anonymous caller (no or a bad token or
session on a route that changes something, a cross-site form, a control character) is
recorded the first time, then held back for ``window`` seconds per client address, route
and status: the next one recorded after that says how many were held back (``repeated``),
and what is still held back is recorded at shutdown. Addresses beyond ``max_keys`` share
one bucket, so memory and the trail's growth stay bounded whatever the number of sources.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

from starlette.requests import Request

from admin import audit
from admin.runtime import Runtime
from admin.store.models import Source
from admin.web import principal as principals

log = logging.getLogger(__name__)

WINDOW = 60.0
MAX_KEYS = 1000
_OVERFLOW = "*"

Key = tuple[str, str, str, int]  # (address, method, route, status)


@dataclass
class _Held:
    since: float
    count: int = 0
    last: tuple[audit.Actor, audit.AccessDenied] | None = None


class RefusalLog:
    """Which anonymous refusals to record now, and how many were held back before them."""

    def __init__(self, window: float = WINDOW, max_keys: int = MAX_KEYS) -> None:
        self.window = window
        self.max_keys = max_keys
        self._held: dict[Key, _Held] = {}
        self._lock = threading.Lock()

    def admit(
        self, key: Key, actor: audit.Actor, event: audit.AccessDenied, now: float | None = None
    ) -> int | None:
        """None to hold this refusal back; else record it now with this many held back."""
        now = time.monotonic() if now is None else now
        with self._lock:
            if key not in self._held and len(self._held) >= self.max_keys:
                key = (_OVERFLOW, *key[1:])
            held = self._held.get(key)
            if held is None or now - held.since >= self.window:
                self._held[key] = _Held(since=now)
                return held.count if held is not None else 0
            held.count += 1
            held.last = (actor, event)
            return None

    def drain(self) -> list[tuple[audit.Actor, audit.AccessDenied]]:
        """The refusals still held back, as one event per key (at shutdown)."""
        with self._lock:
            held, self._held = self._held, {}
        drained = []
        for entry in held.values():
            if entry.count and entry.last is not None:
                actor, event = entry.last
                drained.append((actor, _with_repeats(event, entry.count - 1)))
        return drained


def _with_repeats(event: audit.AccessDenied, repeated: int) -> audit.AccessDenied:
    return audit.AccessDenied(
        method=event.method,
        path=event.path,
        status=event.status,
        reason=event.reason,
        repeated=repeated,
    )


def log_of(request: Request) -> RefusalLog:
    state = request.app.state
    found: RefusalLog | None = getattr(state, "refusals", None)
    if found is None:
        found = RefusalLog()
        state.refusals = found
    return found


def _route(request: Request) -> str:
    route = request.scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else request.url.path[:400]


def _write(runtime: Runtime, actor: audit.Actor, event: audit.AccessDenied) -> None:
    try:
        with runtime.transaction() as session:
            audit.record(session, event, actor)
    except Exception:
        log.exception("could not audit a refused request to %s", event.path)


def record(request: Request, status: int, reason: str) -> None:
    """Audit a refused request (called by the error handler, in a worker thread)."""
    principal = principals.cached(request)
    addr = principals.client_addr(request)
    event = audit.AccessDenied(
        method=request.method, path=request.url.path[:400], status=status, reason=reason[:500]
    )
    runtime = principals.runtime_of(request)
    if principal is not None:
        actor = audit.Actor(principal.user.username, principal.user.role, principal.via, addr)
        _write(runtime, actor, event)
        return
    source = Source.API if principals.is_api(request) else Source.WEB
    actor = audit.Actor("anonymous", None, source, addr)
    held_back = log_of(request).admit(
        (addr or "-", request.method, _route(request), status), actor, event
    )
    if held_back is not None:
        _write(runtime, actor, _with_repeats(event, held_back))


def flush(refusals: RefusalLog | None, runtime: Runtime) -> None:
    """Record what is still held back (the app's shutdown)."""
    if refusals is None:
        return
    for actor, event in refusals.drain():
        _write(runtime, actor, event)
