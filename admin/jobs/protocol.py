"""The worker's messages: one JSON object per line on a pipe of its own, read by the
supervisor.

Control is not text: the messages travel on a dedicated pipe (the worker's ``CONTROL_FD``
argument), never on stdout or stderr, which migration code writes to. What Python code in
the worker prints (``sys.stdout`` / ``sys.stderr``) is wrapped by the worker itself as
``output`` messages, so it keeps its place among the other lines; bytes written to the
file descriptors directly (a C extension, a child process) arrive on stdout / stderr, and
the supervisor stores them as text. A migration that prints something looking like a
message only ever produces a log line.

Kinds: ``log`` (a message with a level), ``output`` (text the job's code printed),
``step`` (a revision started or finished), ``sql`` (a statement executed), ``progress``
(bytes written, steps done), ``retry`` (a lock retry: the attempt that timed out and
the pause before the next), ``backend`` (the target connection's PostgreSQL backend pid,
so a cancel can reach the query), ``backup`` (the backup that protects the job), and one
final ``result``.

The other way, the supervisor writes one ``Order`` on the worker's stdin: the job and the
settings it runs with.
"""

from __future__ import annotations

import dataclasses
import io
import json
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TextIO, cast

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


def heads_text(heads: Sequence[str]) -> str:
    """The heads a database is at, as jobs record them ("base" for none)."""
    return ",".join(heads) if heads else "base"


def log_line(message: Message) -> tuple[str, str, str] | None:
    """(text, level, stream) a message is stored as in the job's log (None: a result, a
    beat: not log lines)."""
    if message.kind in ("result", "beat"):
        return None
    if message.kind == "output":
        stream = "stderr" if message.data.get("stream") == "stderr" else "stdout"
        return message.text, message.level, stream
    return message.text, message.level, "worker"


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
    """Writes messages to the supervisor, one line each, none held longer than ``linger``.

    A line is held, and a background thread writes it ``linger`` later together with the
    lines that followed it: a revision's five lines (started, its SQL, the version update,
    finished) usually reach the supervisor as one write, which it stores as one batch. A
    1,000-revision upgrade then costs a few hundred writes instead of 5,000, for the worker
    and for the supervisor reading them, while a viewer waits ``linger`` more at worst (and
    not the supervisor's COALESCE for the second half of a revision's lines). ``result`` is
    written at once, with everything held before it. ``text_stream()`` gives a stream for
    ``sys.stdout`` that keeps a migration's own prints in order with the lines.

    When the pipe breaks (the supervisor is gone), ``broken`` is set and what could not be
    written is kept; ``redirect(sink)`` then hands it, and every later line, to ``sink``
    (an orphaned worker's own record).
    """

    def __init__(self, stream: TextIO | None = None, *, linger: float = 0.0) -> None:
        self.stream = stream or sys.stdout
        self.linger = linger
        self.broken = threading.Event()
        self._lock = threading.Lock()
        self._held: list[str] = []
        self._unsent: list[str] = []
        self._sink: Callable[[str], None] | None = None
        self._due = threading.Event()
        if linger > 0:
            threading.Thread(target=self._write_later, name="emitter", daemon=True).start()

    def send(self, message: Message, *, now: bool = False) -> None:
        self.write(message.encode() + "\n", now=now)

    def write(self, text: str, *, now: bool = False) -> None:
        with self._lock:
            self._held.append(text)
            if now or self.linger <= 0:
                self._write()
                return
        self._due.set()

    def flush(self) -> None:
        with self._lock:
            self._write()

    def log(self, text: str, level: str = "info") -> None:
        self.send(Message("log", text, level))

    def result(self, status: str, **data: Any) -> None:
        self.send(Message("result", status, "info", {"status": status, **data}), now=True)

    def text_stream(self, stream: str = "stdout", level: str = "info") -> TextIO:
        """A stream whose lines go out as ``output`` messages (for ``sys.stdout``)."""
        return cast(TextIO, _Through(self, stream, level))

    def redirect(self, sink: Callable[[str], None]) -> None:
        """From now on, lines go to ``sink`` (what the broken pipe did not take first)."""
        with self._lock:
            self._sink = sink
            self._unsent.extend(self._held)
            self._held.clear()
            unsent, self._unsent = "".join(self._unsent), []
            if unsent:
                sink(unsent)

    def _write(self) -> None:  # with the lock held
        if not self._held:
            return
        text = "".join(self._held)
        self._held.clear()
        if self._sink is not None:
            self._sink(text)
            return
        if self.broken.is_set():
            self._unsent.append(text)
            return
        try:
            self.stream.write(text)
            self.stream.flush()
        except (OSError, ValueError):  # BrokenPipeError: the reader is gone
            self._unsent.append(text)
            self.broken.set()

    def _write_later(self) -> None:
        while True:
            self._due.wait()
            time.sleep(self.linger)
            self._due.clear()
            self.flush()


class _Through(io.TextIOBase):
    """``sys.stdout`` / ``sys.stderr`` in a worker: each printed line goes out as an
    ``output`` message with the emitter's lines, in order."""

    def __init__(self, emitter: Emitter, stream: str, level: str) -> None:
        self.emitter = emitter
        self.stream = stream
        self.level = level
        self._partial = ""

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        lines = (self._partial + text).split("\n")
        self._partial = lines.pop()
        for line in lines:
            self.emitter.send(Message("output", line, self.level, {"stream": self.stream}))
        return len(text)

    def flush(self) -> None:
        if self._partial:
            partial, self._partial = self._partial, ""
            self.emitter.send(Message("output", partial, self.level, {"stream": self.stream}))
        self.emitter.flush()


@dataclass(frozen=True)
class Order:
    """A job as its worker receives it: one JSON document on stdin, from the supervisor.

    It holds everything a migration needs, so a worker runs one without the panel's
    settings model, ORM or store connection (importing and opening those would cost the
    job more than half a second before its first step). Handlers that need more (backups)
    read the settings from the environment, which carries the same values, and the job's
    row from the store.
    """

    job_id: int
    kind: str
    target_revision: str | None
    plan_fingerprint: str | None
    source: str
    requested_by: str
    database_url: str
    alembic_config: str
    lock_timeout: str
    statement_timeout: str
    migration_lock_wait: float
    backup_gate: bool
    cache_dir: str | None = None
    # The supervisor that owns the job: the worker takes over from it if it dies.
    owner: str | None = None
    # How to connect to the target (TARGET_* settings: timeouts, keepalives).
    target_connection: dict[str, Any] | None = None
    # Lock retries (admin.live.schedule): the schedule, the pause between attempts, and a
    # last attempt without a lock_timeout.
    lock_retries: str = ""
    lock_retry_pause: float = 3.0
    lock_retry_final_without_timeout: bool = False

    def encode(self) -> str:
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def decode(cls, document: str) -> Order:
        """Raises ValueError naming what is wrong with ``document``."""
        try:
            payload = json.loads(document)
        except ValueError:
            raise ValueError("the work order on stdin is not JSON") from None
        if not isinstance(payload, dict):
            raise ValueError("the work order on stdin is not a JSON object")
        fields = dataclasses.fields(cls)
        required = {f.name for f in fields if f.default is dataclasses.MISSING}
        missing = sorted(required - payload.keys())
        if missing:
            raise ValueError(f"the work order on stdin lacks {', '.join(missing)}")
        return cls(**{f.name: payload[f.name] for f in fields if f.name in payload})
