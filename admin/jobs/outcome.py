"""How a job ended, as the record will say it: its status, and where the database is.

The status comes from the worker's result and its exit; where the database is comes from
the job's own target, read after the end (never from the log): when the target does not
answer within a few seconds (restarting, cut off), the revision is unknown and the
record says why. The steps done are what the database says too: the last step whose
recorded heads are the database's heads now (a step written but rolled back with the rest
of its transaction is not done).
"""

from __future__ import annotations

import signal
import time
from dataclasses import dataclass
from typing import Any

from admin import migrations
from admin.config import Settings
from admin.errors import AdminError
from admin.jobs.protocol import heads_text
from admin.store.models import Job, JobKind, JobStatus

# Seconds the end waits for a target that does not answer before saying it is unknown.
READ_PATIENCE = 5.0


@dataclass(frozen=True)
class Where:
    """Where the target is after a job: its heads, or why that is unknown."""

    revision: str | None
    unknown: str | None = None

    @property
    def said(self) -> str:
        return self.revision if self.revision is not None else f"unknown ({self.unknown})"


def status_of(
    result: dict[str, Any] | None, returncode: int, cancelled: str | None
) -> tuple[JobStatus, str | None]:
    """The job's status and error from the worker's result, its exit code, and a cancel."""
    result = result or {}
    status = result.get("status")
    error = result.get("error")
    if status == "succeeded":
        return JobStatus.SUCCEEDED, None
    if cancelled is not None or status == "cancelled":
        return JobStatus.CANCELLED, cancelled or str(error or "cancelled on request")
    if status == "interrupted":
        return JobStatus.INTERRUPTED, str(error or "interrupted")
    if status == "failed":
        return JobStatus.FAILED, str(error or "failed")
    if returncode < 0:
        name = signal.Signals(-returncode).name
        return JobStatus.INTERRUPTED, f"interrupted: the worker was killed by {name}"
    return JobStatus.FAILED, f"the worker exited with code {returncode} and no result"


def where_now(settings: Settings, job: Job, result: dict[str, Any] | None) -> Where:
    """The job's target's heads, read now (a backup's revision is the one it recorded)."""
    if JobKind(job.kind) is JobKind.BACKUP:
        return Where((result or {}).get("revision_after"))
    deadline = time.monotonic() + READ_PATIENCE
    while True:
        try:
            project = migrations.open_project(settings.alembic_config, settings.cache_dir)
            _, heads = migrations.read_current(project, settings.database_url)
            return Where(heads_text(heads))
        except AdminError as exc:
            if time.monotonic() >= deadline:
                return Where(None, f"the target could not be read after the job: {exc}")
            time.sleep(0.5)


def steps_applied(
    heads_after: dict[int, str], where: Where, before: str | None, counted: int
) -> int:
    """The steps the database shows done: the last one whose heads it is at."""
    if where.revision is None:
        return counted
    matching = [step for step, heads in heads_after.items() if heads == where.revision]
    if matching:
        return max(matching)
    if where.revision == (before or "base"):
        return 0
    return counted
