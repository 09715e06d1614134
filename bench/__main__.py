"""python -m bench: run the measurements side by side with the raw tools, write RESULTS.md."""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path
from types import ModuleType

from bench import (
    audit_page,
    backup,
    cli_startup,
    context,
    dashboard_restart,
    history,
    history_page,
    job_downgrade,
    job_upgrade,
    live_log_memory,
    live_view,
    log_latency,
    offline_sql,
    public_projects,
    rehearsal,
    report,
    safety,
    scale,
    status,
)

# One module per measurement, each with ``measure(ctx) -> report.Section``; later issues
# (jobs, backups, history page) add theirs here.
MEASUREMENTS: dict[str, ModuleType] = {
    "history": history,
    "history-page": history_page,
    "status": status,
    "offline-sql": offline_sql,
    "job-upgrade": job_upgrade,
    "job-downgrade": job_downgrade,  # --runs sets the runs of each side
    "log-latency": log_latency,
    "live-log-memory": live_log_memory,
    "audit-page": audit_page,  # BENCH_AUDIT_EVENTS (default 100,000) events per store
    "backup": backup,  # BENCH_BACKUP_SCALE (default 50, ~800 MB) sets the pgbench scale
    "safety": safety,
    "cli-startup": cli_startup,  # schema-admin status / history, the worker's start
    "dashboard-restart": dashboard_restart,  # BENCH_DASHBOARD_SIZES (default 5000,20000)
    "scale": scale,  # BENCH_SCALE_SIZES (default 5000,20000): status, dashboard, watcher
    "public": public_projects,  # BENCH_PUBLIC_REPOS: fetched repositories (skipped without)
    "rehearsal": rehearsal,  # BENCH_REHEARSAL_SCALE (default 50), BENCH_REHEARSAL_DEALS
    "live-view": live_view,  # the sampler's cost, the job page of a 5,000-step job
}
RESULTS = Path(__file__).resolve().parent / "RESULTS.md"
DEFAULT_SERVER = "postgresql://postgres@127.0.0.1:5432/postgres"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--sizes", default="1000,5000", help="project sizes (default 1000,5000)")
    parser.add_argument("--runs", type=int, default=3, help="runs of each raw-tool command")
    parser.add_argument(
        "--only",
        help=f"comma-separated measurements ({', '.join(MEASUREMENTS)}); the table is printed "
        "and RESULTS.md is left alone unless --out or --merge is given",
    )
    parser.add_argument(
        "--merge",
        action="store_true",
        help="with --only: replace those measurements' rows and notes in RESULTS.md (or --out) "
        "and keep the others",
    )
    parser.add_argument("--out", type=Path, help=f"where to write (default {RESULTS})")
    args = parser.parse_args(argv)
    sizes = tuple(int(s) for s in args.sizes.split(","))
    names = args.only.split(",") if args.only else list(MEASUREMENTS)
    unknown = [n for n in names if n not in MEASUREMENTS]
    if unknown:
        parser.error(f"unknown measurement(s): {', '.join(unknown)}")
    out = args.out or (None if args.only and not args.merge else RESULTS)
    # The bench reads its server like the tests do (it is a tool, not the panel).
    server = os.environ.get("BENCH_DATABASE_URL") or os.environ.get(
        "TEST_DATABASE_URL", DEFAULT_SERVER
    )
    sections: list[report.Section] = []
    load_before = report.load_average()
    with (
        tempfile.TemporaryDirectory(prefix="apex-bench-") as workdir,
        context.opened(Path(workdir), server, sizes, args.runs) as ctx,
    ):
        for name in names:
            print(f"bench: {name} ...", file=sys.stderr, flush=True)
            sections.append(MEASUREMENTS[name].measure(ctx))
        extra = {
            "PostgreSQL": f"{ctx.server_version()} (local server)",
            "load average (1, 5, 15 min) before / after": f"{load_before} / "
            f"{report.load_average()}",
            "runs of each raw-tool command": str(args.runs),
        }
    command = "python -m bench " + " ".join(argv or sys.argv[1:])
    if out is not None and args.merge:
        report.merge(out, sections, extra, command)
        print(report.table(sections))
    elif out is not None:
        print(report.write(out, sections, extra, command))
    else:
        print(report.table(sections))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
