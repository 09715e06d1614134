"""schema-admin: the command line (the seed's Makefile targets and more).

Every command reads settings through admin.config, prints errors on one line and exits
non-zero: 2 for a bad setting or usage, 1 for any other failure.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from admin import __version__, controls
from admin.cli.base import Commands, Handler, cli_actor, runtime
from admin.config import Settings, load_settings
from admin.errors import AdminError
from admin.migrations.database import configure as configure_connections

# Each command's module, imported only when that command runs (or for --help): a read
# command such as `status` then loads the engine, not the web stack or the store.
COMMANDS: dict[str, str] = {
    "serve": "admin.cli.serve",
    "store": "admin.cli.store",
    "user": "admin.cli.users",
    "audit": "admin.cli.audit",
    "status": "admin.cli.status",
    "migrate": "admin.cli.migrate",
    "downgrade": "admin.cli.migrate",
    "stamp": "admin.cli.migrate",
    "history": "admin.cli.history",
    "sql": "admin.cli.sql",
    "lint": "admin.cli.lint",
    "create-migration": "admin.cli.revision",
    "init-db": "admin.cli.database",
    "reset": "admin.cli.database",
    "entrypoint": "admin.cli.entrypoint",
    "backup": "admin.cli.backups",
    "backups": "admin.cli.backups",
    "restore": "admin.cli.backups",
    "rehearse": "admin.cli.rehearse",
}


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        """Usage errors: one line and exit 2, like a bad setting."""
        self.exit(2, f"{self.prog}: {message} (see --help)\n")


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The parser; with ``only`` (a command's name) just that command's module is loaded."""
    parser = _Parser(
        prog="schema-admin",
        description="Web panel, CLI and container entrypoint for the Alembic migrations "
        "of a PostgreSQL database.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands: Commands = parser.add_subparsers(
        title="commands", metavar="COMMAND", parser_class=_Parser
    )
    modules = [COMMANDS[only]] if only in COMMANDS else list(dict.fromkeys(COMMANDS.values()))
    for name in modules:
        importlib.import_module(name).register(commands)
    return parser


def _command(argv: Sequence[str]) -> str | None:
    """The command named on the command line (its first argument that is not an option)."""
    for arg in argv:
        if not arg.startswith("-"):
            return arg
    return None


def audit_refusal(settings: Settings, argv: Sequence[str], exc: AdminError) -> None:
    """A refused command (403, 409) is audited like a refused request, unless the service
    that refused it recorded its own event (``exc.audited``)."""
    if exc.status not in (403, 409) or exc.audited:
        return
    from admin import audit as audit_trail

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
    arguments = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(_command(arguments))
    args = parser.parse_args(arguments)
    handler: Handler | None = getattr(args, "handler", None)
    if handler is None:
        parser.print_help(sys.stderr)
        return 2
    settings: Settings | None = None
    try:
        settings = load_settings()
        configure_connections(settings)
        return handler(args, settings)
    except AdminError as exc:
        if settings is not None:
            audit_refusal(settings, sys.argv[1:] if argv is None else argv, exc)
        print(f"schema-admin: {controls.neutralise(str(exc))}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("schema-admin: interrupted", file=sys.stderr)
        return 130
