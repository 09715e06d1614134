"""Safety actions: an admin acknowledges an applied revision file that changed since."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Path
from starlette.requests import Request
from starlette.responses import Response

from admin import history, migrations
from admin.analysis import applied
from admin.web.deps import ActorDep, AdminUser, RuntimeDep
from admin.web.render import redirect

router = APIRouter(include_in_schema=False)


@router.post("/revisions/{revision_id}/acknowledge")
def acknowledge(
    request: Request,
    runtime: RuntimeDep,
    user: AdminUser,
    actor: ActorDep,
    revision_id: Annotated[str, Path(max_length=200)],
    reason: Annotated[str, Form(max_length=2000)] = "",
) -> Response:
    """Accept the file as it is now (audited: applied-file-acknowledged)."""
    settings = runtime.settings
    project = migrations.open_project(settings.alembic_config, settings.cache_dir)
    rid = history.check_revision_id(revision_id)
    with runtime.transaction() as session:
        row = applied.acknowledge(session, settings, project, rid, reason, actor)
    return redirect(
        request,
        f"/revisions/{row.revision}",
        message=f"The change to {row.revision} is acknowledged.",
        level="info",
    )
