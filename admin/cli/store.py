"""schema-admin store: the panel's own database."""

from __future__ import annotations

import argparse

from admin.cli.base import Commands, cli_actor, runtime
from admin.config import Settings
from admin.store import schema


def register(commands: Commands) -> None:
    parser = commands.add_parser(
        "store", help="the panel's own database", description="The panel's own database."
    )
    sub = parser.add_subparsers(title="commands", metavar="COMMAND", required=True)
    up = sub.add_parser(
        "upgrade",
        help="apply the store's schema revisions",
        description="Bring the store (ADMIN_DATABASE_URL) to its newest schema revision. "
        "Safe to run again; several processes may run it at once.",
    )
    up.set_defaults(handler=upgrade)
    st = sub.add_parser(
        "status",
        help="show the store's schema revision",
        description="Print the store's revision and the package's head; exit 3 when behind.",
    )
    st.set_defaults(handler=status)


def upgrade(args: argparse.Namespace, settings: Settings) -> int:
    with runtime(settings, upgrade_store=False) as rt:
        before, after = rt.upgrade_store(cli_actor())
    if before == after:
        print(f"store {settings.store_url_masked} is up to date at {after}")
    else:
        print(f"store {settings.store_url_masked} upgraded from {before or 'empty'} to {after}")
    return 0


def status(args: argparse.Namespace, settings: Settings) -> int:
    with runtime(settings, upgrade_store=False) as rt, rt.store_engine.connect() as connection:
        current = schema.current_revision(connection)
    head = schema.head_revision()
    print(f"store {settings.store_url_masked}: at {current or 'empty'}, head {head}")
    return 0 if current == head else 3
