"""The dashboard: where the database stands against the scripts (also an htmx fragment that
refreshes itself), the job running on it, the last migration, the last backup and the
recent jobs, together on one screen."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from admin import entrypoint, migrations
from admin.jobs import queue
from admin.runtime import Runtime
from admin.web import principal as principals
from admin.web.deps import CurrentUser, RuntimeDep
from admin.web.job_views import MIGRATION_KINDS, JobView, recent_views, target_jobs_key
from admin.web.render import render, running_job
from admin.web.routes.backups import last_backup_view

router = APIRouter(include_in_schema=False)

# The pending list is cut here; the history page has them all.
PENDING_SHOWN = 50


def last_migration(runtime: Runtime) -> JobView | None:
    """The newest upgrade or downgrade of the target, whatever ran after it."""
    key = target_jobs_key(runtime.settings)
    with runtime.reads() as session:
        job = queue.latest(session, key, MIGRATION_KINDS)
    return JobView.of(job) if job is not None else None


@router.get("/")
def dashboard(request: Request, user: CurrentUser, runtime: RuntimeDep) -> Response:
    """The whole page, or only its migration state for htmx (it polls every few seconds)."""
    settings = runtime.settings
    project = migrations.open_project(settings.alembic_config)
    status = migrations.read_status(project, settings.database_url)
    context = {
        "status": status,
        "pending_shown": PENDING_SHOWN,
        "degraded": entrypoint.degraded_now(settings, status.state),
        "running_job": running_job(request),
    }
    if not principals.wants_fragment(request):
        context["recent_jobs"] = recent_views(runtime)
        context["last_migration"] = last_migration(runtime)
        context["last_backup"] = last_backup_view(runtime)
    return render(request, "dashboard.html", context, block="migration_state")
