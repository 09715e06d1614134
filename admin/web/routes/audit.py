"""The audit trail: the page (filters, keyset pages), the exports, and the chain check.

Who sees what: admins see every event, export it and verify the chain; every other role
sees the events they caused themselves (their sign-ins, previews, jobs). A user who is
refused something is told so, and the refusal is audited (errors.py).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Query
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from admin import audit, audit_query, migrations
from admin.audit_query import Filters
from admin.errors import AdminError
from admin.runtime import Runtime
from admin.store.models import AuditEvent, Role, Source, User, utcnow
from admin.web.deps import ActorDep, CurrentUser, RuntimeDep, StoreSession, require_role
from admin.web.render import render

router = APIRouter(prefix="/audit", include_in_schema=False)
AdminOnly = [Depends(require_role(Role.ADMIN))]
# Revision values that name no single revision file (nothing to link to).
_SYMBOLIC = {"head", "heads", "base"}
_MEDIA = {"csv": "text/csv; charset=utf-8", "jsonl": "application/x-ndjson; charset=utf-8"}


def full_revision_id(runtime: Runtime) -> Callable[[str], str | None]:
    """The full id a revision prefix stands for in the project (None: unknown, ambiguous)."""

    def full_id(value: str) -> str | None:
        try:
            project = migrations.open_project(
                runtime.settings.alembic_config, runtime.settings.cache_dir
            )
            return project.graph().get(value).id
        except AdminError:
            return None

    return full_id


def audit_filters(
    runtime: RuntimeDep,
    actor: Annotated[str, Query(max_length=255)] = "",
    action: Annotated[str, Query(max_length=64)] = "",
    revision: Annotated[str, Query(max_length=255)] = "",
    outcome: Annotated[str, Query(max_length=16)] = "",
    source: Annotated[str, Query(max_length=16)] = "",
    since: Annotated[str, Query(max_length=40)] = "",
    until: Annotated[str, Query(max_length=40)] = "",
    job: Annotated[str, Query(max_length=20)] = "",
) -> Filters:
    return Filters.parse(
        actor=actor,
        action=action,
        revision=revision,
        outcome=outcome,
        source=source,
        since=since,
        until=until,
        job=job,
    ).resolved(full_revision_id(runtime))


FiltersDep = Annotated[Filters, Depends(audit_filters)]


def linkable_revisions(value: str | None) -> list[str]:
    """The revision ids in a recorded value (``a,b`` for two heads), without symbolic ones."""
    if not value:
        return []
    return [
        part
        for part in (p.strip() for p in value.split(","))
        if part and part not in _SYMBOLIC and not part.startswith(("+", "-")) and "@" not in part
    ]


@dataclass(frozen=True)
class EventView:
    """An event as the page shows it: details pretty-printed, its revisions to link."""

    event: AuditEvent
    details_json: str
    revisions: list[str]

    @classmethod
    def of(cls, event: AuditEvent) -> EventView:
        details = json.dumps(event.details, indent=2, sort_keys=True, ensure_ascii=False)
        return cls(event, details, linkable_revisions(event.revision))


def _url(path: str, filters: Filters, **extra: Any) -> str:
    values = {**filters.as_dict(), **{k: v for k, v in extra.items() if v is not None}}
    return f"{path}?{urlencode(values)}" if values else path


def _scope(user: User) -> str | None:
    return audit_query.scope_for(user.username, user.role_enum)


def _context(filters: Filters, user: User, result: audit_query.Page) -> dict[str, Any]:
    return {
        "filters": filters,
        "events": [EventView.of(e) for e in result.events],
        "own_only": _scope(user) is not None,
        "older_url": _url("/audit", filters, before=result.older) if result.older else None,
        "newer_url": _url("/audit", filters, after=result.newer) if result.newer else None,
        "newest_url": _url("/audit", filters),
        "export_csv": _url("/audit/export", filters, format="csv"),
        "export_jsonl": _url("/audit/export", filters, format="jsonl"),
        "actions": audit_query.action_choices(),
        "outcomes": [o.value for o in audit.Outcome],
        "sources": [s.value for s in Source],
        "report": None,
    }


@router.get("")
def audit_page(
    request: Request,
    runtime: RuntimeDep,
    user: CurrentUser,
    filters: FiltersDep,
    before: Annotated[int | None, Query(ge=1, le=audit_query.MAX_ID)] = None,
    after: Annotated[int | None, Query(ge=0, le=audit_query.MAX_ID)] = None,
) -> Response:
    # A plain read (on SQLite: no write lock), however long the trail.
    with runtime.reads() as session:
        result = audit_query.page(session, filters, scope=_scope(user), before=before, after=after)
        context = _context(filters, user, result)
    # htmx puts the page's own address (without empty fields) in the location bar.
    here = _url("/audit", filters, before=before, after=after)
    return render(
        request, "audit.html", context, block="audit_results", headers={"HX-Push-Url": here}
    )


@router.get("/export", dependencies=AdminOnly)
def export(
    runtime: RuntimeDep,
    session: StoreSession,
    actor: ActorDep,
    user: CurrentUser,
    filters: FiltersDep,
    format: Annotated[str, Query(pattern="^(csv|jsonl)$")] = "csv",
) -> Response:
    """The events of the current filter, oldest first, streamed (the export is audited)."""
    upto = audit_query.newest_id(session)
    audit.record(
        session,
        audit.AuditExported(format=format, filters=filters.as_dict(), upto_id=upto),
        actor,
    )
    rows = audit_query.batches(runtime.reads, filters, scope=_scope(user), upto=upto)
    chunks = audit_query.csv_chunks(rows) if format == "csv" else audit_query.jsonl_chunks(rows)
    name = f"audit-{utcnow().strftime('%Y%m%dT%H%M%SZ')}.{format}"
    return StreamingResponse(
        (chunk.encode("utf-8") for chunk in chunks),
        media_type=_MEDIA[format],
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


@router.post("/verify", dependencies=AdminOnly)
def verify_chain(
    request: Request,
    runtime: RuntimeDep,
    session: StoreSession,
    actor: ActorDep,
    user: CurrentUser,
) -> Response:
    """Walk the hash chain (a plain read), then record that it was checked, and the result."""
    with runtime.reads() as reading:
        report = audit.verify(reading)
    audit.record(session, audit.AuditVerified.of(report), actor)
    with runtime.reads() as reading:
        context = _context(Filters(), user, audit_query.page(reading, Filters(), scope=None))
    context["report"] = report
    return render(request, "audit.html", context, block="chain_report")
