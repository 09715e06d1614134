"""schema-admin init-db / reset: create the target database, or take it back to base."""

from __future__ import annotations

import argparse

from admin import audit, migrations
from admin.cli import target
from admin.cli.base import Commands, cli_actor, runtime
from admin.cli.migrate import EXIT, announce, plan_for, run_job
from admin.config import Settings
from admin.errors import InvalidInput, PermissionDenied
from admin.migrations import Direction
from admin.store.models import JobKind


def register(commands: Commands) -> None:
    init = commands.add_parser(
        "init-db",
        help="create the target database if it is missing, then migrate it to head",
        description='The fix for "database does not exist": create the target database '
        "(DATABASE_URL; on PostgreSQL through the server's `postgres` database, owned by the "
        "URL's user) when it is missing, then upgrade it to head as a job (lock, log, audit). "
        "Safe to run again.",
        epilog=EXIT + ".",
    )
    init.set_defaults(handler=init_db)

    reset = commands.add_parser(
        "reset",
        help="downgrade the target database to base (DANGEROUS), as a job",
        description="Revert every revision of the target database (downgrade to base): "
        "every table the migrations created is dropped, with its data. Refused when "
        "ENVIRONMENT=production; elsewhere it needs --yes. Runs as a job (lock, log, audit).",
        epilog=EXIT + ".",
    )
    reset.add_argument(
        "--yes", action="store_true", help="confirm: drop everything the migrations created"
    )
    reset.set_defaults(handler=reset_to_base)


def init_db(args: argparse.Namespace, settings: Settings) -> int:
    url = settings.database_url
    if migrations.create_database(url):
        with runtime(settings) as rt, rt.transaction() as session:
            created = audit.DatabaseCreated(
                name=migrations.database_name(url), url=migrations.masked(url)
            )
            audit.record(session, created, cli_actor())
        print(f"created the database {migrations.masked(url)}", flush=True)
    else:
        print(f"the database {migrations.masked(url)} exists", flush=True)
    plan = plan_for(settings, Direction.UPGRADE, "heads")
    if plan.is_empty:
        print(f"it is at the head ({target.shown(plan.current)}): nothing to migrate")
        return 0
    announce(plan)
    return run_job(settings, JobKind.UPGRADE, "heads", plan)


def reset_to_base(args: argparse.Namespace, settings: Settings) -> int:
    url = settings.database_url
    if settings.is_production:
        error = PermissionDenied(
            f"reset refuses to run in production: it would drop every table of "
            f"{migrations.masked(url)}; downgrade step by step (schema-admin downgrade -1) "
            "after a backup instead"
        )
        with runtime(settings) as rt, rt.transaction() as session:
            audit.record(
                session,
                audit.JobRefused(
                    kind=JobKind.DOWNGRADE.value, target_revision="base", reason=str(error)
                ),
                cli_actor(),
            )
        error.audited = True
        raise error
    plan = plan_for(settings, Direction.DOWNGRADE, "base")
    if plan.is_empty:
        print(f"nothing to reset: {migrations.masked(url)} is at base")
        return 0
    if not args.yes:
        raise InvalidInput(
            f"reset would revert {len(plan.steps)} revision(s) of {migrations.masked(url)} and "
            "drop what they created, data included: run again with --yes to confirm"
        )
    announce(plan)
    return run_job(settings, JobKind.DOWNGRADE, "base", plan)
