"""schema-admin status: where the target database stands against the revision files."""

from __future__ import annotations

import argparse

from admin import migrations
from admin.cli import target
from admin.cli.base import Commands
from admin.config import Settings
from admin.migrations import State

EXIT_CODES = "exit codes: 0 up to date, 3 revisions pending (or an empty database), 1 error"


def register(commands: Commands) -> None:
    parser = commands.add_parser(
        "status",
        help="current revision against the head, with the pending list",
        description="Show where the target database (DATABASE_URL) stands against the "
        "revision files (ALEMBIC_CONFIG): its current revision, the head(s), what that means, "
        "and the pending revisions in the order they will run. Reads only.",
        epilog=EXIT_CODES + " (database missing or unreachable, or at a revision no file has).",
    )
    parser.set_defaults(handler=show)


def show(args: argparse.Namespace, settings: Settings) -> int:
    project = target.project(settings)
    status = migrations.read_status(project, settings.database_url)
    if not status.reachable:
        target.note(status.message)
        return status.exit_code
    graph = project.graph()
    lines = [
        f"target:  {status.target}",
        f"current: {target.shown(status.current, graph)}",
        f"head:    {target.shown(status.heads, graph) if status.heads else 'none (no revisions)'}",
        f"state:   {status.state.value}: {status.message}",
    ]
    if status.pending:
        lines.append(f"pending ({len(status.pending)}, in the order they will run):")
        lines.extend(f"  {rev.id}  {rev.message}" for rev in status.pending)
    if status.state is State.UNKNOWN_REVISION:
        target.note(status.message)
    target.write("\n".join(lines) + "\n")
    return status.exit_code
