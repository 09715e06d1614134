"""Jobs: the list, a job's page with its live log, Apply (POST /jobs) and Cancel.

POST /jobs is the end of the one-click path (DESIGN.md): the preview page's form sends
``kind``, ``target`` and the ``plan_fingerprint`` it showed (and for a downgrade or a stamp
``confirm_target``, in production also ``password``); the job is queued, its worker
started, and the browser goes to the job's page, where the log streams live.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Form, Header, Query
from sqlalchemy.orm import Session
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response

from admin.errors import AdminError, InvalidInput
from admin.jobs import Runner, queue
from admin.store.models import Job, JobKind, JobStatus, Role, utcnow
from admin.web import apply_refusals, eventstream, job_requests, livelog, logtext
from admin.web import principal as principals
from admin.web.deps import ActorDep, CurrentUser, OperatorUser, RuntimeDep, StoreSession
from admin.web.job_views import JobView, kind_facts
from admin.web.render import redirect, render, running_job, safe_next

router = APIRouter(prefix="/jobs", include_in_schema=False)

PAGE_SIZE = 50
# The log search: the longest text searched for, the most line numbers answered.
SEARCH_TEXT = 200
SEARCH_LIMIT = 10_000
# Lines rendered into the page; a longer log continues through the stream.
_SECRET = 2048


def get_runner(request: Request) -> Runner:
    runner: Runner = request.app.state.runner
    return runner


RunnerDep = Annotated[Runner, Depends(get_runner)]


def _may_operate(request: Request) -> bool:
    principal = principals.cached(request)
    return principal is not None and principal.user.role_enum.at_least(Role.OPERATOR)


# The list.


@dataclass(frozen=True)
class Filters:
    status: str = ""
    kind: str = ""
    user: str = ""

    @classmethod
    def parse(cls, status: str, kind: str, user: str) -> Filters:
        status, kind, user = status.strip().lower(), kind.strip().lower(), user.strip()
        if status and status not in {s.value for s in JobStatus}:
            raise InvalidInput(f"unknown job status {status[:20]!r}")
        if kind and kind not in {k.value for k in JobKind}:
            raise InvalidInput(f"unknown job kind {kind[:20]!r}")
        return cls(status, kind, user)

    def query(self, **extra: Any) -> str:
        values = {"status": self.status, "kind": self.kind, "user": self.user, **extra}
        return urlencode({k: v for k, v in values.items() if v})


@router.get("")
def list_jobs(
    request: Request,
    session: StoreSession,
    user: CurrentUser,
    status: Annotated[str, Query(max_length=16)] = "",
    kind: Annotated[str, Query(max_length=16)] = "",
    user_filter: Annotated[str, Query(alias="user", max_length=64)] = "",
    before: Annotated[int | None, Query(ge=1)] = None,
) -> Response:
    filters = Filters.parse(status, kind, user_filter)
    jobs = queue.recent(
        session,
        status=filters.status or None,
        kind=filters.kind or None,
        user=filters.user or None,
        before=before,
        limit=PAGE_SIZE + 1,
    )
    older = jobs[PAGE_SIZE - 1].id if len(jobs) > PAGE_SIZE else None
    now = utcnow()
    context = {
        "jobs": [JobView.of(job, now) for job in jobs[:PAGE_SIZE]],
        "filters": filters,
        "statuses": [s.value for s in JobStatus],
        "kinds": [k.value for k in JobKind],
        "older_url": f"/jobs?{filters.query(before=older)}" if older else None,
        "newest_url": f"/jobs?{filters.query()}" if before else None,
    }
    return render(request, "jobs.html", context, block="job_list")


# One job.


@router.get("/active")
def running_banner(
    request: Request, user: CurrentUser, here: Annotated[str, Query(max_length=400)] = "/"
) -> Response:
    """The running-job banner alone (every page asks for it again every few seconds);
    ``here`` is the page's path (a job's own page does not announce that job)."""
    context = {"running_job": running_job(request), "current_path": here}
    return render(request, "partials/_running_banner.html", context)


def _status_context(request: Request, session: Session, job: Job) -> dict[str, Any]:
    return {
        "job": job,
        "view": JobView.of(job),
        "facts": kind_facts(session, job),
        "may_operate": _may_operate(request),
    }


@router.get("/{job_id}")
def job_page(request: Request, session: StoreSession, user: CurrentUser, job_id: int) -> Response:
    job = queue.get(session, job_id)
    context = _status_context(request, session, job)
    if principals.wants_fragment(request):
        # The status block, and the details (finished, exit code, the kind's facts) with it.
        context["details_oob"] = True
        return render(request, "job.html", context, block="job_status")
    # The job first, then its lines: once the job has ended, all its lines are stored.
    log_html, last = logtext.page_log(session, job, livelog.line_html)
    started = job.started_at or job.created_at
    complete = True
    context.update(
        {
            "log_html": log_html,
            "log_started": started.timestamp() if started else None,
            "last_seq": last,
            "log_complete": complete,
            # Live while the job runs, or until a log longer than the page has streamed.
            "follow": context["view"].active or not complete,
        }
    )
    return render(request, "job.html", context, block="job_status")


@router.get("/{job_id}/lines")
def job_lines(
    request: Request,
    session: StoreSession,
    user: CurrentUser,
    job_id: int,
    after: Annotated[int, Query(ge=0)] = 0,
    until: Annotated[int, Query(ge=1)] = 1,
) -> Response:
    """A folded range of a long log's lines (the job page loads it when opened)."""
    if not after < until <= after + logtext.RANGE:
        raise InvalidInput(f"until must be above after, by at most {logtext.RANGE} lines")
    job = queue.get(session, job_id)
    lines = queue.lines(session, job_id, after, until - after)
    html = logtext.grouped(lines, job.started_at or job.created_at, livelog.line_html)
    return HTMLResponse(html)


@router.get("/{job_id}/search")
def job_search(
    request: Request,
    session: StoreSession,
    user: CurrentUser,
    job_id: int,
    q: Annotated[str, Query(min_length=1, max_length=SEARCH_TEXT)],
) -> Response:
    """The numbers of the stored lines that contain ``q`` (any case), at most
    ``SEARCH_LIMIT``: the page's search opens the folded ranges that hold some."""
    job = queue.get(session, job_id)
    seqs = queue.matching_seqs(session, job.id, q, SEARCH_LIMIT + 1)
    return JSONResponse({"seqs": seqs[:SEARCH_LIMIT], "more": len(seqs) > SEARCH_LIMIT})


@router.get("/{job_id}/steps")
def job_steps(request: Request, session: StoreSession, user: CurrentUser, job_id: int) -> Response:
    """The step table of a long job (the job page loads it when opened)."""
    job = queue.get(session, job_id)
    return render(request, "partials/_job_steps_table.html", {"job": job})


@router.get("/{job_id}/events", response_class=eventstream.EventStreamResponse)
async def job_events(
    request: Request,
    job: livelog.StreamJob,
    after: Annotated[int, Query(ge=0)] = 0,
    last_event_id: Annotated[str | None, Header(max_length=20)] = None,
) -> Response:
    """Server-Sent Events: lines as HTML fragments (``line``), ``status`` when the status
    block should be fetched again, then ``done``."""
    start = livelog.resume_after(after, last_event_id)
    return livelog.stream(request, job, start, livelog.PageEvents(job))


# Apply and Cancel.


@router.post("")
def submit_job(
    request: Request,
    runtime: RuntimeDep,
    runner: RunnerDep,
    user: OperatorUser,
    actor: ActorDep,
    kind: Annotated[str, Form(max_length=16)] = "",
    target: Annotated[str, Form(max_length=255)] = "",
    plan_fingerprint: Annotated[str, Form(max_length=64)] = "",
    confirm_target: Annotated[str, Form(max_length=255)] = "",
    password: Annotated[str, Form(max_length=_SECRET)] = "",
    confirm_destructive: Annotated[str, Form(max_length=500)] = "",
    backup_first: Annotated[str, Form(max_length=8)] = "",
    lock_retries: Annotated[str, Form(max_length=100)] = "",
) -> Response:
    asked = job_requests.Submission(
        kind,
        target,
        plan_fingerprint,
        confirm_target,
        password,
        plan_required=True,
        confirm_destructive=confirm_destructive,
        backup_first=backup_first == "yes",
        lock_retries=lock_retries,
    )
    try:
        job = job_requests.submit(runtime, runner, user, actor, asked)
    except AdminError as error:
        if principals.wants_fragment(request):
            raise  # an htmx form: the message goes to the page's message area
        # Shown in place: the preview again, the reason above its form, the input kept.
        return apply_refusals.page(request, runtime, actor, asked, error)
    shown = f" to {job.target_revision}" if job.target_revision else ""
    return redirect(
        request,
        f"/jobs/{job.id}",
        message=f"Job {job.id} started: {job.kind}{shown}.",
        level="info",
    )


@router.post("/{job_id}/cancel")
def cancel_job(
    request: Request,
    runner: RunnerDep,
    user: OperatorUser,
    actor: ActorDep,
    job_id: int,
    next: Annotated[str, Form(max_length=400)] = "",
) -> Response:
    # A job that has already ended: 409, audited by the error handler (AccessDenied).
    job = runner.cancel(job_id, actor)
    return redirect(
        request,
        safe_next(next, f"/jobs/{job.id}"),
        message=f"Job {job.id} is being cancelled: its running statement is stopped and its "
        "transaction rolled back.",
        level="warning",
    )
