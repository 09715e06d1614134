"""The dashboard: which target, which environment, where the database stands against the
scripts (also an htmx fragment that refreshes itself), and the places the jobs and
backups work fills (``partials/_recent_jobs.html``, ``partials/_last_backup.html``)."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from admin import entrypoint, migrations
from admin.analysis.views import applied_changes, for_revisions
from admin.web import principal as principals
from admin.web.deps import CurrentUser, RuntimeDep
from admin.web.render import render
from admin.web.routes.backups import last_backup_view
from admin.web.routes.jobs import recent_views

router = APIRouter(include_in_schema=False)

# The pending list is cut here; the history page has them all.
PENDING_SHOWN = 50


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
    }
    shown = [rev.id for rev in status.pending[:PENDING_SHOWN]]
    context.update(for_revisions(runtime, project, shown))
    context["applied_changes"] = applied_changes(runtime, project)
    if not principals.wants_fragment(request):
        context["recent_jobs"] = recent_views(runtime)
        context["last_backup"] = last_backup_view(runtime)
    return render(request, "dashboard.html", context, block="migration_state")
