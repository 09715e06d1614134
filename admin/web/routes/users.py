"""The user page (admins): add users, change roles, disable and enable, reset passwords."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Form
from starlette.requests import Request
from starlette.responses import Response

from admin.auth import passwords, users
from admin.errors import AdminError
from admin.store.models import Role
from admin.web.deps import ActorDep, StoreSession, require_role
from admin.web.errors import record_refusal
from admin.web.render import redirect, render

router = APIRouter(
    prefix="/users", include_in_schema=False, dependencies=[Depends(require_role(Role.ADMIN))]
)
Username = Annotated[str, Form(max_length=255)]


def _page(
    request: Request,
    session: StoreSession,
    *,
    error: str | None = None,
    status: int = 200,
    form: dict[str, str] | None = None,
) -> Response:
    context = {
        "users": users.list_users(session),
        "roles": list(Role),
        "error": error,
        "form": form or {},
    }
    return render(request, "users.html", context, block="user_list", status=status)


def _shown_once(request: Request, title: str, username: str, secret: str, note: str) -> Response:
    context = {
        "title": title,
        "subject": username,
        "secret": secret,
        "note": note,
        "back": "/users",
        "back_label": "Back to users",
    }
    return render(request, "secret.html", context)


@router.get("")
def list_users(request: Request, session: StoreSession) -> Response:
    return _page(request, session)


@router.post("")
def add_user(
    request: Request,
    session: StoreSession,
    actor: ActorDep,
    username: Username = "",
    role: Annotated[str, Form(max_length=32)] = Role.VIEWER.value,
) -> Response:
    password = passwords.random_password()
    try:
        user = users.create(session, actor, username, users.parse_role(role), password)
    except AdminError as exc:
        record_refusal(request, session, actor, exc)
        form = {"username": username, "role": role}
        return _page(request, session, error=exc.message, status=exc.status, form=form)
    return _shown_once(
        request,
        "User added",
        user.username,
        password,
        f"Give this one-time password to {user.username} ({user.role}). "
        "They must choose a new one at their first sign-in. It is not shown again.",
    )


@router.post("/{username}/role")
def change_role(
    request: Request,
    session: StoreSession,
    actor: ActorDep,
    username: str,
    role: Annotated[str, Form(max_length=32)],
) -> Response:
    user = users.set_role(session, actor, username, users.parse_role(role))
    return redirect(request, "/users", message=f"{user.username} now has the {user.role} role.")


@router.post("/{username}/disable")
def disable_user(
    request: Request, session: StoreSession, actor: ActorDep, username: str
) -> Response:
    user = users.set_disabled(session, actor, username, True)
    return redirect(
        request, "/users", message=f"{user.username} is disabled; their sessions have ended."
    )


@router.post("/{username}/enable")
def enable_user(
    request: Request, session: StoreSession, actor: ActorDep, username: str
) -> Response:
    user = users.set_disabled(session, actor, username, False)
    return redirect(request, "/users", message=f"{user.username} is enabled.")


@router.post("/{username}/reset-password")
def reset_password(
    request: Request, session: StoreSession, actor: ActorDep, username: str
) -> Response:
    user, password = users.reset_password(session, actor, username)
    return _shown_once(
        request,
        "Password reset",
        user.username,
        password,
        f"Give this one-time password to {user.username}. Their sessions have ended, and they "
        "must choose a new password at their next sign-in. It is not shown again.",
    )
