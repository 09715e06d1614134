"""SQL preview (reviewer and up): the plan and its SQL, the .sql download, the Apply form.

The Apply form posts to ``/jobs`` (the jobs work owns that route and its checks) with
``csrf_token``, ``kind``, ``target`` (as typed here), ``plan_fingerprint``, and for a
downgrade ``confirm_target``; in production also ``password``.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from starlette.requests import Request
from starlette.responses import Response

from admin import migrations, preview
from admin.analysis import plans
from admin.errors import AdminError
from admin.rehearsal import actions as rehearsal_actions
from admin.store.models import utcnow
from admin.web.deps import ActorDep, ReviewerUser, RuntimeDep, StoreSession
from admin.web.render import render

router = APIRouter(include_in_schema=False)

DirectionText = Annotated[str, Query(max_length=20)]
TargetText = Annotated[str | None, Query(max_length=200)]
StartText = Annotated[str | None, Query(alias="from", max_length=preview.MAX_START)]


def _form(direction: str, target: str | None, start: str | None) -> dict[str, Any]:
    return {"direction": direction, "target": target or "", "start": start or ""}


@router.get("/preview")
def preview_page(
    request: Request,
    user: ReviewerUser,
    runtime: RuntimeDep,
    session: StoreSession,
    actor: ActorDep,
    direction: DirectionText = "upgrade",
    target: TargetText = None,
    start: StartText = None,
) -> Response:
    """The form; with a target, the plan and its SQL (audited), or why there is none (4xx)."""
    context: dict[str, Any] = {"form": _form(direction, target, start)}
    if target is None:
        return render(request, "preview.html", context)
    settings = runtime.settings
    try:
        wanted = preview.PreviewRequest.parse(direction, target, start)
        project = migrations.open_project(settings.alembic_config, settings.cache_dir)
        shown = preview.show(session, actor, project, settings.database_url, wanted)
    except AdminError as exc:
        context["error"] = exc
        return render(request, "preview.html", context, status=exc.status)
    context["preview"] = shown
    context["safety"] = plans.plan_safety(
        settings, project, shown.plan, script=shown.script, session=session
    )
    context["rehearsal"] = rehearsal_actions.newest(
        runtime, shown.plan, None if shown.is_empty else shown.script.fingerprint
    )
    context["rehearsal_required"] = settings.rehearsal_required
    status = 200 if shown.renderable else preview.NotRenderable.status
    return render(request, "preview.html", context, status=status)


@router.get("/preview/download")
def download(
    user: ReviewerUser,
    runtime: RuntimeDep,
    session: StoreSession,
    actor: ActorDep,
    target: Annotated[str, Query(max_length=200)],
    direction: DirectionText = "upgrade",
    start: StartText = None,
) -> Response:
    """The plan's whole SQL script as an attachment (audited as SqlDownloaded), under a
    comment header that says what it is, from where to where, and who made it when."""
    settings = runtime.settings
    wanted = preview.PreviewRequest.parse(direction, target, start)
    project = migrations.open_project(settings.alembic_config, settings.cache_dir)
    shown = preview.show(session, actor, project, settings.database_url, wanted, download=True)
    by = f"{actor.name} ({actor.role}) via {actor.source.value}" if actor.role else actor.name
    return Response(
        preview.sql_file(shown, generated_at=utcnow(), generated_by=by),
        media_type="application/sql; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{shown.filename}"'},
    )
