"""schema-admin audit: the audit trail."""

from __future__ import annotations

import argparse

from admin import audit
from admin.cli.base import Commands, cli_actor, runtime
from admin.config import Settings


def register(commands: Commands) -> None:
    parser = commands.add_parser("audit", help="the audit trail", description="The audit trail.")
    sub = parser.add_subparsers(title="commands", metavar="COMMAND", required=True)
    verify = sub.add_parser(
        "verify",
        help="check the audit hash chain",
        description="Walk the audit hash chain. Exit 0 and print the head hash and the count "
        "when it is whole; exit 1 and name the first broken row otherwise. The check itself "
        "is recorded (audit-verified, with its result) after the walk.",
    )
    verify.set_defaults(handler=verify_chain)


def verify_chain(args: argparse.Namespace, settings: Settings) -> int:
    with runtime(settings) as rt:
        with rt.reads() as session:
            report = audit.verify(session)
        with rt.transaction() as session:
            audit.record(session, audit.AuditVerified.of(report), cli_actor())
    if report.ok:
        print(f"audit chain intact: {report.count} events, head {report.head}")
        return 0
    print(
        f"audit chain broken at event {report.broken_id}: {report.problem} "
        f"({report.count} events verified before it, last good hash {report.head})"
    )
    return 1
