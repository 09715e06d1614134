"""The signed-in user's own account: changing their password."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form
from starlette.requests import Request
from starlette.responses import Response

from admin.auth import policy, users
from admin.errors import InvalidInput
from admin.store.models import User
from admin.web.deps import (
    PASSWORD_FORM,
    ActorDep,
    PrincipalDep,
    RuntimeDep,
    SignedInUser,
    StoreSession,
)
from admin.web.render import redirect, render

router = APIRouter(include_in_schema=False)
_MAX = 8192
# The policy's rules, shown beside the form (the server checks them, not the browser).
_RULES = {"rules": policy.RULES, "min_length": policy.MIN_LENGTH}


@router.get(PASSWORD_FORM)
def password_form(request: Request, user: SignedInUser) -> Response:
    context = {"forced": user.must_change_password, **_RULES}
    return render(request, "account_password.html", context)


@router.post(PASSWORD_FORM)
def change_password(
    request: Request,
    runtime: RuntimeDep,
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
        message = exc.message[:1].upper() + exc.message[1:] + "."
        context = {"forced": forced, "error": message, **_RULES}
        return render(request, "account_password.html", context, status=exc.status)
    # The one-time password of the first admin is spent: its file goes too.
    users.forget_initial_password(runtime.settings.var_dir, user.username)
    return redirect(request, "/", message="Your password has been changed.")
