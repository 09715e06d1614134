"""The dashboard: where the database stands against the scripts (also an htmx fragment that
refreshes itself), the job running on it, the last migration, the last backup and the
recent jobs, together on one screen."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from admin import entrypoint, migrations
from admin.analysis.background import ANALYZER
from admin.analysis.views import applied_changes, for_revisions
from admin.jobs import queue
from admin.runtime import Runtime
from admin.web import principal as principals
from admin.web import target_reads
from admin.web.deps import CurrentUser, RuntimeDep
from admin.web.job_views import MIGRATION_KINDS, JobView, recent_views, target_jobs_key
from admin.web.render import render, running_job
from admin.web.routes.backups import last_backup_view

router = APIRouter(include_in_schema=False)

# The pending list is cut here; the history filtered to pending has them all.
PENDING_SHOWN = 10


def last_migration(runtime: Runtime) -> JobView | None:
    """The newest upgrade or downgrade of the target, whatever ran after it."""
    key = target_jobs_key(runtime.settings)
    if key is None:
        return None
    with runtime.reads() as session:
        job = queue.latest(session, key, MIGRATION_KINDS)
    return JobView.of(job) if job is not None else None


def _state(runtime: Runtime) -> dict[str, Any]:
    settings = runtime.settings
    project = migrations.open_project(settings.alembic_config, settings.cache_dir)
    status = migrations.read_status(project, settings.database_url)
    return {
        "status": status,
        "pending_shown": PENDING_SHOWN,
        "degraded": entrypoint.degraded_now(settings, status.state),
    }


def _store_parts(
    request: Request, runtime: Runtime, whole: bool, status: migrations.Status
) -> dict[str, Any]:
    """What the store says: the running job, the pending revisions' badges and applied files
    changed since (the polled fragment shows them too) and, for the whole page, the last
    migration, the last backup and the recent jobs."""
    settings = runtime.settings
    project = migrations.open_project(settings.alembic_config, settings.cache_dir)
    shown = [rev.id for rev in status.pending[:PENDING_SHOWN]]
    parts: dict[str, Any] = {"running_job": running_job(request)}
    if shown and status.reachable and len(status.heads) == 1:
        # What "Apply…" leads to, rendered and analysed before anyone clicks.
        ANALYZER.prepare_apply(project, settings.database_url, settings.var_dir, status.current)
    parts.update(for_revisions(runtime, project, shown, wait=False))
    # The status has just read where the target stands (unless it could not).
    current = status.current if status.reachable and not status.unknown else None
    parts["applied_changes"] = applied_changes(runtime, project, current)
    if whole:
        parts["recent_jobs"] = recent_views(runtime)
        parts["last_migration"] = last_migration(runtime)
        parts["last_backup"] = last_backup_view(runtime)
    return parts


@router.get("/")
async def dashboard(request: Request, user: CurrentUser, runtime: RuntimeDep) -> Response:
    """The whole page, or only its migration state for htmx (it polls every few seconds).

    Async: the target is read on the target-read threads (``admin.web.target_reads``), so
    dashboards polling a locked target never hold the threads other requests need.
    """
    context = await target_reads.run(request, _state, runtime)
    whole = not principals.wants_fragment(request)
    context.update(
        await run_in_threadpool(_store_parts, request, runtime, whole, context["status"])
    )
    return render(request, "dashboard.html", context, block="migration_state")
