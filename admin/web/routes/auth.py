"""Signing in and out."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form
from starlette.requests import Request
from starlette.responses import Response

from admin import audit
from admin.auth import login, sessions
from admin.store.models import Source
from admin.web import principal as principals
from admin.web.deps import PASSWORD_FORM, OptionalPrincipal, PrincipalDep, RuntimeDep, StoreSession
from admin.web.render import redirect, render, safe_next

router = APIRouter(include_in_schema=False)


def _set_session_cookie(request: Request, response: Response, token: str, max_age: int) -> None:
    response.set_cookie(
        principals.cookie_name(request, principals.SESSION_COOKIE),
        token,
        max_age=max_age,
        path="/",
        httponly=True,
        samesite="lax",
        secure=principals.is_https(request),
    )


def _clear_session_cookie(request: Request, response: Response) -> None:
    response.delete_cookie(
        principals.cookie_name(request, principals.SESSION_COOKIE),
        path="/",
        httponly=True,
        samesite="lax",
        secure=principals.is_https(request),
    )


@router.get("/login")
def login_form(request: Request, principal: OptionalPrincipal, next: str = "/") -> Response:
    if principal is not None:
        return redirect(request, safe_next(next))
    return render(request, "login.html", {"next": safe_next(next)})


@router.post("/login")
def sign_in(
    request: Request,
    runtime: RuntimeDep,
    session: StoreSession,
    username: Annotated[str, Form(max_length=255)] = "",
    password: Annotated[str, Form(max_length=8192)] = "",
    next: Annotated[str, Form(max_length=2000)] = "/",
) -> Response:
    settings = runtime.settings
    attempt = login.sign_in(
        session, settings, username, password, client_addr=principals.client_addr(request)
    )
    if attempt.user is None:
        context = {"error": attempt.message, "username": username, "next": safe_next(next)}
        headers = {"Retry-After": str(attempt.retry_after)} if attempt.retry_after else None
        return render(request, "login.html", context, status=attempt.status, headers=headers)
    user = attempt.user
    # A new token at every sign-in; whatever session this browser had ends.
    old_token = request.cookies.get(principals.cookie_name(request, principals.SESSION_COOKIE))
    sessions.end(session, settings, old_token)
    started = sessions.start(
        session,
        settings,
        user,
        client_addr=principals.client_addr(request),
        user_agent=request.headers.get("user-agent"),
    )
    if user.must_change_password:
        response = redirect(
            request, PASSWORD_FORM, message="Choose a new password to continue.", level="info"
        )
    else:
        response = redirect(request, safe_next(next))
    _set_session_cookie(request, response, started.token, settings.session_max_hours * 3600)
    return response


@router.post("/logout")
def sign_out(
    request: Request,
    runtime: RuntimeDep,
    session: StoreSession,
    principal: PrincipalDep,
) -> Response:
    token = request.cookies.get(principals.cookie_name(request, principals.SESSION_COOKIE))
    sessions.end(session, runtime.settings, token)
    actor = audit.Actor(
        principal.user.username, principal.user.role, Source.WEB, principals.client_addr(request)
    )
    audit.record(session, audit.Logout(username=principal.user.username), actor)
    response = redirect(request, "/login", message="You are signed out.", level="info")
    _clear_session_cookie(request, response)
    return response
