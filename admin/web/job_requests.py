"""Submitting jobs from the panel and the API: what a person must confirm first.

A downgrade or a stamp (both move the database's revision backwards or without running
anything) needs the target typed again, and in production the requester's own password.
Then ``Runner.submit`` checks the plan and the one-active-job rule (its refusals are
audited by ``admin.jobs.queue``). Refusals decided here are audited here.
"""

from __future__ import annotations

from dataclasses import dataclass

from admin import audit, migrations
from admin.analysis import plans
from admin.auth import reauth
from admin.errors import AdminError, InvalidInput, PermissionDenied, TooManyRequests
from admin.jobs import JobRequest, Runner
from admin.live import schedule
from admin.preview import destination
from admin.runtime import Runtime
from admin.store.models import Job, JobKind, User

# Kinds a person may submit here (backups and restores have their own pages).
SUBMITTABLE = (JobKind.UPGRADE, JobKind.DOWNGRADE, JobKind.STAMP)
# Kinds that need the target typed again (and, in production, the password).
CONFIRMED = (JobKind.DOWNGRADE, JobKind.STAMP)
# Kinds that run a plan (the requester saw its fingerprint in the preview).
PLANNED = (JobKind.UPGRADE, JobKind.DOWNGRADE)


@dataclass(frozen=True)
class Submission:
    """What a form or a JSON body asks for."""

    kind: str
    target: str
    plan_fingerprint: str | None = None
    confirm_target: str | None = None
    password: str | None = None
    # The panel's forms always carry the plan they showed; API callers may leave it out.
    plan_required: bool = False
    # A destructive or irreversible upgrade: what it drops, typed again (plans.confirm_phrase).
    confirm_destructive: str | None = None
    # "Take and verify a backup first" (job option ``backup``, honoured by the worker).
    backup_first: bool = False
    # Lock retries for this job (a schedule, admin.live.schedule; empty: LOCK_RETRIES).
    lock_retries: str = ""


def parse_lock_retries(value: str) -> str:
    """A job's lock retry schedule, checked (InvalidInput says what is wrong)."""
    try:
        schedule.parse(value)
    except ValueError as exc:
        raise InvalidInput(f"lock retries: {exc}") from None
    return value.strip()


def parse_kind(value: str) -> JobKind:
    names = ", ".join(kind.value for kind in SUBMITTABLE)
    try:
        kind = JobKind(value.strip().lower())
    except ValueError:
        raise InvalidInput(f"unknown job kind {value[:40]!r}: expected one of {names}") from None
    if kind not in SUBMITTABLE:
        raise InvalidInput(f"{kind.value} jobs are not started here: expected one of {names}")
    return kind


def _refuse(
    runtime: Runtime, actor: audit.Actor, kind: str, target: str, error: AdminError
) -> None:
    with runtime.transaction() as session:
        audit.record(
            session,
            audit.JobRefused(kind=kind, target_revision=target or None, reason=str(error)),
            actor,
        )


def _full_id(runtime: Runtime, target: str) -> str | None:
    """The full revision id ``target`` names (an id or a unique prefix), if it names one."""
    try:
        project = migrations.open_project(
            runtime.settings.alembic_config, runtime.settings.cache_dir
        )
        return project.graph().get(target).id
    except AdminError:
        return None


def _destination(runtime: Runtime, target: str) -> str | None:
    """Where a downgrade to ``target`` leaves the database (what the preview asks to type)."""
    settings = runtime.settings
    try:
        project = migrations.open_project(settings.alembic_config, settings.cache_dir)
        _, current = migrations.read_current(project, settings.database_url)
        plan = migrations.make_plan(project, migrations.Direction.DOWNGRADE, target, current)
    except AdminError:
        return None
    heads = destination(plan)
    return ",".join(heads) if heads else "base"


def _normalized(value: str) -> str:
    return ",".join(sorted(part.strip() for part in value.replace("+", ",").split(",")))


def check_confirmation(runtime: Runtime, kind: JobKind, target: str, typed: str | None) -> None:
    """The requester typed the target again: as given, its full id, or (downgrade) the
    revision the database will be at afterwards, as the preview shows it."""
    if kind not in CONFIRMED:
        return
    typed = (typed or "").strip()
    what = "downgrade" if kind is JobKind.DOWNGRADE else "stamp"
    if not typed:
        raise InvalidInput(
            f"to confirm the {what}, type the target revision {target!r} in the confirmation field"
        )
    if typed == target or typed == _full_id(runtime, target):
        return
    after = _destination(runtime, target) if kind is JobKind.DOWNGRADE else None
    if after is not None and _normalized(typed) == _normalized(after):
        return
    where = f" (or {after!r}, where the database will be)" if after else ""
    raise InvalidInput(
        f"the confirmation {typed[:60]!r} does not match the target revision {target!r}"
        f"{where}: type it exactly to confirm the {what}"
    )


def check_destructive(runtime: Runtime, kind: JobKind, target: str, typed: str | None) -> bool:
    """An upgrade with destructive or irreversible steps needs what it drops typed again
    (400 otherwise); True when it has such steps."""
    if kind is not JobKind.UPGRADE:
        return False
    phrase = plans.required_phrase(runtime.settings, target)
    if phrase is None:
        return False
    if not plans.same_phrase(typed, phrase):
        said = f"{typed.strip()[:60]!r} is not it" if typed and typed.strip() else "none given"
        raise InvalidInput(
            f"this upgrade drops data or cannot be undone: type {phrase!r} in the "
            f"confirmation field to confirm it ({said})",
            title="Confirmation required",
        )
    return True


def check_password(
    runtime: Runtime,
    user: User,
    kind: JobKind,
    password: str | None,
    client_addr: str | None,
    *,
    required: bool = False,
) -> None:
    """Production: a downgrade, a stamp or a destructive upgrade (``required``) needs the
    requester's password (403, 429); a password sent with any upgrade is checked as well."""
    if not runtime.settings.is_production:
        return
    if kind not in CONFIRMED and not required and not password:
        return
    purpose = f"a {kind.value} in production"
    with runtime.transaction() as session:
        refusal = reauth.reconfirm(
            session,
            runtime.settings,
            user,
            password or "",
            client_addr=client_addr,
            purpose=purpose,
        )
    if refusal is None:
        return
    if refusal.status == 429:
        raise TooManyRequests(refusal.message, retry_after=refusal.retry_after)
    # The error handler audits every 403 (AccessDenied, with this message).
    raise PermissionDenied(refusal.message, title="Password required")


def submit(
    runtime: Runtime, runner: Runner, user: User, actor: audit.Actor, asked: Submission
) -> Job:
    """Check what the requester confirmed, then queue the job and start its worker."""
    target = asked.target.strip()
    try:
        kind = parse_kind(asked.kind)
        lock_retries = parse_lock_retries(asked.lock_retries)
        if not target:
            raise InvalidInput("name a target revision (head, a revision id, base, -1, ...)")
        if asked.plan_required and kind in PLANNED and not asked.plan_fingerprint:
            raise InvalidInput(
                f"the form does not say which plan you were shown: preview the {kind.value} "
                "and apply it from there"
            )
        check_confirmation(runtime, kind, target, asked.confirm_target)
        destructive = check_destructive(runtime, kind, target, asked.confirm_destructive)
    except InvalidInput as error:
        _refuse(runtime, actor, asked.kind[:16], target[:255], error)
        raise
    check_password(runtime, user, kind, asked.password, actor.client_addr, required=destructive)
    options: dict[str, object] = {"backup": True} if asked.backup_first and kind in PLANNED else {}
    if lock_retries and kind in PLANNED:
        options["lock_retries"] = lock_retries
    request = JobRequest(kind, target, asked.plan_fingerprint or None, options)
    return runner.submit(request, actor)
