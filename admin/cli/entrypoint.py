"""schema-admin entrypoint: the container's command (wait, migrate as a job, serve)."""

from __future__ import annotations

import argparse

from admin import entrypoint, logs
from admin.cli.base import Commands
from admin.config import Settings


def register(commands: Commands) -> None:
    parser = commands.add_parser(
        "entrypoint",
        help="the container's start: wait for the databases, migrate, serve",
        description="What the image runs. Waits for the target (DATABASE_URL) and the store "
        "(ADMIN_DATABASE_URL) to answer, for at most WAIT_TIMEOUT seconds; applies the "
        "store's revisions; with INIT_DB=true creates missing databases; applies the "
        "target's pending revisions as an audited job (source entrypoint) unless "
        "MIGRATE_ON_START=false; then replaces itself with `schema-admin serve`. Several "
        "containers may start at once: one migrates, the others wait for it. A failed "
        "migration stops the start (exit 1) unless START_ON_MIGRATION_FAILURE=true, which "
        "serves the panel in a degraded state.",
        epilog="exit codes: 1 a database did not answer or the migration failed, "
        "2 a bad setting, 143 stopped by a signal before serving.",
    )
    parser.add_argument(
        "--no-serve",
        action="store_true",
        help="stop after migrating (an init container or a release step); a failed "
        "migration then always exits 1",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    logs.configure(settings)
    entrypoint.prepare(settings, serving=not args.no_serve)
    if args.no_serve:
        return 0
    entrypoint.exec_server()
    return 0  # not reached: exec_server replaces the process
