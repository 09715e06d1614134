"""The FastAPI application factory: everything is built inside the lifespan."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI
from sqlalchemy.exc import IntegrityError
from starlette.types import ASGIApp

from admin import __version__, audit, logs, migrations
from admin.analysis.background import ANALYZER
from admin.auth import users
from admin.backups import actions as backup_actions
from admin.config import Settings
from admin.errors import AdminError, Conflict
from admin.jobs import LogHub, Runner
from admin.migrations import Project
from admin.migrations.watcher import Watcher, unwatch, watch
from admin.runtime import Runtime
from admin.store.models import Source
from admin.web import assets, errors, openapi, refusals, streams
from admin.web.inputs import refuse_control_characters
from admin.web.render import make_templates
from admin.web.routes import account, api, api_jobs, auth, dashboard, jobs, ops, tokens
from admin.web.routes import api_reading as reading_api
from admin.web.routes import audit as audit_routes
from admin.web.routes import backups as backups_routes
from admin.web.routes import preview as preview_routes
from admin.web.routes import rehearsals as rehearsals_routes
from admin.web.routes import revisions as revisions_routes
from admin.web.routes import safety as safety_routes
from admin.web.routes import users as users_routes
from admin.web.security import BodyLimitMiddleware, SecurityHeadersMiddleware, guard_request

log = logging.getLogger(__name__)

# Forms here are small; anything near this is a mistake or an attack (413).
MAX_REQUEST_BYTES = 1024 * 1024
# Each module owns one noun; a new room adds its module here.
ROUTERS = (
    *(auth, account, dashboard, users_routes, tokens, api, ops, jobs, api_jobs, audit_routes),
    # Reading: history, revision pages, SQL preview, and their JSON API.
    *(revisions_routes, preview_routes, reading_api),
    backups_routes,
    safety_routes,
    rehearsals_routes,
)


def _announce_first_admin(runtime: Runtime) -> None:
    try:
        with runtime.transaction() as session:
            initial = users.ensure_first_admin(session, audit.Actor("system", None, Source.WEB))
    except (Conflict, IntegrityError):
        # Several panels started at once on an empty store: another one created it.
        return
    if initial is None:
        return
    path = users.write_initial_password(runtime.settings.var_dir, initial)
    print(
        f"\n  First admin created: user {initial.username!r}, one-time password "
        f"{initial.password}\n  (also in {path}; you will be asked for a new one at sign-in)\n",
        file=sys.stdout,
        flush=True,
    )


class PanelApp(FastAPI):
    """The app, with the slow-client guard outside everything (streams.py): it needs the
    server's own ``send`` to abort a connection, before any middleware wraps it."""

    def build_middleware_stack(self) -> ASGIApp:
        settings: Settings = self.state.settings
        state = self.state
        guard = streams.SlowClientGuard(
            super().build_middleware_stack(),
            timeout=lambda: streams.send_timeout(state, settings.sse_send_timeout),
        )
        state.slow_client_guard = guard
        return guard


def create_app(settings: Settings) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        runtime = Runtime.open(settings)
        runner: Runner | None = None
        watcher: Watcher | None = None
        project: Project | None = None
        try:
            runtime.upgrade_store(audit.Actor("system", None, Source.WEB))
            _announce_first_admin(runtime)
            app.state.runtime = runtime
            # Jobs: supervisors in this process, live logs fanned out from the store.
            hub = LogHub(runtime)
            hub.bind(asyncio.get_running_loop())
            # Job lines also reach the application log (the container's log), with job_id.
            runner = Runner(runtime, publish=logs.job_lines_to_log(hub.publish))
            runner.start()
            # After recovery: partial files of killed backups, an unwritable BACKUP_DIR (logged).
            backup_actions.prepare(runtime, audit.Actor("system", None, Source.WEB))
            app.state.hub = hub
            app.state.runner = runner
            # Previews render in child processes: keep one ready once the first is asked for.
            with contextlib.suppress(AdminError):
                project = migrations.open_project(settings.alembic_config, settings.cache_dir)
                migrations.renderer_for(project).keep_ready()
                # The revision files are watched in the background: no request re-checks them.
                watcher = watch(project)
            yield
        finally:
            if watcher is not None:
                await asyncio.to_thread(unwatch, watcher)
            if runner is not None:
                await asyncio.to_thread(runner.stop)
            # Renders under way and the background analysis stop with the panel (with the
            # last panel of this process on the project).
            if project is not None and migrations.release_renderer(project):
                ANALYZER.forget(project.config_path)
            await asyncio.to_thread(refusals.flush, getattr(app.state, "refusals", None), runtime)
            runtime.close()

    app = PanelApp(
        title="APEX Schema Admin",
        version=__version__,
        lifespan=lifespan,
        # Swagger UI would load from a CDN and run inline script; the schema is enough.
        docs_url=None,
        redoc_url=None,
        openapi_url="/api/v1/openapi.json",
        # Every request: no control characters anywhere (inputs.py); every unsafe one: same
        # origin, and the session's CSRF token (security.py).
        dependencies=[Depends(refuse_control_characters), Depends(guard_request)],
    )
    app.state.settings = settings
    app.state.templates = make_templates()
    errors.install(app)
    # Added last = outermost: the headers go on every answer, the apology's too.
    app.add_middleware(BodyLimitMiddleware, max_bytes=MAX_REQUEST_BYTES)
    app.add_middleware(errors.CatchAllMiddleware)
    app.add_middleware(SecurityHeadersMiddleware)
    app.mount(
        assets.static_mount_path(),
        assets.VersionedStaticFiles(directory=assets.static_dir()),
        name="static",
    )
    for module in ROUTERS:
        app.include_router(module.router)
    openapi.install(app)

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        """The process is alive (no database is touched)."""
        return {"status": "ok"}

    return app
