"""History (``/revisions``: filter, pages, graph column) and one revision's page."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query
from sqlalchemy.orm import Session
from starlette.requests import Request
from starlette.responses import Response

from admin import audit, history, migrations, preview
from admin.analysis import plans
from admin.analysis.views import for_revision, for_revisions
from admin.web.deps import ActorDep, CurrentUser, RuntimeDep, StoreSession
from admin.web.render import render

router = APIRouter(include_in_schema=False)

QueryText = Annotated[
    str | None, Query(max_length=history.MAX_QUERY, description="id prefix or message text")
]
PageNumber = Annotated[int, Query(ge=1, le=1_000_000)]
StateFilter = Annotated[
    str | None, Query(max_length=20, description="applied or pending (where the database stands)")
]


@router.get("/revisions")
def revisions(
    request: Request,
    user: CurrentUser,
    runtime: RuntimeDep,
    q: QueryText = None,
    page: PageNumber = 1,
    state: StateFilter = None,
) -> Response:
    """Every revision newest first; htmx swaps only the table when the filter changes;
    ``state=pending`` (the dashboard's "more" link) or ``applied`` keeps one side."""
    settings = runtime.settings
    project = migrations.open_project(settings.alembic_config, settings.cache_dir)
    listing = history.history_page(project, settings.database_url, query=q, page=page, state=state)
    ids = [entry.revision.id for entry in listing.entries]
    context = {"history": listing, **for_revisions(runtime, project, ids, wait=False)}
    return render(request, "revisions.html", context, block="history_table")


def record_sql_viewed(session: Session, actor: audit.Actor, detail: history.RevisionDetail) -> None:
    """The revision's SQL was shown to ``actor``: audited like a preview (sql-previewed)."""
    event = audit.RevisionSqlViewed(
        revision_id=detail.revision.id,
        dialect=detail.dialect,
        upgrade_sql=detail.upgrade.sql is not None,
        downgrade_sql=detail.downgrade.sql is not None,
        sha256=detail.revision.sha256,
    )
    audit.record(session, event, actor, revision=detail.revision.id)


@router.get("/revisions/{revision_id}")
def revision(
    request: Request,
    user: CurrentUser,
    runtime: RuntimeDep,
    session: StoreSession,
    actor: ActorDep,
    revision_id: Annotated[str, Path(max_length=200)],
) -> Response:
    """A revision by id or unique prefix: metadata, source, and its own upgrade/downgrade SQL."""
    settings = runtime.settings
    project = migrations.open_project(settings.alembic_config, settings.cache_dir)
    detail = history.revision_detail(project, settings.database_url, revision_id)
    record_sql_viewed(session, actor, detail)
    # "Applied by X at T (job N)", from the audit trail.
    with runtime.reads() as session:
        applied = audit.last_applied(session, detail.revision.id)
    context = {"detail": detail, "applied": applied}
    context.update(for_revision(runtime, project, detail.revision.id))
    return render(request, "revision.html", context)


@router.get("/revisions/{revision_id}/step")
def step_sql(
    request: Request,
    user: CurrentUser,
    runtime: RuntimeDep,
    revision_id: Annotated[str, Path(max_length=200)],
    direction: Annotated[str, Query(max_length=20)] = "upgrade",
) -> Response:
    """One step's SQL, badges and squawk findings (a long preview's folded step loads it;
    the revision page shows the same SQL to viewers)."""
    settings = runtime.settings
    chosen = preview.PreviewRequest.parse(direction, "head").direction
    project = migrations.open_project(settings.alembic_config, settings.cache_dir)
    revision = project.graph().get(history.check_revision_id(revision_id))
    one = plans.step_view(settings, project, revision.id, chosen)
    return render(request, "partials/_step_sql.html", {"one": one})
