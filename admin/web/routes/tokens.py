"""API tokens (admins): create one (its secret shown once) and revoke it."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Form
from starlette.requests import Request
from starlette.responses import Response

from admin.auth import tokens, users
from admin.errors import AdminError, InvalidInput
from admin.store.models import Role, utcnow
from admin.web.deps import ActorDep, RuntimeDep, StoreSession, require_role
from admin.web.errors import record_refusal
from admin.web.render import redirect, render

router = APIRouter(
    prefix="/tokens", include_in_schema=False, dependencies=[Depends(require_role(Role.ADMIN))]
)


def _page(
    request: Request,
    session: StoreSession,
    *,
    error: str | None = None,
    status: int = 200,
    form: dict[str, str] | None = None,
) -> Response:
    context = {
        "tokens": tokens.list_tokens(session),
        "users": [u for u in users.list_users(session) if not u.disabled],
        "now": utcnow(),
        "error": error,
        "form": form or {},
        "max_days": tokens.MAX_DAYS,
    }
    return render(request, "tokens.html", context, block="token_list", status=status)


def _days(value: str) -> int | None:
    value = value.strip()
    if not value:
        return None
    if not value.isdigit():
        raise InvalidInput("the expiry is a whole number of days, or empty for never")
    return int(value)


@router.get("")
def list_tokens(request: Request, session: StoreSession) -> Response:
    return _page(request, session)


@router.post("")
def create_token(
    request: Request,
    runtime: RuntimeDep,
    session: StoreSession,
    actor: ActorDep,
    name: Annotated[str, Form(max_length=200)] = "",
    username: Annotated[str, Form(max_length=255)] = "",
    expires_in_days: Annotated[str, Form(max_length=10)] = "",
) -> Response:
    try:
        created = tokens.create(
            session,
            runtime.settings,
            actor,
            name=name,
            username=username or actor.name,
            expires_in_days=_days(expires_in_days),
        )
    except AdminError as exc:
        record_refusal(request, session, actor, exc)
        form = {"name": name, "username": username, "expires_in_days": expires_in_days}
        return _page(request, session, error=exc.message, status=exc.status, form=form)
    row = created.row
    context = {
        "title": "API token created",
        "subject": f"{row.name} (acts as {row.user.username}, role {row.user.role})",
        "secret": created.secret,
        "note": "Send it as 'Authorization: Bearer <token>' to /api/v1. "
        "Copy it now: it is not shown again, and only its hash is kept.",
        "back": "/tokens",
        "back_label": "Back to tokens",
    }
    return render(request, "secret.html", context)


@router.post("/{token_id}/revoke")
def revoke_token(
    request: Request, session: StoreSession, actor: ActorDep, token_id: int
) -> Response:
    row = tokens.revoke(session, actor, token_id)
    return redirect(request, "/tokens", message=f"Token {row.name!r} ({row.prefix}…) is revoked.")
