"""A downgrade job of 1,000 revisions to base end to end against `alembic downgrade base`.

Each run starts from a fresh PostgreSQL database at the head: a copy (``CREATE DATABASE
... TEMPLATE``) of one database that `alembic upgrade heads` brought there once. The panel's
side is what `schema-admin migrate down base` does: ``run_in_foreground`` (submit with its
plan check and its safety gate → worker process with the migration lock → every log line
stored → outcome and revision recorded, audited), timed from submit to succeeded, with a
PostgreSQL store as in production.
"""

from __future__ import annotations

from sqlalchemy.engine import make_url

from admin.jobs import JobRequest
from admin.store.models import JobKind
from bench.context import Context, Databases
from bench.job_upgrade import SIZE, _ini_for, alternate
from bench.report import Section
from bench.timing import ALEMBIC, run_tool


def measure(ctx: Context) -> Section:
    section = Section("downgrade job, end to end")
    generated = ctx.project(SIZE)
    databases = Databases(ctx.server_url)
    try:
        at_head = databases.create("downtpl")
        run_tool(
            [ALEMBIC, "-c", str(_ini_for(generated.ini, at_head)), "upgrade", "heads"],
            cwd=ctx.workdir,
        )
        pairs = alternate(
            ctx,
            generated.ini,
            JobRequest(JobKind.DOWNGRADE, "base"),
            ["downgrade", "base"],
            ctx.runs,
            databases=databases,
            template=make_url(at_head).database,
        )
    finally:
        databases.drop_all()
    section.rows.append(
        pairs.row(
            "downgrade job to base (`run_in_foreground`), submit → succeeded",
            "`alembic downgrade base`",
        )
    )
    section.notes.append(
        f"{SIZE} revisions (each creates a table and an index, its downgrade drops them; "
        f"{generated.branches} forks and merges), each run on a fresh copy of one PostgreSQL "
        f"database that `alembic upgrade heads` brought to the head, {len(pairs.ours)} runs each, "
        "alternating which side goes first, each after a CHECKPOINT. "
        f"The job stored {pairs.lines} log lines in a PostgreSQL store and wrote its audit events; "
        "`alembic` logs nothing."
    )
    section.notes.append(
        "Each run in order, in seconds, `alembic` / the job: "
        + pairs.each_run()
        + " (the first job also opens the project and analyses the plan's revisions in the "
        "calling process, as `schema-admin migrate` always does; later ones find them loaded)."
    )
    section.notes.append(
        "What made the downgrade slower than the upgrade beside the CLI (admin/migrations): "
        "(1) at each step Alembic finds what the reverted revision leaves as heads by "
        "collecting every ancestor of the revision below it, a walk to the base per step, "
        "O(N²) over a downgrade to base (0.4–0.5 s of CPU at 1,000 revisions), paid in the "
        "worker and again in the child that renders the job's script beside it; the panel's "
        "downgrade step answers the one-revision, no-other-head case directly and leaves the "
        "rest to Alembic (`DowngradeStep`, checked against Alembic's on random histories); "
        "(2) the check between two steps asked the catalog whether the version table exists "
        "before reading it: one round trip in seven of a step that drops a table and an "
        "index (a downgrade's DDL is cheap, so round trips weigh more than in an upgrade, and "
        "a transaction that drops a relation waits for its WAL flush whatever "
        "`synchronous_commit` says); it now reads the table with one query. The steps, their "
        "SQL, the log lines, the audit and the refusals are unchanged; the job still reads the "
        "version table back after every step (one query more per step than `alembic`)."
    )
    section.notes.append(
        "The engine alone, before and after, on 2026-12-07 18:28 UTC (load average 13–15): a "
        "fresh process each, `migrations.run` (downgrade to base) against "
        "`alembic.command.downgrade` on a fresh copy of the database at head after a "
        "CHECKPOINT, 5 rounds alternating Alembic / main's engine (22149ff) / this engine: "
        "wall medians 6.31 / 11.33 / 8.70 s, CPU medians 2.51 / 3.86 / 2.79 s (each run, wall: "
        "Alembic 4.73, 10.11, 6.31, 12.13, 5.03; main 10.91, 10.97, 11.54, 12.33, 11.33; now "
        "10.68, 6.65, 8.70, 10.26, 8.54). Earlier the same day at load 6.5, now against "
        "Alembic: 3.59 / 3.83, 6.04 / 4.74, 4.56 / 3.27, 3.04 / 3.72 s."
    )
    section.notes.append(
        "The whole job shares the machine's two CPUs with its supervisor, the store's server "
        "process and the render child, so under load its ratio grows as the upgrade job's "
        "does (section *upgrade job, end to end*): the two benches run back to back at load "
        "4.8 → 8.9 (18:15–18:23 UTC, 8 and 9 alternating pairs) gave 1.46× for this downgrade "
        "job and 1.95× for the upgrade job. Job-level A/B runs (rounds alternating `alembic`, "
        "a job whose worker and render child ran main's engine, and one running this engine; "
        "CPU = the calling process, which submits and supervises, plus its children, the "
        "worker and the render child; the servers' processes not counted): at load 6.1–7.9 "
        "(18:39 UTC, 6 rounds) medians 3.01 / 5.59 / 5.03 s (1.86× → 1.67×), CPU 2.05 / 4.42 "
        "/ 4.20 s (each run, wall: `alembic` 3.13, 3.57, 2.89, 2.69, 3.88, 2.73; main 6.96, "
        "5.69, 4.20, 5.90, 5.48, 4.64; now 6.33, 5.20, 4.20, 6.02, 4.85, 4.41); at load 9–12 "
        "(18:24 UTC, 6 rounds) 7.71 / 10.65 / 11.93 s, within that load's noise. What is left "
        "of the gap is the job's machinery, as for the upgrade: about 2 s more CPU than "
        "`alembic` (the render child about 1.4 s, the supervisor storing 5,000 lines about "
        "0.8 s), which a quiet machine's second CPU mostly absorbs; and a fixed cost (submit "
        "with its plan check and safety gate, the supervisor, the worker's start) with about "
        "1 ms a step more than `alembic` (the version table read back after each step, the "
        "step events, each revision imported as it runs), which weighs more against this "
        "downgrade (`alembic`: 3.3 s when quiet) than against the upgrade (5–7 s). Quieter "
        "windows the same evening: 1.108× (18:42 UTC, load 4.3 → 1.9, medians 4.72 / 4.26 s, "
        "8 pairs), 1.198× (18:44, load 1.6 → 1.4, 4.36 / 3.64 s, 10 pairs), 1.328× (18:50, "
        "load 0.8 → 1.8, 4.34 / 3.27 s, 10 pairs, the read-back query built once); the "
        "upgrade bench right after this run (18:51–18:54, load 1.7 → 4.1): 1.219× (8.82 / "
        "7.24 s). The ≤ 1.10× target is not met."
    )
    return section
