"""Typed dependencies for routes: the runtime, a store session, the caller, role checks.

    @router.post("/things", dependencies=[Depends(require_role(Role.OPERATOR))])
    def add_thing(request: Request, session: StoreSession, actor: ActorDep) -> Response: ...

``CurrentUser`` is a signed-in user who may use the panel (401 → sign-in page for pages,
JSON 401 under /api; a user who must change their password is sent to that form first).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Annotated

from fastapi import Depends
from sqlalchemy.orm import Session
from starlette.requests import Request

from admin import audit
from admin.errors import NotAuthenticated, PermissionDenied
from admin.runtime import Runtime
from admin.store.models import Role, User
from admin.web import principal as principals
from admin.web.errors import Redirect

PASSWORD_FORM = "/account/password"


def get_runtime(request: Request) -> Runtime:
    return principals.runtime_of(request)


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


def get_principal(request: Request) -> principals.Principal | None:
    return principals.resolve(request)


OptionalPrincipal = Annotated[principals.Principal | None, Depends(get_principal)]


def store_session(runtime: RuntimeDep, _caller: OptionalPrincipal) -> Iterator[Session]:
    """One transaction per request: committed when the route returns, rolled back if it raises.

    It ends before the response is sent (scope="function"), so a redirect never arrives
    before its change is committed, and a streaming response does not hold it open.
    The caller is resolved first, in its own short transaction: on SQLite a second
    transaction opened while this one writes would wait for it.
    """
    with runtime.transaction() as session:
        yield session


StoreSession = Annotated[Session, Depends(store_session, scope="function")]


def signed_in(principal: OptionalPrincipal) -> principals.Principal:
    if principal is None:
        raise NotAuthenticated("Sign in to use the panel.")
    return principal


PrincipalDep = Annotated[principals.Principal, Depends(signed_in)]


def signed_in_user(principal: PrincipalDep) -> User:
    """Any signed-in user, even one who still has to change their password."""
    return principal.user


SignedInUser = Annotated[User, Depends(signed_in_user)]


def current_user(request: Request, principal: PrincipalDep) -> User:
    user = principal.user
    if user.must_change_password:
        if principals.is_api(request):
            raise PermissionDenied(
                f"{user.username!r} must choose a new password in the panel first."
            )
        raise Redirect(PASSWORD_FORM)
    return user


CurrentUser = Annotated[User, Depends(current_user)]


def require_role(role: Role) -> Callable[..., User]:
    """A dependency that lets ``role`` and the roles above it through, and refuses others (403)."""

    def dependency(user: CurrentUser) -> User:
        if not user.role_enum.at_least(role):
            raise PermissionDenied(
                f"This needs the {role.value} role or higher; you are signed in as "
                f"{user.username!r} with the {user.role} role. Ask an admin if you need more.",
                title="Not allowed for your role",
            )
        return user

    dependency.__name__ = f"require_{role.value}"
    return dependency


ReviewerUser = Annotated[User, Depends(require_role(Role.REVIEWER))]
OperatorUser = Annotated[User, Depends(require_role(Role.OPERATOR))]
AdminUser = Annotated[User, Depends(require_role(Role.ADMIN))]


def current_actor(request: Request, principal: PrincipalDep) -> audit.Actor:
    """The caller as the audit trail names them: user, role, web or api, client address."""
    return audit.Actor(
        name=principal.user.username,
        role=principal.user.role,
        source=principal.via,
        client_addr=principals.client_addr(request),
    )


ActorDep = Annotated[audit.Actor, Depends(current_actor)]
