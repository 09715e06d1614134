"""Who runs a job: one owner at a time, named in the job's row, checked on every write.

A running job is owned by the supervisor that started its worker (``supervisor HOST PID
TOKEN``). When that supervisor dies (the panel was killed), the worker notices and takes
the job over (``worker HOST PID TOKEN``): it stops at the next revision boundary and
records its own end. Recovery takes a job over (``recovery HOST PID TOKEN``) only to
declare it ended, once nothing alive runs it. A takeover is a compare-and-set on the
owner; every later write by the former owner (a log line, a heartbeat, the end) finds
another name there and is refused (``NotOwner``): a process that no longer owns a job
cannot write to it.
"""

from __future__ import annotations

import os
import secrets
import socket
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Connection, select, update

from admin.errors import Conflict
from admin.store.models import Job, JobStatus


class NotOwner(Conflict):
    """Another process owns the job now."""

    title = "Not the job's owner"


@dataclass(frozen=True)
class Owner:
    """A process that may own a job, as written in ``jobs.owner``."""

    role: str
    host: str
    pid: int
    token: str

    def __str__(self) -> str:
        return f"{self.role} {self.host} {self.pid} {self.token}"[:128]

    @classmethod
    def new(cls, role: str) -> Owner:
        # The token starts with the process's start time: a later process that gets the same
        # pid is not taken for this one.
        started = process_start(os.getpid())
        return cls(role, this_host(), os.getpid(), f"{started or 0}.{secrets.token_hex(4)}")

    def alive(self) -> bool:
        """This owner's process still runs (on this host only: elsewhere, a pid says nothing)."""
        if not self.here:
            return False
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            pass
        started, _, _ = self.token.partition(".")
        now = process_start(self.pid)
        return not (started.isdigit() and int(started) and now and now != int(started))

    @classmethod
    def parse(cls, text: str | None) -> Owner | None:
        parts = (text or "").split(" ")
        if len(parts) != 4 or not parts[2].isdigit():
            return None
        return cls(parts[0], parts[1], int(parts[2]), parts[3])

    @property
    def here(self) -> bool:
        """On this machine (its pid means something here)."""
        return self.host == this_host()


def this_host() -> str:
    return socket.gethostname()[:64]


def process_start(pid: int) -> int | None:
    """When process ``pid`` started (clock ticks since boot, from /proc), or None."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: count from its end.
    fields = stat[stat.rfind(")") + 2 :].split()
    return int(fields[19]) if len(fields) > 19 and fields[19].isdigit() else None


def describe(text: str | None) -> str:
    owner = Owner.parse(text)
    if owner is None:
        return "nobody"
    return f"the {owner.role} process {owner.pid} on {owner.host}"


def check(connection: Connection, job_id: int, owner: Owner) -> None:
    """Raise NotOwner unless ``owner`` owns the running job; the row stays locked (on
    PostgreSQL) until the caller's transaction ends, so no takeover can slip in."""
    query = select(Job.owner, Job.status).where(Job.id == job_id)
    if connection.dialect.name == "postgresql":
        query = query.with_for_update()
    row = connection.execute(query).first()
    if row is None or row.owner != str(owner) or not JobStatus(row.status).active:
        found = row.owner if row is not None else None
        raise NotOwner(
            f"job {job_id} is owned by {describe(found)} now (status "
            f"{row.status if row is not None else 'gone'}): this process stops writing to it"
        )


def take_over(connection: Connection, job_id: int, expected: str | None, new: Owner) -> bool:
    """Compare-and-set: ``new`` owns the running job if ``expected`` still did."""
    done = connection.execute(
        update(Job)
        .where(Job.id == job_id, Job.owner.is_(None) if expected is None else Job.owner == expected)
        .where(Job.status.in_(("queued", "running")))
        .values(owner=str(new))
    )
    return done.rowcount == 1
