"""Where the database stands: ``read_status`` (warm) against `alembic current`."""

from __future__ import annotations

from functools import partial

from sqlalchemy import text

from admin import migrations
from bench.context import Context
from bench.report import Row, Section
from bench.timing import ALEMBIC, time_call, time_tool

TARGET_MS = 10.0
PAST_MAX_AGE = 1e-9  # see bench.history


def _round_trip(url: str) -> None:
    """The floor: a pooled connection out and back with one query (what any status costs)."""
    with migrations.engine_for(url).connect() as connection:
        connection.execute(text("SELECT 1")).scalar()


def measure(ctx: Context) -> Section:
    section = Section("status")
    for size in ctx.sizes:
        generated = ctx.project(size)
        url = ctx.database_at_head(size)
        project = migrations.open_project(generated.ini)
        status = migrations.read_status(project, url)
        if status.state is not migrations.State.UP_TO_DATE:
            raise RuntimeError(f"the bench database is not at head: {status.message}")

        warm = time_call(partial(migrations.read_status, project, url), runs=ctx.runs * 30)
        stamped = time_call(
            partial(migrations.read_status, project, url, max_age=PAST_MAX_AGE),
            runs=ctx.runs * 30,
        )
        rescan = time_call(
            partial(migrations.read_status, project, url, max_age=0), runs=ctx.runs * 3
        )
        floor = time_call(partial(_round_trip, url), runs=ctx.runs * 30)
        cli, output = time_tool(
            [ALEMBIC, "-c", str(generated.ini), "current"], cwd=ctx.workdir, runs=ctx.runs
        )
        if generated.head not in output:
            raise RuntimeError(f"`alembic current` did not report the head: {output!r}")
        target = f"≤ {TARGET_MS:g} ms"
        section.rows += [
            Row(
                size,
                "`read_status`, warm",
                warm.ms,
                "`alembic current`",
                cli.ms,
                target,
                warm.ms <= TARGET_MS,
                warm.best * 1000,
            ),
            Row(
                size,
                "`read_status`, past max_age (folders re-checked)",
                stamped.ms,
                "`alembic current`",
                cli.ms,
                target,
                stamped.ms <= TARGET_MS,
                stamped.best * 1000,
            ),
            Row(
                size,
                "floor: pooled connection + `SELECT 1` on the same server",
                floor.ms,
                ours_best=floor.best * 1000,
            ),
            Row(
                size,
                "`read_status`, full re-scan (max_age=0)",
                rescan.ms,
                ours_best=rescan.best * 1000,
            ),
        ]
    section.notes.append(
        "A PostgreSQL database created by the bench (on the local server), stamped at the "
        "head, dropped afterwards. `read_status` reads the version table with "
        "`MigrationContext.get_current_heads()` on a pooled connection; `alembic current` "
        "starts Python, parses every revision file and connects. A warm `read_status` is "
        "three round trips to the server (the pool's pre-ping, Alembic's version-table check, "
        "the version read; the pooled connections are in autocommit, so there is no BEGIN "
        "and no ROLLBACK on return); the *floor* row (two of them) shows what the server and "
        "the machine's load make of round trips in this run."
    )
    return section
