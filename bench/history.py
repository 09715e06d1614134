"""History: the engine's revision graph (warm) against `alembic history`."""

from __future__ import annotations

import time
from functools import partial

from admin import migrations
from admin.cli.history import line
from bench.context import Context
from bench.report import Row, Section
from bench.timing import ALEMBIC, time_call, time_tool

TARGET_MS = 50.0
# A max_age already past at every call: the check a page view seconds after the last one pays.
PAST_MAX_AGE = 1e-9


def _listing(project: migrations.Project, max_age: float) -> str:
    graph = project.graph(max_age)
    return "\n".join(line(rev, frozenset()) for rev in graph.revisions) + "\n"


def measure(ctx: Context) -> Section:
    section = Section("history")
    warm_by_size: dict[int, float] = {}
    for size in ctx.sizes:
        generated = ctx.project(size)
        started = time.perf_counter()
        project = migrations.open_project(generated.ini)
        ours = _listing(project, 1.0)
        cold_ms = (time.perf_counter() - started) * 1000

        graph = time_call(partial(project.graph, 1.0), runs=ctx.runs * 20)
        warm = time_call(partial(_listing, project, 1.0), runs=ctx.runs * 10)
        stamped = time_call(partial(_listing, project, PAST_MAX_AGE), runs=ctx.runs * 10)
        rescan = time_call(partial(_listing, project, 0.0), runs=ctx.runs * 3)
        cli, theirs = time_tool(
            [ALEMBIC, "-c", str(generated.ini), "history"], cwd=ctx.workdir, runs=ctx.runs
        )
        same = sorted(ours.splitlines()) == sorted(theirs.splitlines())
        warm_by_size[size] = stamped.ms
        target = f"≤ {TARGET_MS:g} ms"
        section.rows += [
            Row(
                size,
                "engine graph, warm",
                graph.ms,
                target=target,
                met=graph.ms <= TARGET_MS,
                ours_best=graph.best * 1000,
            ),
            Row(
                size,
                "graph + listing, warm",
                warm.ms,
                "`alembic history`",
                cli.ms,
                target,
                warm.ms <= TARGET_MS,
                warm.best * 1000,
            ),
            Row(
                size,
                "graph + listing, past max_age (folders re-checked)",
                stamped.ms,
                "`alembic history`",
                cli.ms,
                target,
                stamped.ms <= TARGET_MS,
                stamped.best * 1000,
            ),
            Row(
                size,
                "graph + listing, full re-scan (max_age=0, as jobs do)",
                rescan.ms,
                ours_best=rescan.best * 1000,
            ),
            Row(size, "cold: first load in a process (once)", cold_ms),
        ]
        section.notes.append(
            f"{size} revisions ({generated.branches} forks and merges): the listing is "
            f"{'identical to' if same else '**different from**'} `alembic history` "
            "(compared line by line, order aside: the two sides of a fork follow string hashing)."
        )
    if len(warm_by_size) > 1:
        small, large = min(warm_by_size), max(warm_by_size)
        section.notes.append(
            f"Growth: warm time ×{warm_by_size[large] / warm_by_size[small]:.1f} for "
            f"×{large / small:g} revisions (formatting one line per revision is linear; the "
            "graph itself is cached and not rebuilt)."
        )
    section.notes.append(
        "*warm*: the process has loaded the project once (the panel's state) and the graph "
        "comes from its cache. *Past max_age*: every call is older than `max_age`, so the "
        "version folders' own mtimes are stat'ed (a file added, removed or renamed changes "
        "them): what a page view seconds after the previous one pays. *Full re-scan* stats "
        "every revision file (names, sizes, mtimes), as runs and job submissions do "
        "(`max_age=0`) and as every check does at most every `FULL_SCAN_EVERY` (15 s). "
        "The listing is `alembic history`'s format, one line per revision (linear in N)."
    )
    section.notes.append(
        "*Cold*: the first load parses and compiles every revision file (the bench's files are "
        "new, so Python compiles them and writes `__pycache__`, which the CLI runs after it "
        "reuse). Profiled at 5,000 revisions it is nearly all Alembic's: loading the files in "
        "`ScriptDirectory.walk_revisions` and its topological sort; the engine's own work per "
        "revision (file sha256, docstring, flags) is under a tenth of it. Every CLI command pays "
        "it once per process, as `alembic` does."
    )
    return section
