"""What the owner of a running job writes to its record: lines, progress, heartbeat.

Lines are numbered here, stored in batches (``queue.LineWriter``, which checks ownership
in the same transaction) and published to live viewers once stored. When the store does
not answer (restarting, a network partition), lines are kept in memory and stored, in
order, when it answers again: the worker is never blocked by the store, and nothing is
numbered twice. When another process owns the job now, nothing more is written
(``lost`` says why) and the supervisor stops its worker.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy.exc import DBAPIError

from admin.jobs import queue
from admin.jobs.ownership import NotOwner, Owner
from admin.runtime import Runtime

log = logging.getLogger(__name__)

# Lines kept while the store does not answer; beyond this, they are counted, not kept.
MAX_PENDING = 100_000


@dataclass(frozen=True)
class Published:
    """A stored line as subscribers see it."""

    seq: int
    level: str
    stream: str
    text: str
    # When it was stored (seconds since the epoch; None where not known).
    at: float | None = None


Publisher = Callable[[int, Sequence[Published], str | None], None]


class JobRecord:
    """One job's record, written by its owner."""

    def __init__(
        self,
        rt: Runtime,
        job_id: int,
        owner: Owner,
        *,
        publish: Publisher | None = None,
        echo: Callable[[str], None] | None = None,
        echo_levels: Collection[str] | None = None,
    ) -> None:
        self.rt = rt
        self.job_id = job_id
        self.owner = owner
        self.publish = publish
        self.echo = echo
        self.echo_levels = echo_levels
        self.seq = 0
        self.lost: str | None = None
        self.unreachable: str | None = None
        self._writer = queue.LineWriter(rt, job_id, owner)
        self._pending: list[queue.NewLine] = []
        self._changes: dict[str, Any] = {}
        self._dropped = 0

    def add(self, lines: Sequence[queue.NewLine], **changes: Any) -> None:
        """Store ``lines`` (after any kept ones) and ``changes`` to the job's row."""
        if self.echo is not None:
            for line in lines:
                if self.echo_levels is None or line.level in self.echo_levels:
                    self.echo(line.text)
        if self.lost is not None:
            return
        room = MAX_PENDING - len(self._pending)
        self._pending.extend(lines[:room])
        self._dropped += max(0, len(lines) - room)
        self._changes.update(changes)
        self.flush()

    def flush(self) -> bool:
        """Try to store what is kept; True when nothing is left."""
        if self.lost is not None or not (self._pending or self._changes):
            return self.lost is None
        batch = list(self._pending)
        if self._dropped:
            batch.append(
                queue.NewLine(
                    f"{self._dropped} lines were not kept while the store did not answer",
                    "warning",
                    "runner",
                )
            )
        first = self.seq + 1
        try:
            self._writer.append(first, batch, **self._changes)
        except NotOwner as exc:
            self.lost = str(exc)
            log.error("job %s: %s", self.job_id, exc, extra={"job_id": self.job_id})
            return False
        except DBAPIError as exc:
            if self.unreachable is None:
                log.warning(
                    "job %s: the store does not answer; its lines are kept until it does: %s",
                    self.job_id,
                    exc.orig or exc,
                    extra={"job_id": self.job_id},
                )
            self.unreachable = str(exc.orig or exc)
            return False
        if self.unreachable is not None:
            log.warning(
                "job %s: the store answers again", self.job_id, extra={"job_id": self.job_id}
            )
        self.unreachable = None
        self.seq += len(batch)
        self._pending.clear()
        self._changes.clear()
        self._dropped = 0
        if self.publish is not None and batch:
            at = time.time()
            self.publish(
                self.job_id,
                [
                    Published(first + i, line.level, line.stream, line.text, at)
                    for i, line in enumerate(batch)
                ],
                None,
            )
        return True

    def heartbeat(self) -> bool:
        """Renew the lease; True when someone asked to cancel the job."""
        if self.lost is not None:
            return False
        try:
            return queue.heartbeat(self.rt, self.job_id, self.owner)
        except NotOwner as exc:
            self.lost = str(exc)
            return False
        except DBAPIError:
            return False

    def close(self) -> None:
        self._writer.close()
