"""schema-admin: the command line (the seed's Makefile targets and more).

Every command reads settings through admin.config, prints errors on one line and exits
non-zero: 2 for a bad setting or usage, 1 for any other failure.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from admin import __version__
from admin import audit as audit_trail  # not `audit`: that name is the submodule cli.audit
from admin.cli import audit as audit_cli
from admin.cli import backups as backups_cli
from admin.cli import database as database_cli
from admin.cli import entrypoint as entrypoint_cli
from admin.cli import history as history_cli
from admin.cli import lint as lint_cli
from admin.cli import migrate as migrate_cli
from admin.cli import revision as revision_cli
from admin.cli import serve as serve_cli
from admin.cli import sql as sql_cli
from admin.cli import status as status_cli
from admin.cli import store as store_cli
from admin.cli import users as users_cli
from admin.cli.base import Commands, Handler, cli_actor, runtime
from admin.config import Settings, load_settings
from admin.errors import AdminError

REGISTRARS: list[Callable[[Commands], None]] = [
    serve_cli.register,
    store_cli.register,
    users_cli.register,
    audit_cli.register,
    status_cli.register,
    migrate_cli.register,
    history_cli.register,
    sql_cli.register,
    lint_cli.register,
    revision_cli.register,
    database_cli.register,
    entrypoint_cli.register,
    backups_cli.register,
]


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        """Usage errors: one line and exit 2, like a bad setting."""
        self.exit(2, f"{self.prog}: {message} (see --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="schema-admin",
        description="Web panel, CLI and container entrypoint for the Alembic migrations "
        "of a PostgreSQL database.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands: Commands = parser.add_subparsers(
        title="commands", metavar="COMMAND", parser_class=_Parser
    )
    for register in REGISTRARS:
        register(commands)
    return parser


def audit_refusal(settings: Settings, argv: Sequence[str], exc: AdminError) -> None:
    """A refused command (403, 409) is audited like a refused request, unless the service
    that refused it recorded its own event (``exc.audited``)."""
    if exc.status not in (403, 409) or exc.audited:
        return
    command = " ".join(["schema-admin", *argv])
    event = audit_trail.AccessDenied(
        method="CLI", path=command[:400], status=exc.status, reason=exc.message[:500]
    )
    try:
        with runtime(settings) as rt, rt.transaction() as session:
            audit_trail.record(session, event, cli_actor())
    except AdminError as unrecorded:  # the store may be what failed; the error still prints
        print(f"schema-admin: the refusal could not be audited: {unrecorded}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Handler | None = getattr(args, "handler", None)
    if handler is None:
        parser.print_help(sys.stderr)
        return 2
    settings: Settings | None = None
    try:
        settings = load_settings()
        return handler(args, settings)
    except AdminError as exc:
        if settings is not None:
            audit_refusal(settings, sys.argv[1:] if argv is None else argv, exc)
        print(f"schema-admin: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("schema-admin: interrupted", file=sys.stderr)
        return 130
