"""Jobs in the JSON API: submit, list, read, the log as JSON, and the live log as SSE."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header, Query
from pydantic import AwareDatetime, BaseModel, Field
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from admin.jobs import Published, queue
from admin.store.models import Job, JobLine, JobStatus
from admin.web import eventstream, job_requests, livelog, logtext
from admin.web.deps import ActorDep, CurrentUser, OperatorUser, RuntimeDep, StoreSession
from admin.web.routes.jobs import PAGE_SIZE, Filters, RunnerDep

router = APIRouter(prefix="/api/v1/jobs", tags=["jobs"])

LOG_PAGE = 1000
Kind = Literal["upgrade", "downgrade", "stamp", "backup", "restore", "verify", "rehearsal"]
Status = Literal["queued", "running", "succeeded", "failed", "cancelled", "interrupted"]


class JobCreate(BaseModel):
    """A job to start: like the panel's Apply form."""

    kind: Literal["upgrade", "downgrade", "stamp"]
    target: str = Field(
        min_length=1,
        max_length=255,
        description="head, heads, base, a revision id or prefix, branch@head, +N / -N",
    )
    plan_fingerprint: str | None = Field(
        None,
        max_length=64,
        description="The fingerprint of the plan you reviewed; a job whose plan changed "
        "since is refused (409). Leave it out to run whatever the plan is now.",
    )
    confirm_target: str | None = Field(
        None, max_length=255, description="Downgrade and stamp: the target typed again."
    )
    password: str | None = Field(
        None,
        max_length=2048,
        description="Production, downgrade, stamp and destructive upgrades: the password of "
        "the token's user.",
    )
    confirm_destructive: str | None = Field(
        None,
        max_length=500,
        description="An upgrade with destructive or irreversible steps: what it drops, as "
        "GET /api/v1/sql gives it in ``confirm_phrase``.",
    )
    backup_first: bool = Field(
        False, description="Take and verify a backup of the target before the first step."
    )
    lock_retries: str = Field(
        "",
        max_length=100,
        description="Lock retries for this upgrade/downgrade: a schedule of lock_timeouts "
        "(``5x3s``, ``1s,3s,10s``) or ``off``; empty: the LOCK_RETRIES setting.",
    )


class StepOut(BaseModel):
    """One step of a migration job, once it finished."""

    step: int
    revision: str | None
    label: str | None
    duration_seconds: float
    rows: int | None = Field(description="Rows its statements affected, as reported.")
    lock_wait_seconds: float = Field(description="Time spent waiting for locks (sampled).")

    @classmethod
    def of(cls, row: dict[str, Any]) -> StepOut:
        return cls(
            step=int(row.get("step") or 0),
            revision=row.get("revision"),
            label=row.get("label"),
            duration_seconds=float(row.get("duration") or 0.0),
            rows=row.get("rows"),
            lock_wait_seconds=float(row.get("lock_wait") or 0.0),
        )


class JobOut(BaseModel):
    """A job, as the job page shows it."""

    id: int
    kind: Kind
    status: Status
    target_revision: str | None
    target_database: str = Field(description="The target's URL, password masked.")
    plan: list[str] | None = Field(description="Revision ids, in the order they run.")
    plan_fingerprint: str | None
    sql_fingerprint: str | None
    revision_before: str | None
    revision_after: str | None
    steps_total: int
    steps_done: int
    requested_by: str
    requested_role: str | None
    source: Literal["web", "api", "cli", "entrypoint"]
    client_addr: str | None
    created_at: AwareDatetime
    started_at: AwareDatetime | None
    finished_at: AwareDatetime | None
    duration_seconds: float | None
    exit_code: int | None
    error: str | None
    cancel_requested_by: str | None
    backup_id: int | None
    url: str = Field(description="The job's page in the panel.")
    live: dict[str, Any] | None = Field(
        None,
        description="While a step runs on PostgreSQL: what the database does for the job "
        "(its backend, the lock it waits for, blockers, sessions queued behind it, progress); "
        "null when there is nothing to show.",
    )
    steps: list[StepOut] = Field(
        default_factory=list,
        description="The step table: step, revision, duration, rows affected, lock wait "
        "(in a job's own answer; empty in lists).",
    )

    @classmethod
    def of(cls, job: Job, *, with_steps: bool = True) -> JobOut:
        end = job.finished_at
        duration = (end - job.started_at).total_seconds() if end and job.started_at else None
        return cls(
            id=job.id,
            kind=job.kind,  # type: ignore[arg-type]
            status=job.status,  # type: ignore[arg-type]
            target_revision=job.target_revision,
            target_database=job.target_display,
            plan=list(job.plan) if job.plan is not None else None,
            plan_fingerprint=job.plan_fingerprint,
            sql_fingerprint=job.sql_fingerprint,
            revision_before=job.revision_before,
            revision_after=job.revision_after,
            steps_total=job.steps_total,
            steps_done=job.steps_done,
            requested_by=job.requested_by,
            requested_role=job.requested_role,
            source=job.source,  # type: ignore[arg-type]
            client_addr=job.client_addr,
            created_at=job.created_at,
            started_at=job.started_at,
            finished_at=job.finished_at,
            duration_seconds=duration,
            exit_code=job.exit_code,
            error=job.error,
            cancel_requested_by=job.cancel_requested_by,
            backup_id=job.backup_id,
            url=f"/jobs/{job.id}",
            live=job.live if JobStatus(job.status).active else None,
            steps=[StepOut.of(row) for row in job.step_stats or []] if with_steps else [],
        )


class JobPage(BaseModel):
    """Jobs, newest first; pass ``next_before`` as ``before`` for the next page."""

    jobs: list[JobOut]
    next_before: int | None


class LogLine(BaseModel):
    seq: int = Field(description="1, 2, 3, ... within the job; also the SSE event id.")
    created_at: AwareDatetime | None = Field(
        None, description="When the line was stored (not sent in live events)."
    )
    level: str = Field(description="debug, info, step, sql, warning or error")
    stream: str = Field(description="stdout, stderr (the worker's) or runner")
    text: str


class LogPage(BaseModel):
    """Lines after ``after``; ``complete`` once the job has ended and every line is here."""

    job_id: int
    status: Status
    lines: list[LogLine]
    next_after: int = Field(description="Pass as ``after`` for the next lines.")
    complete: bool


class Done(BaseModel):
    """The last event of a live log."""

    status: Status


class Restarting(BaseModel):
    """The last event before the server shuts down: reconnect (to another replica)."""

    detail: str


@router.post(
    "",
    status_code=201,
    response_model=JobOut,
    summary="Start a job",
    responses={
        400: {
            "description": "Bad kind, target or confirmation (also a destructive upgrade "
            "without ``confirm_destructive``)"
        },
        403: {"description": "Role below operator, or a wrong password"},
        409: {
            "description": "The plan changed, it cannot finish (a downgrade across an "
            "irreversible revision), or another job is active on the target"
        },
    },
)
def create_job(
    body: JobCreate,
    response: Response,
    runtime: RuntimeDep,
    runner: RunnerDep,
    user: OperatorUser,
    actor: ActorDep,
) -> JobOut:
    """Queue a job and start its worker (operator and up); follow it at ``/events``."""
    asked = job_requests.Submission(
        body.kind,
        body.target,
        body.plan_fingerprint,
        body.confirm_target,
        body.password,
        confirm_destructive=body.confirm_destructive,
        backup_first=body.backup_first,
        lock_retries=body.lock_retries,
    )
    job = job_requests.submit(runtime, runner, user, actor, asked)
    response.headers["Location"] = f"/api/v1/jobs/{job.id}"
    return JobOut.of(job, with_steps=False)  # a new job has no steps yet


@router.get("", response_model=JobPage, summary="List jobs")
def list_jobs(
    session: StoreSession,
    user: CurrentUser,
    status: Status | None = None,
    kind: Kind | None = None,
    requested_by: Annotated[str | None, Query(alias="user", max_length=64)] = None,
    before: Annotated[int | None, Query(ge=1, description="Only jobs with a smaller id")] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = PAGE_SIZE,
) -> JobPage:
    """Jobs newest first, filtered by status, kind and who asked."""
    filters = Filters.parse(status or "", kind or "", requested_by or "")
    jobs = queue.recent(
        session,
        status=filters.status or None,
        kind=filters.kind or None,
        user=filters.user or None,
        before=before,
        limit=limit + 1,
    )
    next_before = jobs[limit - 1].id if len(jobs) > limit else None
    listed = [JobOut.of(job, with_steps=False) for job in jobs[:limit]]
    return JobPage(jobs=listed, next_before=next_before)


@router.get("/{job_id}", response_model=JobOut, summary="One job")
def get_job(session: StoreSession, user: CurrentUser, job_id: int) -> JobOut:
    return JobOut.of(queue.get(session, job_id))


def _line(line: JobLine) -> LogLine:
    return LogLine(
        seq=line.seq,
        created_at=line.created_at,
        level=line.level,
        stream=line.stream,
        text=line.text,
    )


@router.get("/{job_id}/log", response_model=LogPage, summary="A job's log lines")
def job_log(
    session: StoreSession,
    user: CurrentUser,
    job_id: int,
    after: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=LOG_PAGE)] = LOG_PAGE,
) -> LogPage:
    """Up to ``limit`` lines after sequence number ``after``."""
    # The job first: once it has ended, every one of its lines is stored.
    job = queue.get(session, job_id)
    rows = queue.lines(session, job_id, after, limit)
    next_after = rows[-1].seq if rows else after
    complete = not JobStatus(job.status).active and len(rows) < limit
    return LogPage(
        job_id=job.id,
        status=job.status,  # type: ignore[arg-type]
        lines=[_line(row) for row in rows],
        next_after=next_after,
        complete=complete,
    )


@router.get(
    "/{job_id}/log.txt",
    response_class=PlainTextResponse,
    summary="A job's whole log as plain text",
    responses={200: {"content": {"text/plain": {}}}},
)
def job_log_text(session: StoreSession, user: CurrentUser, job_id: int) -> Response:
    """Every line: UTC time, time since the job started, level, text."""
    job = queue.get(session, job_id)
    rows = queue.lines(session, job_id, 0, 10_000_000)
    body = "".join(logtext.plain_lines(rows, job.started_at or job.created_at))
    return PlainTextResponse(
        body,
        headers={"Content-Disposition": f'attachment; filename="job-{job.id}.log"'},
    )


class _JsonEvents(livelog.EventFormat):
    """One ``line`` event per line (JSON ``LogLine``, id = seq), then ``done`` (JSON)."""

    def lines(self, lines: Sequence[Published]) -> bytes:
        return b"".join(
            eventstream.event(
                data=LogLine(
                    seq=line.seq,
                    created_at=None,
                    level=line.level,
                    stream=line.stream,
                    text=line.text,
                ).model_dump_json(),
                id=str(line.seq),
                name="line",
            )
            for line in lines
        )

    def done(self, status: str) -> bytes:
        data = Done(status=status).model_dump_json()  # type: ignore[arg-type]
        return eventstream.event(data=data, name="done")

    def restarting(self, reason: str) -> bytes:
        data = Restarting(detail=reason).model_dump_json()
        return eventstream.event(data=data, name="restarting", retry=livelog.RETRY_MS)


@router.get(
    "/{job_id}/events",
    # Documented as FastAPI documents its own event streams (a plain Response adds nothing).
    response_class=Response,
    responses=eventstream.OPENAPI_RESPONSES,
    summary="A job's live log (Server-Sent Events)",
)
async def job_events(
    request: Request,
    job: livelog.StreamJob,
    after: Annotated[int, Query(ge=0)] = 0,
    last_event_id: Annotated[str | None, Header(max_length=20)] = None,
) -> Response:
    """``line`` events (JSON ``LogLine``, id = seq) after ``max(after, Last-Event-ID)``,
    keep-alive comments, then one ``done`` event with the job's final status (or, when the
    server shuts down, one ``restarting`` event: reconnect with ``Last-Event-ID``)."""
    start = livelog.resume_after(after, last_event_id)
    return livelog.stream(request, job, start, _JsonEvents())
