"""The FastAPI application factory: everything is built inside the lifespan."""

from __future__ import annotations

import logging
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from admin import __version__, audit
from admin.auth import users
from admin.config import Settings
from admin.runtime import Runtime
from admin.store.models import Source

log = logging.getLogger(__name__)


def _announce_first_admin(runtime: Runtime) -> None:
    with runtime.transaction() as session:
        initial = users.ensure_first_admin(session, audit.Actor("system", None, Source.WEB))
    if initial is None:
        return
    path = users.write_initial_password(runtime.settings.var_dir, initial)
    print(
        f"\n  First admin created: user {initial.username!r}, one-time password "
        f"{initial.password}\n  (also in {path}; you will be asked for a new one at sign-in)\n",
        file=sys.stdout,
        flush=True,
    )


def create_app(settings: Settings) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        runtime = Runtime.open(settings)
        try:
            runtime.upgrade_store(audit.Actor("system", None, Source.WEB))
            _announce_first_admin(runtime)
            app.state.runtime = runtime
            yield
        finally:
            runtime.close()

    app = FastAPI(
        title="APEX Schema Admin",
        version=__version__,
        lifespan=lifespan,
        docs_url="/api/docs",
        redoc_url=None,
        openapi_url="/api/v1/openapi.json",
    )
    app.state.settings = settings

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        """The process is alive (no database is touched)."""
        return {"status": "ok"}

    return app
