"""Rehearsals: start one (from the preview or the API), a rehearsal's report page, and its
JSON. The work is a ``rehearsal`` job (admin/rehearsal), whose live log is the job's page."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Form
from pydantic import AwareDatetime, BaseModel, Field
from starlette.requests import Request
from starlette.responses import Response

from admin.backups.files import human_size
from admin.rehearsal import actions, records
from admin.store.models import Rehearsal
from admin.web.deps import ActorDep, CurrentUser, OperatorUser, StoreSession
from admin.web.render import redirect, render
from admin.web.routes.jobs import RunnerDep

router = APIRouter()
TargetField = Annotated[str, Form(max_length=255)]
FingerprintField = Annotated[str, Form(max_length=64)]


@router.post("/rehearsals", include_in_schema=False)
def start_rehearsal(
    request: Request,
    user: OperatorUser,
    actor: ActorDep,
    runner: RunnerDep,
    target: TargetField = "heads",
    plan_fingerprint: FingerprintField = "",
) -> Response:
    job = runner.submit(actions.rehearsal_request(target, plan_fingerprint), actor)
    return redirect(
        request,
        f"/jobs/{job.id}",
        message=f"Rehearsal job {job.id} started: the plan runs on a scratch copy of the "
        "target's data; its report opens from this page when it is done.",
    )


@router.get("/rehearsals/job/{job_id}", include_in_schema=False)
def report_of_job(
    request: Request, session: StoreSession, user: CurrentUser, job_id: int
) -> Response:
    row = records.of_job(session, job_id)
    if row is None:
        return redirect(
            request, f"/jobs/{job_id}", message="This job has no rehearsal report (yet)."
        )
    return redirect(request, f"/rehearsals/{row.id}")


@router.get("/rehearsals/{rehearsal_id}", include_in_schema=False)
def report_page(
    request: Request, session: StoreSession, user: CurrentUser, rehearsal_id: str
) -> Response:
    row = records.get(session, records.parse_id(rehearsal_id))
    report = row.report or {}
    context: dict[str, Any] = {
        "r": row,
        "report": report,
        "summary": report.get("summary") or {},
        "steps": (report.get("upgrade") or {}).get("steps") or [],
        "trip": report.get("round_trip") or {},
        "size": lambda v: human_size(v) if v is not None else "—",
    }
    return render(request, "rehearsal.html", context)


# The JSON API.


class RehearsalCreate(BaseModel):
    target: str = Field("heads", min_length=1, max_length=255)
    plan_fingerprint: str | None = Field(
        None, max_length=64, description="The plan you reviewed; a changed plan is refused (409)."
    )


class RehearsalOut(BaseModel):
    id: int
    job_id: int
    status: str
    target_revision: str | None
    plan: list[str] | None
    plan_fingerprint: str | None
    sql_fingerprint: str | None
    backup_id: int | None
    backup_revision: str | None
    backup_taken_at: AwareDatetime | None
    scratch_database: str | None
    scratch_kept: bool
    round_trip: str | None
    error: str | None
    requested_by: str
    created_at: AwareDatetime
    finished_at: AwareDatetime | None
    report: dict[str, Any] | None
    url: str

    @classmethod
    def of(cls, row: Rehearsal) -> RehearsalOut:
        return cls(
            id=row.id,
            job_id=row.job_id,
            status=row.status,
            target_revision=row.target_revision,
            plan=row.plan,
            plan_fingerprint=row.plan_fingerprint,
            sql_fingerprint=row.sql_fingerprint,
            backup_id=row.backup_id,
            backup_revision=row.backup_revision,
            backup_taken_at=row.backup_taken_at,
            scratch_database=row.scratch_database,
            scratch_kept=row.scratch_kept,
            round_trip=row.round_trip,
            error=row.error,
            requested_by=row.requested_by,
            created_at=row.created_at,
            finished_at=row.finished_at,
            report=row.report,
            url=f"/rehearsals/{row.id}",
        )


class RehearsalStarted(BaseModel):
    job_id: int
    job_url: str
    events: str


@router.post(
    "/api/v1/rehearsals",
    status_code=201,
    response_model=RehearsalStarted,
    summary="Rehearse a plan",
    tags=["rehearsals"],
)
def api_start(
    body: RehearsalCreate, runner: RunnerDep, user: OperatorUser, actor: ActorDep
) -> RehearsalStarted:
    """Start a rehearsal job (operator and up): the upgrade to ``target`` on a scratch copy."""
    job = runner.submit(actions.rehearsal_request(body.target, body.plan_fingerprint), actor)
    return RehearsalStarted(
        job_id=job.id, job_url=f"/api/v1/jobs/{job.id}", events=f"/api/v1/jobs/{job.id}/events"
    )


@router.get(
    "/api/v1/rehearsals/{rehearsal_id}",
    response_model=RehearsalOut,
    summary="A rehearsal and its report",
    tags=["rehearsals"],
)
def api_get(session: StoreSession, user: CurrentUser, rehearsal_id: str) -> RehearsalOut:
    return RehearsalOut.of(records.get(session, records.parse_id(rehearsal_id)))


@router.get(
    "/api/v1/jobs/{job_id}/rehearsal",
    response_model=RehearsalOut,
    summary="The rehearsal a job ran",
    tags=["rehearsals"],
)
def api_of_job(session: StoreSession, user: CurrentUser, job_id: int) -> RehearsalOut:
    row = records.of_job(session, job_id)
    if row is None:
        raise records.NotFound(f"job {job_id} has no rehearsal")
    return RehearsalOut.of(row)
