"""schema-admin migrate / downgrade / stamp: changes run as jobs, in the foreground.

The command records a job (source ``cli``, the OS user) in the store, a worker takes the
target's migration lock and runs it, and the job's log streams to the terminal: the run
appears in the panel and the audit trail like one started from the browser. The exit code
is the job's outcome: 0 succeeded, 1 failed or refused, 130 cancelled (Ctrl-C).
"""

from __future__ import annotations

import argparse

from admin import jobs, migrations
from admin.cli import safety, target
from admin.cli.base import Commands, cli_actor, runtime
from admin.config import Settings
from admin.jobs import queue as job_queue
from admin.migrations import Direction
from admin.store.models import Job, JobKind, JobStatus

TARGETS = "head, heads, a revision id or unique prefix, branch@head, or a relative step (+N, -N)"
EXIT = "exit codes: 0 done (or nothing to do), 1 failed or refused, 130 cancelled"
# What the terminal shows by default; --verbose adds every SQL statement (always in the log).
QUIET_LEVELS = frozenset({"info", "step", "warning", "error"})
_EXIT_CODES = {JobStatus.SUCCEEDED: 0, JobStatus.CANCELLED: 130}


def register(commands: Commands) -> None:
    up = commands.add_parser(
        "migrate",
        help="apply pending revisions (upgrade), as a job with its log streamed here",
        description="Upgrade the target database (DATABASE_URL) to TARGET (default head), "
        "like `alembic upgrade head`, as a job: it takes the migration lock, runs one "
        "transaction per revision, streams its log here, and is recorded in the panel and the "
        "audit trail. Another run on the same database makes it fail at once, naming the "
        "running job or the lock holder.",
        epilog=EXIT + ".",
    )
    up.add_argument("target", nargs="?", default="head", help=f"{TARGETS} (default head)")
    up.add_argument(
        "--confirm",
        metavar="WHAT",
        help="an upgrade that drops data or cannot be undone: what it drops, as printed "
        "(required in production)",
    )
    _verbose(up)
    up.set_defaults(handler=upgrade)

    down = commands.add_parser(
        "downgrade",
        help="revert revisions down to TARGET, as a job",
        description="Downgrade the target database to TARGET, like `alembic downgrade -1`, "
        "as a job (lock, log, audit). Check the SQL first with `schema-admin sql downgrade "
        "TARGET`; a revision whose downgrade cannot be reversed stops the run there.",
        epilog=EXIT + ".",
    )
    down.add_argument("target", help="-1, base, a revision id or unique prefix, branch@-1")
    _verbose(down)
    down.set_defaults(handler=downgrade)

    stamp = commands.add_parser(
        "stamp",
        help="record a revision in the version table without running it, as a job",
        description="Set the target database's recorded revision to TARGET without running "
        "any migration, like `alembic stamp`: for a database whose real schema you know. "
        "Run as a job (lock, log, audit).",
        epilog=EXIT + ".",
    )
    stamp.add_argument("target", help="head, heads, base, or a revision id")
    _verbose(stamp)
    stamp.set_defaults(handler=stamp_to)


def _verbose(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="also print each SQL statement (the job's log in the panel always has them)",
    )


def plan_for(settings: Settings, direction: Direction, target_revision: str) -> migrations.Plan:
    """The plan as it stands now (also checks the target before any job is recorded)."""
    project = target.project(settings)
    migrations.check_target(target_revision)
    _, current = migrations.read_current(project, settings.database_url)
    return migrations.make_plan(project, direction, target_revision, current)


def announce(plan: migrations.Plan) -> None:
    steps = len(plan.steps)
    target.echo(
        f"{plan.direction.value} from {target.shown(plan.current)} to {plan.target}: "
        f"{steps} revision{'s' if steps != 1 else ''}"
    )


def run_job(
    settings: Settings,
    kind: JobKind,
    target_revision: str,
    plan: migrations.Plan | None = None,
    *,
    verbose: bool = False,
) -> int:
    """Run one job in the foreground; its status is the exit code."""
    request = jobs.JobRequest(
        kind=kind,
        target_revision=target_revision,
        plan_fingerprint=plan.fingerprint if plan is not None else None,
    )
    with runtime(settings) as rt:
        job = jobs.run_in_foreground(
            rt,
            request,
            cli_actor(),
            echo=target.echo,
            echo_levels=None if verbose else QUIET_LEVELS,
        )
    return outcome(job)


def outcome(job: Job) -> int:
    status = JobStatus(job.status)
    code = _EXIT_CODES.get(status, 1)
    if code:
        target.note(f"job {job.id} {status.value}: {job.error or 'see its log above'}")
    return code


def _run_plan(
    settings: Settings, direction: Direction, target_revision: str, *, verbose: bool = False
) -> int:
    migrations.check_target(target_revision)
    with runtime(settings) as rt:
        # Another job on the target is named at once (its plan would only look changed).
        job_queue.check_free(rt)
    plan = plan_for(settings, direction, target_revision)
    if plan.is_empty:
        print(
            f"nothing to {direction.value}: the database is at "
            f"{target.shown(plan.current)}, already at {target_revision}"
        )
        return 0
    announce(plan)
    kind = JobKind.UPGRADE if direction is Direction.UPGRADE else JobKind.DOWNGRADE
    return run_job(settings, kind, target_revision, plan, verbose=verbose)


def upgrade(args: argparse.Namespace, settings: Settings) -> int:
    safety.check_upgrade(settings, args.target, args.confirm)
    return _run_plan(settings, Direction.UPGRADE, args.target, verbose=args.verbose)


def downgrade(args: argparse.Namespace, settings: Settings) -> int:
    return _run_plan(settings, Direction.DOWNGRADE, args.target, verbose=args.verbose)


def stamp_to(args: argparse.Namespace, settings: Settings) -> int:
    migrations.check_target(args.target)
    return run_job(settings, JobKind.STAMP, args.target, verbose=args.verbose)
