"""The dashboard: which target, which environment, and (filled by the engine, jobs and
backups work) the migration state, the recent jobs and the last backup."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from admin.web.deps import CurrentUser
from admin.web.render import render

router = APIRouter(include_in_schema=False)


@router.get("/")
def dashboard(request: Request, user: CurrentUser) -> Response:
    return render(request, "dashboard.html")
