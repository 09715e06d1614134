"""The JSON API for reading: status, revisions, one revision, SQL (under /api/v1).

Authenticated like /api/v1/me (session cookie or ``Authorization: Bearer <token>``);
errors come back as JSON ``{"status", "title", "detail"}`` with their 4xx status.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query
from pydantic import AwareDatetime, BaseModel, Field
from starlette.requests import Request

from admin import history, migrations, preview
from admin.analysis import plans
from admin.analysis.views import for_revision, for_revisions
from admin.migrations import Revision
from admin.web import target_reads
from admin.web.deps import ActorDep, CurrentUser, ReviewerUser, RuntimeDep, StoreSession
from admin.web.routes.revisions import record_sql_viewed

router = APIRouter(prefix="/api/v1", tags=["migrations"])

StateName = Literal[
    "up-to-date",
    "behind",
    "empty",
    "several-heads",
    "unknown-revision",
    "missing",
    "unreachable",
]


# The status carries the first pending revisions, not all of them: its size does not grow
# with the number pending (the rest: ``pending_url``).
PENDING_IN_STATUS = 50


def _aware(moment: datetime | None) -> datetime | None:
    return moment.astimezone(UTC) if moment is not None else None


class RevisionSummary(BaseModel):
    """A revision as the history lists it."""

    id: str
    message: str
    down_revisions: list[str] = Field(description="parents (two or more for a merge)")
    branch_labels: list[str]
    create_date: AwareDatetime | None = Field(
        description="the file's Create Date, in UTC (a date without a zone is read as the "
        "server's local time, as Alembic writes it)"
    )
    is_head: bool
    is_base: bool
    is_branch_point: bool
    is_merge_point: bool

    @classmethod
    def of(cls, rev: Revision) -> RevisionSummary:
        return cls(
            id=rev.id,
            message=rev.message,
            down_revisions=list(rev.down_revisions),
            branch_labels=list(rev.branch_labels),
            create_date=_aware(rev.create_date),
            is_head=rev.is_head,
            is_base=rev.is_base,
            is_branch_point=rev.is_branch_point,
            is_merge_point=rev.is_merge_point,
        )


class StatusOut(BaseModel):
    """Where the target database stands against the revision files."""

    state: StateName
    message: str = Field(description="what it means and what to do")
    target: str = Field(description="the target's URL, password hidden")
    dialect: str
    environment: str
    current: list[str] = Field(description="the database's revision(s); empty at base")
    heads: list[str]
    pending: list[RevisionSummary] = Field(
        description=f"the first {PENDING_IN_STATUS} pending, in the order an upgrade runs them"
    )
    pending_count: int = Field(description="how many revisions are pending in all")
    pending_url: str = Field(
        description="all of them, paginated: the history filtered to pending (newest first)"
    )
    unknown: list[str] = Field(description="current revisions no file has")
    exit_code: int = Field(description="what `schema-admin status` exits with: 0, 3 or 1")


class BadgeOut(BaseModel):
    """One risk of a step (admin/analysis): its kind and why, in one line."""

    kind: Literal[
        "irreversible",
        "destructive",
        "data migration",
        "long lock",
        "non-transactional",
        "needs a live database",
    ]
    reason: str
    objects: list[str] = Field(description="what a destructive step drops")
    fails: bool = Field(description="a downgrade proven to raise: a plan crossing it stops")


class FindingOut(BaseModel):
    """A squawk finding on one statement of a step."""

    rule: str
    level: Literal["warning", "error"]
    message: str
    help: str | None
    statement: str
    line: int = Field(description="the statement's first line in the step's SQL")


class ChangedFileOut(BaseModel):
    """An applied revision whose file changed since the job that applied it."""

    job_id: int
    applied_sha256: str
    file_sha256: str
    diff: str


def _badges(badges: tuple[Any, ...]) -> list[BadgeOut]:
    return [BadgeOut(**b.to_json()) for b in badges]


def _findings(findings: list[Any]) -> list[FindingOut]:
    return [
        FindingOut(
            rule=f.rule,
            level=f.level,
            message=f.message,
            help=f.help,
            statement=f.statement,
            line=f.statement_line,
        )
        for f in findings
    ]


def _changed(drift: Any) -> ChangedFileOut | None:
    if drift is None:
        return None
    return ChangedFileOut(
        job_id=drift.job_id,
        applied_sha256=drift.applied_sha256,
        file_sha256=drift.file_sha256,
        diff=drift.diff,
    )


class HistoryItem(RevisionSummary):
    is_current: bool
    state: Literal["applied", "pending"] | None = Field(
        description="relative to the database's current heads; null when it cannot be read"
    )
    badges: list[BadgeOut] = Field(description="the upgrade's risks (irreversible among them)")
    changed_since_applied: ChangedFileOut | None


class HistoryOut(BaseModel):
    """One page of the history, newest first."""

    items: list[HistoryItem]
    query: str
    state: Literal["applied", "pending"] | None = Field(description="the state filter, if any")
    page: int
    pages: int
    per_page: int
    matching: int
    total: int
    heads: list[str]
    current: list[str] | None = Field(description="null when the database cannot be read")


class OneStepOut(BaseModel):
    direction: Literal["upgrade", "downgrade"]
    start: list[str]
    destination: str
    sql: str | None
    error: str | None = Field(description="why the step cannot be rendered offline")


class RevisionOut(RevisionSummary):
    """One revision: metadata, file, source, and its own SQL each way."""

    children: list[str]
    dependencies: list[str]
    path: str = Field(description="the file, relative to the project's alembic.ini")
    sha256: str
    docstring: str
    is_current: bool
    state: Literal["applied", "pending"] | None
    dialect: str
    source: str
    upgrade: OneStepOut
    downgrade: OneStepOut
    upgrade_badges: list[BadgeOut]
    downgrade_badges: list[BadgeOut]
    upgrade_findings: list[FindingOut]
    downgrade_findings: list[FindingOut]
    changed_since_applied: ChangedFileOut | None


class SqlStepOut(BaseModel):
    revision: str
    message: str
    label: str
    sql: str | None
    error: str | None
    badges: list[BadgeOut]
    findings: list[FindingOut]


class BlockedOut(BaseModel):
    """Why the plan cannot finish (no job is accepted for it)."""

    revision: str
    reason: str
    lowest: list[str] = Field(description="the lowest the database can reach this way")
    backup_id: int | None = Field(description="the verified backup taken before it, if any")
    message: str


class SqlOut(BaseModel):
    """A plan and its offline SQL; ``renderable`` is false when a step has no offline SQL."""

    direction: Literal["upgrade", "downgrade"]
    target: str
    from_revisions: list[str]
    from_database: bool
    to_revisions: list[str]
    dialect: str
    plan_fingerprint: str
    sql_fingerprint: str | None
    renderable: bool
    steps: list[SqlStepOut]
    sql: str
    confirm_phrase: str | None = Field(
        description="a destructive or irreversible upgrade: what POST /api/v1/jobs needs "
        "in confirm_destructive"
    )
    blocked: BlockedOut | None
    lint: str | None = Field(description="why SQL lint does not apply, when it does not")


def _project(runtime: RuntimeDep) -> migrations.Project:
    return migrations.open_project(runtime.settings.alembic_config, runtime.settings.cache_dir)


def _status(runtime: RuntimeDep) -> migrations.Status:
    return migrations.read_status(_project(runtime), runtime.settings.database_url)


@router.get("/status", response_model=StatusOut, summary="Where the database stands")
async def status(request: Request, user: CurrentUser, runtime: RuntimeDep) -> StatusOut:
    """The target's revision(s) against the head(s): the dashboard's state. A locked version
    table or a busy target answers within TARGET_READ_TIMEOUT (state ``unreachable``, the
    message names the lock's holder)."""
    found = await target_reads.run(request, _status, runtime)
    return StatusOut(
        state=found.state.value,
        message=found.message,
        target=found.target,
        dialect=found.dialect,
        environment=runtime.settings.environment.value,
        current=list(found.current),
        heads=list(found.heads),
        pending=[RevisionSummary.of(rev) for rev in found.pending[:PENDING_IN_STATUS]],
        pending_count=len(found.pending),
        pending_url="/api/v1/revisions?state=pending",
        unknown=list(found.unknown),
        exit_code=found.exit_code,
    )


@router.get("/revisions", response_model=HistoryOut, summary="The history, paginated")
def revisions(
    user: CurrentUser,
    runtime: RuntimeDep,
    q: Annotated[str | None, Query(max_length=history.MAX_QUERY)] = None,
    page: Annotated[int, Query(ge=1, le=1_000_000)] = 1,
    per_page: Annotated[int, Query(ge=1, le=history.MAX_PER_PAGE)] = history.PER_PAGE,
    state: Annotated[Literal["applied", "pending"] | None, Query()] = None,
) -> HistoryOut:
    """Revisions newest first, filtered by id prefix or message text (``q``) and by where
    the database stands (``state``: ``pending`` is the rest of the status's pending list)."""
    project = _project(runtime)
    listing = history.history_page(
        project,
        runtime.settings.database_url,
        query=q,
        page=page,
        per_page=per_page,
        state=state,
    )
    safety = for_revisions(runtime, project, [e.revision.id for e in listing.entries])
    return HistoryOut(
        items=[
            HistoryItem(
                **RevisionSummary.of(e.revision).model_dump(),
                is_current=e.is_current,
                state=e.state,
                badges=_badges(safety["risks"][e.revision.id].badges),
                changed_since_applied=_changed(safety["drift"].get(e.revision.id)),
            )
            for e in listing.entries
        ],
        query=listing.query,
        state=listing.state,
        page=listing.page,
        pages=listing.pages,
        per_page=listing.per_page,
        matching=listing.matching,
        total=listing.total,
        heads=list(listing.heads),
        current=list(listing.position.current) if listing.position.known else None,
    )


def _one(step: history.OneStep) -> OneStepOut:
    return OneStepOut(
        direction=step.direction.value,
        start=list(step.start),
        destination=step.destination,
        sql=step.sql,
        error=step.error,
    )


@router.get("/revisions/{revision_id}", response_model=RevisionOut, summary="One revision")
def revision(
    user: CurrentUser,
    runtime: RuntimeDep,
    session: StoreSession,
    actor: ActorDep,
    revision_id: Annotated[str, Path(max_length=200, description="an id or a unique prefix")],
) -> RevisionOut:
    """A revision by id or unique prefix (404 unknown, 400 malformed or ambiguous); showing
    its SQL is audited (``revision-sql-viewed``)."""
    project = _project(runtime)
    detail = history.revision_detail(project, runtime.settings.database_url, revision_id)
    record_sql_viewed(session, actor, detail)
    rev = detail.revision
    safety = for_revision(runtime, project, rev.id)
    return RevisionOut(
        **RevisionSummary.of(rev).model_dump(),
        children=list(rev.children),
        dependencies=list(rev.dependencies),
        path=detail.relative_path,
        sha256=rev.sha256,
        docstring=rev.docstring,
        is_current=detail.is_current,
        state=detail.state,
        dialect=detail.dialect,
        source=detail.source,
        upgrade=_one(detail.upgrade),
        downgrade=_one(detail.downgrade),
        upgrade_badges=_badges(safety["risk"].upgrade.badges),
        downgrade_badges=_badges(safety["risk"].downgrade.badges),
        upgrade_findings=_findings(safety["lint_upgrade"]),
        downgrade_findings=_findings(safety["lint_downgrade"]),
        changed_since_applied=_changed(safety["drift"].get(rev.id)),
    )


@router.get("/sql", response_model=SqlOut, summary="The SQL of an upgrade or downgrade")
def sql(
    user: ReviewerUser,
    runtime: RuntimeDep,
    session: StoreSession,
    actor: ActorDep,
    target: Annotated[str, Query(max_length=200, description="head, base, an id, +N / -N...")],
    direction: Literal["upgrade", "downgrade"] = "upgrade",
    start: Annotated[
        str | None,
        Query(
            alias="from",
            max_length=preview.MAX_START,
            description="base, head, heads or revision ids; default: where the database stands",
        ),
    ] = None,
) -> SqlOut:
    """The plan and its SQL, as the preview page shows it (reviewer and up; audited)."""
    wanted = preview.PreviewRequest.parse(direction, target, start)
    project = _project(runtime)
    shown = preview.show(session, actor, project, runtime.settings.database_url, wanted)
    safety = plans.plan_safety(
        runtime.settings, project, shown.plan, script=shown.script, session=session
    )
    blocked = safety.blocked
    return SqlOut(
        direction=shown.plan.direction.value,
        target=wanted.target,
        from_revisions=list(shown.current),
        from_database=shown.from_database,
        to_revisions=list(shown.destination),
        dialect=shown.dialect,
        plan_fingerprint=shown.plan.fingerprint,
        sql_fingerprint=None if shown.is_empty else shown.script.fingerprint,
        renderable=shown.renderable,
        steps=[
            SqlStepOut(
                revision=piece.step.revision,
                message=piece.step.message,
                label=piece.step.label,
                sql=piece.sql,
                error=piece.error,
                badges=_badges(safety.badges(piece.step.revision)),
                findings=_findings(safety.findings(piece.step.revision)),
            )
            for piece in shown.script.steps
        ],
        sql=shown.script.text,
        confirm_phrase=safety.confirm_phrase,
        blocked=BlockedOut(
            revision=blocked.revision,
            reason=blocked.reason,
            lowest=list(blocked.lowest),
            backup_id=blocked.backup_id,
            message=blocked.message,
        )
        if blocked
        else None,
        lint=safety.report.reason if safety.report is not None else None,
    )
