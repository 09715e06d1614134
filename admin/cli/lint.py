"""schema-admin lint: squawk over the SQL of a range of revisions, for CI.

Renders the range's upgrade SQL offline where the cache (by file hash) lacks it (no
database is read when the range is given with its start, as the default ``base:heads``
is), lints each step with squawk, and prints the findings as text, JSON or SARIF 2.1.0
with each revision's risk badges. The exit code says whether a finding at or above
``--fail-on`` was found.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from admin import migrations
from admin.analysis import analyze, lint, sarif
from admin.cli import target
from admin.cli.base import Commands
from admin.config import Settings
from admin.errors import InvalidInput
from admin.migrations import Direction

# Offline rendering needs only the dialect: nothing connects to this URL.
OFFLINE_POSTGRESQL = "postgresql+psycopg2://lint@localhost/lint"
EXIT = (
    "exit codes: 0 no finding at or above --fail-on, 1 findings at or above it, "
    "2 bad usage or settings"
)


def register(commands: Commands) -> None:
    parser = commands.add_parser(
        "lint",
        help="lint the SQL of a range of revisions with squawk (PostgreSQL), for CI",
        description="Render the upgrade SQL of RANGE offline and lint each step with squawk "
        "(rules: LINT_EXCLUDED_RULES, LINT_PG_VERSION). Findings name the revision and the "
        "statement; the version table's bookkeeping is never linted. Each revision's risk "
        "badges are printed too. A SQLite target is not linted unless --postgresql is given.",
        epilog=EXIT + ".",
    )
    parser.add_argument(
        "range",
        nargs="?",
        default="base:heads",
        help="FROM:TO (FROM: base, head(s) or ids; TO: a target) or TO alone (from where the "
        "database stands); default base:heads, every revision, no database needed",
    )
    parser.add_argument("--format", choices=("text", "json", "sarif"), default="text")
    parser.add_argument(
        "--fail-on",
        choices=("warning", "error", "none"),
        default="warning",
        help="exit 1 when a finding at or above this level is found (default warning)",
    )
    parser.add_argument(
        "--postgresql",
        action="store_true",
        help="lint the PostgreSQL SQL whatever DATABASE_URL is (nothing connects)",
    )
    parser.add_argument("--output", type=Path, help="write the report here instead of stdout")
    parser.set_defaults(handler=run)


def _plan(settings: Settings, text: str, url: str) -> migrations.Plan:
    project = target.project(settings)
    start_text, sep, to = text.partition(":")
    if not sep:
        start_text, to = "", text
    to = migrations.check_target(to or "heads")
    if sep:
        current = project.graph(max_age=0).resolve(start_text or "base")
    else:
        _, current = migrations.read_current(project, url)
    return migrations.make_plan(project, Direction.UPGRADE, to, current, max_age=0)


def _paths(project: migrations.Project, ids: list[str]) -> dict[str, str]:
    graph = project.graph()
    return {rid: target.relative(graph.by_id[rid].path) for rid in ids if rid in graph.by_id}


def run(args: argparse.Namespace, settings: Settings) -> int:
    if len(args.range) > 400 or "\x00" in args.range:
        raise InvalidInput("the range is not FROM:TO or TO (see --help)")
    url = OFFLINE_POSTGRESQL if args.postgresql else settings.database_url
    project = target.project(settings)
    plan = _plan(settings, args.range, settings.database_url)
    ids = plan.revision_ids
    # Only what the cache lacks is rendered (analyze and lint share the rendered history).
    report = lint.lint(
        project, url, ids, Direction.UPGRADE, lint.options_for(settings), var_dir=settings.var_dir
    )
    if not report.applies:
        target.note(f"{report.reason}: pass --postgresql to lint the PostgreSQL SQL")
        return 0
    risks = analyze(project, url, ids, var_dir=settings.var_dir)
    text = _format(args.format, report, risks, _paths(project, ids), ids)
    if args.output is not None:
        args.output.write_text(text, encoding="utf-8")
    else:
        target.write(text)
    for rid in report.unrendered:
        target.note(f"{rid}: its SQL cannot be rendered offline, so it was not linted")
    if args.fail_on == "none":
        return 0
    return 1 if report.at_least(args.fail_on) else 0


def _format(
    form: str,
    report: lint.LintReport,
    risks: dict[str, Any],
    paths: dict[str, str],
    ids: list[str],
) -> str:
    if form == "sarif":
        return json.dumps(sarif.to_sarif(report, paths, lint.squawk_version()), indent=2) + "\n"
    if form == "json":
        document = {
            "squawk": lint.squawk_version(),
            "revisions": [
                {
                    "revision": rid,
                    "path": paths.get(rid),
                    "badges": [b.to_json() for b in risks[rid].upgrade.badges],
                    "findings": [f.to_json() for f in report.for_step(rid, "upgrade")],
                }
                for rid in ids
            ],
            "unrendered": list(report.unrendered),
        }
        return json.dumps(document, indent=2) + "\n"
    lines = []
    for rid in ids:
        badges = risks[rid].upgrade.badges
        findings = report.for_step(rid, "upgrade")
        if not badges and not findings:
            continue
        lines.append(f"{rid} ({paths.get(rid, '?')})")
        lines += [f"  [{b.kind.value}] {b.reason}" for b in badges]
        lines += [
            f"  {f.level}: {f.rule}: {f.message} (line {f.statement_line}: {f.statement[:100]})"
            for f in findings
        ]
    count = len(report.findings)
    lines.append(f"{count} finding{'s' if count != 1 else ''} in {len(ids)} revision(s)")
    return "\n".join(lines) + "\n"
