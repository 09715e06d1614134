"""Backups: the list and a backup's page; take a backup, verify it again, restore it (each a
job whose live log is on the job's page), download and delete (admins).

Who may do what: everyone signed in reads; operators take, verify and restore (in
production only admins restore); admins download and delete. The checks and refusals are
in ``admin.backups.actions``; long work runs in jobs, never on a request.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form
from starlette.requests import Request
from starlette.responses import FileResponse, Response

from admin.backups import actions, files, records, retention
from admin.errors import AdminError, InvalidInput
from admin.jobs import Runner
from admin.migrations import identity_key, target_key
from admin.runtime import Runtime
from admin.store.models import Backup, BackupStatus, Job, Role
from admin.web import principal as principals
from admin.web.deps import ActorDep, AdminUser, CurrentUser, OperatorUser, RuntimeDep
from admin.web.render import redirect, render

router = APIRouter(prefix="/backups", include_in_schema=False)
Field = Annotated[str, Form(max_length=200)]


def get_runner(request: Request) -> Runner:
    runner: Runner = request.app.state.runner
    return runner


RunnerDep = Annotated[Runner, Depends(get_runner)]


@dataclass(frozen=True)
class BackupView:
    """A backup with what its pages show."""

    backup: Backup
    state: str  # running | verified | failed | deleted | interrupted
    size: str
    job_active: bool
    # A verify or a restore found the file different from the one taken (state failed).
    file_changed: bool = False

    @classmethod
    def of(cls, backup: Backup, active_job_ids: set[int]) -> BackupView:
        job_active = backup.job_id is not None and backup.job_id in active_job_ids
        state = backup.status
        if state == BackupStatus.RUNNING.value and not job_active:
            state = "interrupted"  # its job ended without finishing it (cleaned at start-up)
        size = files.human_size(backup.size_bytes) if backup.size_bytes is not None else ""
        return cls(backup, state, size, job_active, records.file_changed(backup))


def _role(request: Request) -> Role | None:
    principal = principals.cached(request)
    return principal.user.role_enum if principal else None


def _permissions(request: Request, runtime: Runtime) -> dict[str, bool]:
    role = _role(request)
    operator = role is not None and role.at_least(Role.OPERATOR)
    admin = role is Role.ADMIN
    return {
        "may_operate": operator,
        "may_admin": admin,
        "may_restore": admin if runtime.settings.is_production else operator,
    }


def _active(runtime: Runtime) -> tuple[set[int], Job | None]:
    """Ids of active jobs, and the active job on this target (if any)."""
    with runtime.reads() as session:
        jobs = records.active_jobs(session)
    try:
        key = identity_key(runtime.settings.database_url)  # jobs are keyed by identity
    except AdminError:
        return {job.id for job in jobs}, None  # the target cannot say: no notice
    return {job.id for job in jobs}, next((j for j in jobs if j.target_key == key), None)


def last_backup_view(runtime: Runtime) -> BackupView | None:
    """The target's last verified backup (the dashboard's "Last backup")."""
    with runtime.reads() as session:
        backup = records.last_verified(session, runtime.settings)
    return BackupView.of(backup, set()) if backup is not None else None


@router.get("")
def list_backups(request: Request, user: CurrentUser, runtime: RuntimeDep) -> Response:
    """The list (also an htmx fragment that refreshes itself while a backup job runs)."""
    settings = runtime.settings
    active_ids, target_job = _active(runtime)
    with runtime.reads() as session:
        rows = records.for_target(session, settings)
    views = [BackupView.of(b, active_ids) for b in rows]
    context: dict[str, Any] = {
        "views": views,
        "target_job": target_job,
        "polling": target_job is not None or any(v.state == "running" for v in views),
        "dir_problem": actions.dir_problem(settings),
        "policy": retention.policy(settings),
        "formats": ["custom", "plain"],
        **_permissions(request, runtime),
    }
    return render(request, "backups.html", context, block="backup_list")


@router.post("")
def take_backup(
    request: Request,
    user: OperatorUser,
    actor: ActorDep,
    runtime: RuntimeDep,
    runner: RunnerDep,
    format: Field = "",
    reason: Field = "manual",
) -> Response:
    job = runner.submit(
        actions.checked_backup_request(runtime, actor, fmt=format, reason=reason), actor
    )
    return redirect(
        request,
        f"/jobs/{job.id}",
        message=f"Backup job {job.id} started: its log follows here; the backup appears "
        "on the backups page, verified, when it is done.",
    )


def _detail_context(request: Request, runtime: Runtime, backup_id: int) -> dict[str, Any]:
    settings = runtime.settings
    active_ids, target_job = _active(runtime)
    with runtime.reads() as session:
        backup = records.get(session, backup_id)
        jobs = records.jobs_of(session, backup_id)
    return {
        "view": BackupView.of(backup, active_ids),
        "jobs": jobs,
        "target_job": target_job,
        "confirm_name": actions.confirmation_name(settings),
        "same_target": backup.target_key == target_key(settings.database_url),
        "file_present": bool(
            backup.file_name and (path := records.path_of(settings, backup)) and path.is_file()
        ),
        "restore_error": None,
        "form": {},
        **_permissions(request, runtime),
    }


@router.get("/{backup_id}")
def backup_page(
    request: Request, user: CurrentUser, runtime: RuntimeDep, backup_id: str
) -> Response:
    context = _detail_context(request, runtime, records.parse_id(backup_id))
    return render(request, "backup.html", context)


@router.post("/{backup_id}/verify")
def verify_again(
    request: Request,
    user: OperatorUser,
    actor: ActorDep,
    runtime: RuntimeDep,
    runner: RunnerDep,
    backup_id: str,
) -> Response:
    job = runner.submit(actions.verify_request(runtime, records.parse_id(backup_id)), actor)
    return redirect(request, f"/jobs/{job.id}", message=f"Verification job {job.id} started.")


@router.get("/{backup_id}/download")
def download(
    request: Request, user: AdminUser, actor: ActorDep, runtime: RuntimeDep, backup_id: str
) -> Response:
    path, name = actions.open_download(runtime, records.parse_id(backup_id), actor)
    return FileResponse(
        path,
        media_type="application/octet-stream",
        filename=name,
        headers={"Cache-Control": "no-store"},
    )


@router.post("/{backup_id}/delete")
def delete_backup(
    request: Request,
    user: AdminUser,
    actor: ActorDep,
    runtime: RuntimeDep,
    backup_id: str,
    confirm: Field = "",
) -> Response:
    backup = actions.delete(runtime, records.parse_id(backup_id), actor, confirmed=confirm == "yes")
    return redirect(
        request,
        "/backups",
        message=f"Backup {backup.id} ({backup.file_name or 'no file'}) was deleted.",
    )


@router.post("/{backup_id}/restore")
def restore(
    request: Request,
    user: OperatorUser,
    actor: ActorDep,
    runtime: RuntimeDep,
    runner: RunnerDep,
    backup_id: str,
    mode: Field = "new",
    new_database: Field = "",
    confirm: Field = "",
) -> Response:
    number = records.parse_id(backup_id)
    ask = actions.RestoreAsk(number, mode, new_database or None, confirm)
    try:
        job_request = actions.restore_request(runtime, ask, actor)
    except InvalidInput as exc:
        context = _detail_context(request, runtime, number)
        context["restore_error"] = exc.message
        context["form"] = {"mode": mode, "new_database": new_database}
        return render(request, "backup.html", context, status=exc.status)
    job = runner.submit(job_request, actor)
    where = "over the target" if mode == "replace" else "into a new database"
    return redirect(request, f"/jobs/{job.id}", message=f"Restore job {job.id} started ({where}).")
