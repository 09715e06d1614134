"""The worker's output: one JSON object per line on stdout, read by the supervisor.

Kinds: ``log`` (a message with a level), ``step`` (a revision started or finished),
``sql`` (a statement executed), ``progress`` (bytes written, steps done), ``backend``
(the target connection's PostgreSQL backend pid, so a cancel can reach the query),
``backup`` (the backup that protects the job), and one final ``result``.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from typing import Any, TextIO

LEVELS = ("debug", "info", "step", "sql", "warning", "error")


@dataclass(frozen=True)
class Message:
    kind: str
    text: str = ""
    level: str = "info"
    data: dict[str, Any] = field(default_factory=dict)

    def encode(self) -> str:
        payload = {"kind": self.kind, "text": self.text, "level": self.level, **self.data}
        return json.dumps(payload, ensure_ascii=False, default=str)


def decode(line: str) -> Message:
    """A line from the worker; anything that is not our JSON is kept as plain text."""
    stripped = line.rstrip("\r\n")
    try:
        payload = json.loads(stripped)
    except ValueError:
        return Message("log", stripped, "info")
    if not isinstance(payload, dict) or "kind" not in payload:
        return Message("log", stripped, "info")
    kind = str(payload.pop("kind"))
    text = str(payload.pop("text", ""))
    level = str(payload.pop("level", "info"))
    if level not in LEVELS:
        level = "info"
    return Message(kind, text, level, payload)


class Emitter:
    """Writes messages to the supervisor, one flushed line each."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stdout

    def send(self, message: Message) -> None:
        self.stream.write(message.encode() + "\n")
        self.stream.flush()

    def log(self, text: str, level: str = "info") -> None:
        self.send(Message("log", text, level))

    def result(self, status: str, **data: Any) -> None:
        self.send(Message("result", status, "info", {"status": status, **data}))
