"""schema-admin user: accounts of the panel."""

from __future__ import annotations

import argparse
import sys

from admin.auth import passwords, users
from admin.cli.base import Commands, cli_actor, runtime
from admin.config import Settings
from admin.store.models import Role

ROLES = ", ".join(r.value for r in Role)


def register(commands: Commands) -> None:
    parser = commands.add_parser(
        "user", help="manage the panel's users", description="Manage the panel's users."
    )
    sub = parser.add_subparsers(title="commands", metavar="COMMAND", required=True)

    add = sub.add_parser(
        "add",
        help="create a user",
        description="Create a user. Without --password-stdin a random password is printed; "
        "the user must change it at first sign-in.",
    )
    add.add_argument("username")
    add.add_argument("--role", default="viewer", help=f"one of {ROLES} (default viewer)")
    add.add_argument(
        "--password-stdin", action="store_true", help="read the password from standard input"
    )
    add.set_defaults(handler=add_user)

    role = sub.add_parser("set-role", help="change a user's role", description="Change a role.")
    role.add_argument("username")
    role.add_argument("role", help=ROLES)
    role.set_defaults(handler=set_role)

    disable = sub.add_parser(
        "disable",
        help="disable a user and end their sessions",
        description="Disable a user; their open sessions end at once.",
    )
    disable.add_argument("username")
    disable.set_defaults(handler=lambda a, s: _set_disabled(a, s, True))

    enable = sub.add_parser("enable", help="enable a disabled user", description="Enable a user.")
    enable.add_argument("username")
    enable.set_defaults(handler=lambda a, s: _set_disabled(a, s, False))

    reset = sub.add_parser(
        "reset-password",
        help="give a user a new one-time password",
        description="Set a new random password (printed) that must be changed at sign-in; "
        "the user's sessions end.",
    )
    reset.add_argument("username")
    reset.set_defaults(handler=reset_password)

    listing = sub.add_parser("list", help="list users", description="List the users.")
    listing.set_defaults(handler=list_users)


def _read_password() -> str:
    line = sys.stdin.readline()
    return line.rstrip("\r\n")


def add_user(args: argparse.Namespace, settings: Settings) -> int:
    role = users.parse_role(args.role)
    given = _read_password() if args.password_stdin else None
    password = given or passwords.random_password()
    with runtime(settings) as rt, rt.transaction() as session:
        user = users.create(
            session,
            cli_actor(),
            args.username,
            role,
            password,
            must_change_password=given is None,
        )
    print(f"user {user.username!r} created with role {user.role}")
    if given is None:
        print(f"one-time password: {password}")
    return 0


def set_role(args: argparse.Namespace, settings: Settings) -> int:
    role = users.parse_role(args.role)
    with runtime(settings) as rt, rt.transaction() as session:
        user = users.set_role(session, cli_actor(), args.username, role)
    print(f"user {user.username!r} now has role {user.role}")
    return 0


def _set_disabled(args: argparse.Namespace, settings: Settings, disabled: bool) -> int:
    with runtime(settings) as rt, rt.transaction() as session:
        user = users.set_disabled(session, cli_actor(), args.username, disabled)
    print(f"user {user.username!r} {'disabled' if disabled else 'enabled'}")
    return 0


def reset_password(args: argparse.Namespace, settings: Settings) -> int:
    with runtime(settings) as rt, rt.transaction() as session:
        user, password = users.reset_password(session, cli_actor(), args.username)
    print(f"new one-time password for {user.username!r}: {password}")
    return 0


def list_users(args: argparse.Namespace, settings: Settings) -> int:
    with runtime(settings) as rt, rt.sessions() as session:
        rows = users.list_users(session)
    for user in rows:
        flags = " (disabled)" if user.disabled else ""
        print(f"{user.username:<24} {user.role:<9}{flags}")
    return 0
