"""schema-admin rehearse TARGET: the upgrade to TARGET on a scratch copy, as a job.

Like ``migrate`` it runs in the foreground (log streamed here, recorded in the panel,
audited, refused while another job runs on the target); the target itself is not touched.
At the end the report's summary is printed, with the report's address in the panel.
"""

from __future__ import annotations

import argparse

from admin import jobs
from admin.cli import target
from admin.cli.base import Commands, cli_actor, runtime
from admin.cli.migrate import EXIT, QUIET_LEVELS, outcome
from admin.config import Settings
from admin.rehearsal import actions, records


def register(commands: Commands) -> None:
    parser = commands.add_parser(
        "rehearse",
        help="rehearse an upgrade on a scratch copy of the target's data, as a job",
        description="Restore the newest verified backup of the target taken at its current "
        "revision (taking one first when there is none) into a scratch database, run the "
        "upgrade to TARGET there as Apply would, measured (durations, rows, locks and how "
        "long ACCESS EXCLUSIVE is held, rewrites, indexes built, WAL, size), then downgrade "
        "back, compare the schema, upgrade again, and drop the scratch database. The target "
        "is not touched.",
        epilog=EXIT + ".",
    )
    parser.add_argument("target", nargs="?", default="heads", help="revision (default heads)")
    parser.add_argument("--verbose", action="store_true", help="also show every SQL statement")
    parser.set_defaults(handler=rehearse)


def rehearse(args: argparse.Namespace, settings: Settings) -> int:
    with runtime(settings) as rt:
        job = jobs.run_in_foreground(
            rt,
            actions.rehearsal_request(args.target),
            cli_actor(),
            echo=target.echo,
            echo_levels=None if args.verbose else QUIET_LEVELS,
        )
        with rt.reads() as session:
            row = records.of_job(session, job.id)
        if row is not None:
            summary = (row.report or {}).get("summary") or {}
            target.note(
                f"rehearsal {row.id} {row.status}: {summary.get('headline') or row.error or ''}"
                f" (report: /rehearsals/{row.id})"
            )
            for warning in summary.get("warnings") or []:
                target.note(f"warning: {warning}")
            for difference in ((row.report or {}).get("round_trip") or {}).get("differences") or []:
                target.note(f"round trip: {difference}")
    return outcome(job)
