"""The signed-in user's own account: changing their password."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form
from starlette.requests import Request
from starlette.responses import Response

from admin.auth import users
from admin.errors import InvalidInput
from admin.store.models import User
from admin.web.deps import PASSWORD_FORM, ActorDep, PrincipalDep, SignedInUser, StoreSession
from admin.web.render import redirect, render

router = APIRouter(include_in_schema=False)
_MAX = 8192


@router.get(PASSWORD_FORM)
def password_form(request: Request, user: SignedInUser) -> Response:
    return render(request, "account_password.html", {"forced": user.must_change_password})


@router.post(PASSWORD_FORM)
def change_password(
    request: Request,
    session: StoreSession,
    principal: PrincipalDep,
    actor: ActorDep,
    current_password: Annotated[str, Form(max_length=_MAX)] = "",
    new_password: Annotated[str, Form(max_length=_MAX)] = "",
    confirm_password: Annotated[str, Form(max_length=_MAX)] = "",
) -> Response:
    user = session.get(User, principal.user.id)
    assert user is not None  # the session was resolved for this user a moment ago
    forced = user.must_change_password
    try:
        if new_password != confirm_password:
            raise InvalidInput("the new password and its confirmation differ")
        users.change_own_password(
            session,
            actor,
            user,
            current_password,
            new_password,
            keep_session_id=principal.session_id,
        )
    except InvalidInput as exc:
        context = {"forced": forced, "error": exc.message[:1].upper() + exc.message[1:] + "."}
        return render(request, "account_password.html", context, status=exc.status)
    return redirect(request, "/", message="Your password has been changed.")
