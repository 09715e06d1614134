"""schema-admin serve: run the web panel."""

from __future__ import annotations

import argparse
import socket

from admin import audit, demo, logs
from admin.cli.base import Commands, cli_actor
from admin.config import Settings
from admin.errors import Unavailable
from admin.migrations.database import is_postgresql
from admin.runtime import Runtime
from admin.store.db import missing_store
from admin.store.models import Source


def register(commands: Commands) -> None:
    parser = commands.add_parser(
        "serve",
        help="run the web panel",
        description="Serve the panel (HOST and PORT by default). Waits up to WAIT_TIMEOUT "
        "for the store's server to answer; the store's schema is upgraded at start; on a "
        "store with no users a first admin is created and its one-time password printed. "
        "On the embedded default (DATABASE_URL not set, development) a missing demo target "
        "is created first, at an early revision of the CRM project with a few rows, so "
        "there are revisions to apply.",
    )
    parser.add_argument("--host", help="address to listen on (default: HOST)")
    parser.add_argument("--port", type=int, help="port to listen on (default: PORT)")
    parser.set_defaults(handler=serve)


# Seconds uvicorn waits for responses still open after the live logs have ended (a
# download) before it cancels them; then the app's shutdown cancels the running jobs.
RESPONSES_GRACE = 3


def serve(args: argparse.Namespace, settings: Settings) -> int:
    # Imported here: the web stack is the slowest import, and only this command needs it.
    import uvicorn

    from admin.web.app import create_app
    from admin.web.livelog import begin_shutdown

    class Server(uvicorn.Server):
        """uvicorn waits for open responses before the app's shutdown (which cancels the
        jobs) runs; live logs never end by themselves, so they are ended first."""

        async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
            begin_shutdown(app)
            await super().shutdown(sockets)

    host = args.host or settings.host
    port = args.port or settings.port
    logs.configure(settings)
    prepare_store(settings)
    demo.create_for_serve(settings, cli_actor())
    shown = "localhost" if host in ("127.0.0.1", "0.0.0.0", "::") else host
    print(
        f"APEX Schema Admin on http://{shown}:{port}/  "
        f"(target {settings.target_url_masked}, store {settings.store_url_masked}, "
        f"environment {settings.environment.value})",
        flush=True,
    )
    app = create_app(settings)
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        proxy_headers=True,
        forwarded_allow_ips=settings.forwarded_allow_ips,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=RESPONSES_GRACE,
    )
    Server(config).run()
    return 0


def prepare_store(settings: Settings) -> None:
    """Wait for the store like the entrypoint (WAIT_TIMEOUT), then bring its schema up to date.

    Every way this fails is an AdminError: one line and exit 1, before the server starts
    (the server's own start would log a traceback instead).
    """
    from admin import entrypoint

    url = settings.admin_database_url
    exists = entrypoint.wait_for_database(url, "store", entrypoint.Deadline(settings.wait_timeout))
    # A SQLite store is the panel's own file: created as it is opened.
    if not exists and is_postgresql(url):
        raise Unavailable(missing_store(url))
    rt = Runtime.open(settings)
    try:
        rt.upgrade_store(audit.Actor("system", None, Source.WEB))
    finally:
        rt.close()
