"""Lines stored, said at once: a PostgreSQL notification per batch of a job's lines.

The hub of every panel process listens (``Listener``): a job run by the CLI, the entrypoint
or another replica then reaches this panel's viewers as soon as its lines are committed,
instead of at the hub's next poll of the store. The notification only wakes the poller: the
lines themselves are always read from the store. SQLite stores have no notifications (one
process serves them; the poll remains).
"""

from __future__ import annotations

import contextlib
import logging
import select
import threading
from collections.abc import Callable
from typing import Any

from sqlalchemy import Connection, create_engine, text
from sqlalchemy.pool import NullPool

log = logging.getLogger(__name__)

CHANNEL = "schema_admin_job_lines"


def announce(connection: Connection, job_id: int, last_seq: int) -> None:
    """In the transaction that stores the lines: delivered when it commits."""
    if connection.dialect.name == "postgresql":
        connection.execute(
            text("SELECT pg_notify(:channel, :payload)"),
            {"channel": CHANNEL, "payload": f"{job_id}:{last_seq}"},
        )


class Listener:
    """A thread on a connection of its own that LISTENs and calls ``on_lines(job_id,
    last_seq)`` for each notification (reconnecting after a second when the store goes)."""

    def __init__(self, url: str, on_lines: Callable[[int, int], None]) -> None:
        self.engine = create_engine(url, poolclass=NullPool)
        self.on_lines = on_lines
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="lines-listener", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Ask the thread to end (within a second; nothing waits for it)."""
        self._stop.set()

    def _loop(self) -> None:
        try:
            self._listen()
        finally:
            self.engine.dispose()

    def _listen(self) -> None:
        while not self._stop.is_set():
            raw: Any = None
            try:
                raw = self.engine.raw_connection()
                dbapi = raw.driver_connection
                dbapi.autocommit = True
                with dbapi.cursor() as cursor:
                    cursor.execute(f"LISTEN {CHANNEL}")
                while not self._stop.is_set():
                    if select.select([dbapi], [], [], 1.0)[0]:
                        dbapi.poll()
                        while dbapi.notifies:
                            self._deliver(dbapi.notifies.pop(0).payload)
            except Exception as exc:  # the hub's poll still brings the lines
                log.debug("lines listener: %s", exc)
                self._stop.wait(1.0)
            finally:
                if raw is not None:
                    with contextlib.suppress(Exception):
                        raw.invalidate()

    def _deliver(self, payload: str) -> None:
        job, _, seq = payload.partition(":")
        if job.isdigit() and seq.isdigit():
            self.on_lines(int(job), int(seq))
