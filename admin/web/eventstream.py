"""Server-Sent Events written as bytes, each event encoded once for all its viewers.

FastAPI's own event-stream responses (``response_class=EventSourceResponse`` on a
generator) validate and encode every event for every viewer and pass it through two memory
streams and a keep-alive task: three tasks woken per event and viewer. With 100 viewers of
a busy job that was most of the panel's work per line. Here a stream is one async iterator
of ``bytes`` that the response's own task drives (Starlette's ``StreamingResponse``): per
event and viewer one wake and one write. What many viewers are sent alike (a batch of log
lines) is encoded once (``SharedEvents``); keep-alive comments come from the hub
(``SSE_KEEPALIVE``), not from a timer per stream.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import AsyncIterable, Callable, Hashable, Mapping
from typing import Any, TypeVar

from fastapi.sse import format_sse_event
from starlette.background import BackgroundTask
from starlette.responses import StreamingResponse

MEDIA_TYPE = "text/event-stream"
KEEPALIVE = b": keep-alive\n\n"
# The OpenAPI answer of a route that streams events (what FastAPI documents for its own).
OPENAPI_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "Successful Response",
        "content": {
            MEDIA_TYPE: {
                "itemSchema": {
                    "type": "object",
                    "properties": {
                        "data": {"type": "string"},
                        "event": {"type": "string"},
                        "id": {"type": "string"},
                        "retry": {"type": "integer", "minimum": 0},
                    },
                }
            }
        },
    }
}

T = TypeVar("T")


def event(
    *,
    data: str | None = None,
    name: str | None = None,
    id: str | None = None,
    retry: int | None = None,
    comment: str | None = None,
) -> bytes:
    """One event in the wire format (``data`` as it is: callers encode JSON themselves)."""
    return format_sse_event(data_str=data, event=name, id=id, retry=retry, comment=comment)


class EventStreamResponse(StreamingResponse):
    """A ``text/event-stream`` response of pre-encoded events (one write per chunk)."""

    media_type = MEDIA_TYPE

    def __init__(
        self,
        content: AsyncIterable[bytes],
        status_code: int = 200,
        headers: Mapping[str, str] | None = None,
        media_type: str | None = None,
        background: BackgroundTask | None = None,
    ) -> None:
        super().__init__(content, status_code, headers, media_type, background)
        # Not cached, and not buffered by a proxy (nginx) in front of the panel.
        self.headers.setdefault("Cache-Control", "no-cache")
        self.headers.setdefault("X-Accel-Buffering", "no")


class SharedEvents:
    """The last ``size`` values made by key: what the viewers of one job are all sent alike
    is made once (used from the event loop only: no lock)."""

    def __init__(self, size: int = 32) -> None:
        self.size = size
        self._made: OrderedDict[Hashable, Any] = OrderedDict()

    def get(self, key: Hashable, make: Callable[[], T]) -> T:
        made: T | None = self._made.get(key)
        if made is None:
            made = make()
            self._made[key] = made
            if len(self._made) > self.size:
                self._made.popitem(last=False)
        return made
