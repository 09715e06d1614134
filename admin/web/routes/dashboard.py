"""The dashboard: which target, which environment, where the database stands against the
scripts (also an htmx fragment that refreshes itself), and the places the jobs and
backups work fills (``partials/_recent_jobs.html``, ``partials/_last_backup.html``)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from admin import entrypoint, migrations
from admin.runtime import Runtime
from admin.web import principal as principals
from admin.web import target_reads
from admin.web.deps import CurrentUser, RuntimeDep
from admin.web.render import render
from admin.web.routes.backups import last_backup_view
from admin.web.routes.jobs import recent_views

router = APIRouter(include_in_schema=False)

# The pending list is cut here; the history page has them all.
PENDING_SHOWN = 50


def _state(runtime: Runtime) -> dict[str, Any]:
    settings = runtime.settings
    project = migrations.open_project(settings.alembic_config, settings.cache_dir)
    status = migrations.read_status(project, settings.database_url)
    return {
        "status": status,
        "pending_shown": PENDING_SHOWN,
        "degraded": entrypoint.degraded_now(settings, status.state),
    }


def _store_parts(runtime: Runtime) -> dict[str, Any]:
    return {"recent_jobs": recent_views(runtime), "last_backup": last_backup_view(runtime)}


@router.get("/")
async def dashboard(request: Request, user: CurrentUser, runtime: RuntimeDep) -> Response:
    """The whole page, or only its migration state for htmx (it polls every few seconds).

    Async: the target is read on the target-read threads (``admin.web.target_reads``), so
    dashboards polling a locked target never hold the threads other requests need.
    """
    context = await target_reads.run(request, _state, runtime)
    if not principals.wants_fragment(request):
        context.update(await run_in_threadpool(_store_parts, runtime))
    return render(request, "dashboard.html", context, block="migration_state")
