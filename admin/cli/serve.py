"""schema-admin serve: run the web panel."""

from __future__ import annotations

import argparse

from admin import demo, logs
from admin.cli.base import Commands, cli_actor
from admin.config import Settings


def register(commands: Commands) -> None:
    parser = commands.add_parser(
        "serve",
        help="run the web panel",
        description="Serve the panel (HOST and PORT by default). The store's schema is "
        "upgraded at start; on a store with no users a first admin is created and its "
        "one-time password printed. On the embedded default (DATABASE_URL not set, "
        "development) a missing demo target is created first, at an early revision of the "
        "CRM project with a few rows, so there are revisions to apply.",
    )
    parser.add_argument("--host", help="address to listen on (default: HOST)")
    parser.add_argument("--port", type=int, help="port to listen on (default: PORT)")
    parser.set_defaults(handler=serve)


def serve(args: argparse.Namespace, settings: Settings) -> int:
    # Imported here: the web stack is the slowest import, and only this command needs it.
    import uvicorn

    from admin.web.app import create_app

    host = args.host or settings.host
    port = args.port or settings.port
    demo.create_for_serve(settings, cli_actor())
    logs.configure(settings)
    shown = "localhost" if host in ("127.0.0.1", "0.0.0.0", "::") else host
    print(
        f"APEX Schema Admin on http://{shown}:{port}/  "
        f"(target {settings.target_url_masked}, store {settings.store_url_masked}, "
        f"environment {settings.environment.value})",
        flush=True,
    )
    uvicorn.run(
        create_app(settings),
        host=host,
        port=port,
        proxy_headers=True,
        forwarded_allow_ips=settings.forwarded_allow_ips,
        log_config=None,
        access_log=False,
    )
    return 0
