"""The JSON API under /api/v1 (session cookie or ``Authorization: Bearer <token>``)."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter
from pydantic import BaseModel

from admin.web.deps import CurrentUser, PrincipalDep

router = APIRouter(prefix="/api/v1", tags=["api"])


class Me(BaseModel):
    """The caller."""

    username: str
    role: Literal["viewer", "reviewer", "operator", "admin"]
    authenticated_by: Literal["session", "token"]
    token_id: int | None = None


@router.get("/me", response_model=Me, summary="Who am I")
def me(user: CurrentUser, principal: PrincipalDep) -> Me:
    """The user the request is authenticated as, and how."""
    return Me(
        username=user.username,
        role=user.role,  # type: ignore[arg-type]
        authenticated_by="token" if principal.token_id is not None else "session",
        token_id=principal.token_id,
    )
