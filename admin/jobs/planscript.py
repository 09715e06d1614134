"""A job's SQL fingerprint: the offline script of the plan it runs, rendered beside it.

The fingerprint ties what was previewed, approved and run together, so a job records the
fingerprint of its plan's canonical offline script (the one every preview of that plan
shows), not a digest of the statements its connection happened to send. It is rendered
in a child process while the worker runs (on another CPU, usually done long before the
job), or taken from this process's cache when the plan was previewed here.
"""

from __future__ import annotations

import threading

from admin import migrations
from admin.config import Settings
from admin.errors import AdminError
from admin.store.models import Job, JobKind

_DIRECTIONS = {
    JobKind.UPGRADE.value: migrations.Direction.UPGRADE,
    JobKind.DOWNGRADE.value: migrations.Direction.DOWNGRADE,
    JobKind.REHEARSAL.value: migrations.Direction.UPGRADE,
}


class PlanScript:
    """The fingerprint of one job's plan, rendered in the background."""

    def __init__(self, job: Job, settings: Settings) -> None:
        self.fingerprint: str | None = None
        self.problem: str | None = None
        self._thread: threading.Thread | None = None
        direction = _DIRECTIONS.get(job.kind)
        if direction is None or not job.plan_fingerprint or job.target_revision is None:
            return
        before = job.revision_before or "base"
        current = () if before == "base" else tuple(before.split(","))
        self._thread = threading.Thread(
            target=self._render,
            args=(settings, direction, job.target_revision, current, job.plan_fingerprint),
            name=f"job-{job.id}-sql",
            daemon=True,
        )
        self._thread.start()

    def _render(
        self,
        settings: Settings,
        direction: migrations.Direction,
        target: str,
        current: tuple[str, ...],
        expected: str,
    ) -> None:
        try:
            project = migrations.open_project(settings.alembic_config, settings.cache_dir)
            plan = migrations.make_plan(project, direction, target, current, max_age=0)
            if plan.fingerprint != expected:
                self.problem = "the plan's files changed since it was submitted"
                return
            dialect = "postgresql" if settings.database_url.startswith("postgresql") else "sqlite"
            self.fingerprint = migrations.render(
                project, plan, settings.database_url, dialect
            ).fingerprint
        except AdminError as exc:
            self.problem = str(exc)

    def result(self, timeout: float) -> str | None:
        """The fingerprint, waiting up to ``timeout`` seconds for the render to end."""
        if self._thread is not None:
            self._thread.join(timeout)
        return self.fingerprint
