"""Event streams and the clients that stop reading them.

A Server-Sent Events response lives as long as its client; a client that stops reading
(a stalled tab, a script that opens streams and never reads) would leave every write
waiting and its data queued in the server for good. ``SlowClientGuard`` sits outside the
whole app: once a write of an event stream has waited ``SSE_SEND_TIMEOUT`` (1 s while the
server shuts down) the client is dropped: its connection is aborted, which frees what was
queued for it, and the response ends as on any disconnect. Nobody sees an error for it: a
client that goes away is normal (one debug line).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import anyio
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger(__name__)

# How long a stream's last write may wait once the server is shutting down.
SHUTDOWN_SEND_TIMEOUT = 1.0
_EVENT_STREAM = "text/event-stream"


class StreamDropped(ConnectionError):
    """A client of an event stream stopped reading and was dropped."""


def _transport(send: Send) -> Any:
    """The transport under ``send``, when the server lets us see it (uvicorn does: its
    ``send`` is a method of the request cycle, which holds the transport)."""
    return getattr(getattr(send, "__self__", None), "transport", None)


def _aborter(transport: Any) -> Callable[[], None] | None:
    """How to abort the connection, when the server lets us."""
    abort = getattr(transport, "abort", None)
    return abort if callable(abort) else None


def _unblocked(transport: Any) -> Callable[[], bool]:
    """Whether a write cannot wait now: nothing of the last ones is still queued in the
    transport (an asyncio transport pauses its writer only above its high-water mark).
    Such a write needs no timer: with 100 viewers of a busy job, setting and cancelling one
    per write was a sixth of the server's work per line."""
    size = getattr(transport, "get_write_buffer_size", None)
    if not callable(size):
        return lambda: False
    return lambda: size() == 0


class SlowClientGuard:
    """Drops the client of an event stream whose write waits longer than the timeout."""

    def __init__(self, app: ASGIApp, timeout: Callable[[], float]) -> None:
        self.app = app
        self.timeout = timeout
        # The writes of event streams waiting right now (``hurry`` shortens them).
        self._waiting: set[anyio.CancelScope] = set()

    def hurry(self, seconds: float = SHUTDOWN_SEND_TIMEOUT) -> None:
        """Give every waiting write at most ``seconds`` more (the server is shutting down)."""
        deadline = anyio.current_time() + seconds
        for waiting in self._waiting:
            waiting.deadline = min(waiting.deadline, deadline)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        transport = _transport(send)
        abort = _aborter(transport)
        unblocked = _unblocked(transport)
        streaming = False
        dropped = False

        async def guarded_send(message: Message) -> None:
            nonlocal streaming, dropped
            if dropped:
                return
            if message["type"] == "http.response.start":
                media = Headers(raw=message.get("headers", [])).get("content-type", "")
                streaming = media.startswith(_EVENT_STREAM)
            if not streaming or unblocked():
                await send(message)
                return
            with anyio.move_on_after(self.timeout()) as waited:
                self._waiting.add(waited)
                try:
                    await send(message)
                finally:
                    self._waiting.discard(waited)
            if not waited.cancelled_caught:
                return
            dropped = True
            log.debug("dropped a client that stopped reading %s", scope.get("path"))
            if abort is None:
                raise StreamDropped("the client stopped reading")
            # The disconnect that follows ends the response like any other.
            abort()

        await self.app(scope, receive, guarded_send)


def hurry(state: Any) -> None:
    """Shorten the writes that wait for clients right now (from the event loop)."""
    guard: SlowClientGuard | None = getattr(state, "slow_client_guard", None)
    if guard is not None:
        guard.hurry()


def send_timeout(state: Any, normal: float) -> float:
    """The timeout now: ``normal``, or a short one while the server shuts down."""
    return SHUTDOWN_SEND_TIMEOUT if getattr(state, "draining", False) else normal
