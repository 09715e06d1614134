"""schema-admin sql: the SQL an upgrade or a downgrade will run (Alembic's offline mode)."""

from __future__ import annotations

import argparse

from admin import migrations
from admin.cli import target
from admin.cli.base import Commands
from admin.config import Settings
from admin.errors import Unavailable
from admin.migrations import Direction


def register(commands: Commands) -> None:
    parser = commands.add_parser(
        "sql",
        help="print the SQL an upgrade or downgrade will run, without running it",
        description="Render the SQL of an upgrade or a downgrade in Alembic's offline mode "
        "(what `alembic upgrade A:B --sql` prints) for the target's dialect, to stdout. "
        "The run starts where the database stands, or at --from (then no database is needed). "
        "A step that cannot be rendered offline (it reads the database in Python) is named "
        "on stderr and the exit code is 1.",
    )
    parser.add_argument("direction", choices=[d.value for d in Direction])
    parser.add_argument(
        "target",
        help="head, heads, base, a revision id or unique prefix, branch@head, +N / -N",
    )
    parser.add_argument(
        "--from",
        dest="start",
        metavar="REV",
        help="start here instead of where the database stands: base, head, heads, or "
        "revision id(s) separated by commas",
    )
    parser.set_defaults(handler=render)


def _current(project: migrations.Project, url: str) -> tuple[str, ...]:
    try:
        _, current = migrations.read_current(project, url)
    except Unavailable as exc:
        # TargetMissing too: keep its class (and exit code), add the way around it.
        raise type(exc)(f"{exc}; or give --from REV to render without a database") from exc
    return current


def render(args: argparse.Namespace, settings: Settings) -> int:
    project = target.project(settings)
    url = settings.database_url
    direction = Direction(args.direction)
    migrations.check_target(args.target)
    if args.start is not None:
        current = project.graph().resolve(args.start)
    else:
        current = _current(project, url)
    plan = migrations.make_plan(project, direction, args.target, current)
    if plan.is_empty:
        target.note(
            f"nothing to {direction.value}: from {target.shown(current)} to {args.target} "
            "no revision runs"
        )
        return 0
    script = migrations.render(project, plan, url, target.dialect(url))
    target.write(script.text, data=True)
    for failed in script.errors:
        target.note(f"{failed.step.label} ({failed.step.revision}): {failed.error}")
    return 1 if script.errors else 0
