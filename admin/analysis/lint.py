"""SQL lint with squawk (PostgreSQL): findings mapped back to revision and statement.

Each step's rendered SQL is written to a file of its own (the version table's bookkeeping
blanked out, line numbers kept) and one squawk process reads them all, with an argument
list, never a shell. Findings are kept by file sha256, squawk's version and the lint
settings, like the risk badges.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from admin.analysis.badges import one_line
from admin.analysis.cache import cache_at
from admin.analysis.rendering import Rendered, rendered_steps
from admin.analysis.statements import Statement, split
from admin.config import Settings
from admin.errors import AdminError
from admin.migrations import Direction, Project

LEVELS = ("warning", "error")
TIMEOUT = 120.0


class LintUnavailable(AdminError):
    status = 503
    title = "SQL lint unavailable"


@dataclass(frozen=True)
class LintOptions:
    """What the settings say: rules left out, and the PostgreSQL version to lint for."""

    excluded: tuple[str, ...] = ()
    pg_version: str | None = None


@dataclass(frozen=True)
class Finding:
    """One squawk finding on one statement of one revision's step."""

    revision: str
    direction: str
    rule: str
    level: str
    message: str
    help: str | None
    line: int
    statement: str
    statement_line: int

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Finding:
        return cls(**data)

    @property
    def url(self) -> str:
        return f"https://squawkhq.com/docs/{self.rule}"


@dataclass(frozen=True)
class LintReport:
    """The findings of some steps, or why lint does not apply."""

    applies: bool
    findings: tuple[Finding, ...] = ()
    reason: str | None = None
    unrendered: tuple[str, ...] = ()

    def at_least(self, level: str) -> list[Finding]:
        rank = LEVELS.index(level)
        return [f for f in self.findings if LEVELS.index(f.level) >= rank]

    def for_step(self, revision: str, direction: str) -> list[Finding]:
        return [f for f in self.findings if f.revision == revision and f.direction == direction]


NOT_POSTGRESQL = "SQL lint (squawk) applies to PostgreSQL only: this target is SQLite"


def squawk_path() -> str:
    """The squawk binary installed beside this Python (the wheel's), else on PATH."""
    beside = Path(sys.executable).parent / "squawk"
    if beside.is_file():
        return str(beside)
    found = shutil.which("squawk")
    if found is None:
        raise LintUnavailable("squawk is not installed: pip install squawk-cli")
    return found


@cache
def squawk_version() -> str:
    try:
        done = subprocess.run(
            [squawk_path(), "--version"], capture_output=True, text=True, timeout=30, check=False
        )
    except OSError as exc:
        raise LintUnavailable(f"squawk does not run: {exc}") from exc
    return done.stdout.strip().split()[-1] if done.stdout.strip() else "unknown"


def _blanked(sql: str, statements: list[Statement]) -> str:
    """The SQL with the bookkeeping statements' lines emptied (line numbers kept)."""
    lines = sql.split("\n")
    for statement in statements:
        if statement.bookkeeping:
            count = statement.text.count("\n") + 1
            for i in range(statement.line - 1, min(len(lines), statement.line - 1 + count)):
                lines[i] = ""
    return "\n".join(lines)


def _owner(statements: list[Statement], line: int) -> Statement | None:
    """The statement a 1-based line belongs to (the last one starting at or before it)."""
    chosen = None
    for statement in statements:
        if statement.line <= line:
            chosen = statement
        else:
            break
    return chosen


def run_squawk(
    steps: Sequence[tuple[str, str, str]], options: LintOptions, version_table: str
) -> list[Finding]:
    """Lint ``(revision, direction, sql)`` steps in one squawk process."""
    if not steps:
        return []
    split_steps = [split(sql, version_table) for _, _, sql in steps]
    args = [squawk_path(), "--reporter", "json", "--no-assume-in-transaction"]
    if options.excluded:
        args.append("--exclude=" + ",".join(options.excluded))
    if options.pg_version:
        args.append(f"--pg-version={options.pg_version}")
    with tempfile.TemporaryDirectory(prefix="schema-admin-lint-") as folder:
        names = []
        for index, ((_, _, sql), statements) in enumerate(zip(steps, split_steps, strict=True)):
            path = Path(folder) / f"{index:06d}.sql"
            path.write_text(_blanked(sql, statements), encoding="utf-8")
            names.append(path.name)
        try:
            done = subprocess.run(
                [*args, *names],
                cwd=folder,
                capture_output=True,
                text=True,
                timeout=TIMEOUT,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise LintUnavailable(f"squawk failed: {exc}") from exc
    try:
        raw = json.loads(done.stdout or "[]")
    except ValueError:
        raise LintUnavailable(
            f"squawk answered something else than JSON (exit {done.returncode}): "
            f"{one_line(done.stderr or done.stdout, 200)}"
        ) from None
    findings = []
    for item in raw:
        index = int(Path(str(item.get("file", ""))).stem or -1)
        if not 0 <= index < len(steps):
            continue
        revision, direction, _ = steps[index]
        line = int(item.get("line", 0)) + 1  # squawk counts lines from 0
        statement = _owner(split_steps[index], line)
        if statement is not None and statement.bookkeeping:
            continue
        findings.append(
            Finding(
                revision=revision,
                direction=direction,
                rule=str(item.get("rule_name", "?")),
                level="error" if str(item.get("level", "")).lower() == "error" else "warning",
                message=str(item.get("message", "")),
                help=item.get("help"),
                line=line,
                statement=one_line(statement.text, 300) if statement else "",
                statement_line=statement.line if statement else line,
            )
        )
    return findings


def _key(sha: str, direction: Direction, options: LintOptions) -> str:
    excluded = ",".join(sorted(options.excluded))
    return f"lint:1:{squawk_version()}:{sha}:{direction.value}:{options.pg_version}:{excluded}"


def lint(
    project: Project,
    url: str,
    revision_ids: Iterable[str],
    direction: Direction,
    options: LintOptions,
    *,
    var_dir: Path | None = None,
    rendered: dict[str, Rendered] | None = None,
) -> LintReport:
    """squawk's findings on each revision's ``direction`` step (cached by file hash)."""
    from admin.history import dialect_of

    if dialect_of(url) != "postgresql":
        return LintReport(applies=False, reason=NOT_POSTGRESQL)
    graph = project.graph()
    revisions = [graph.by_id[r] for r in dict.fromkeys(revision_ids) if r in graph.by_id]
    store = cache_at(var_dir)
    keys = {rev.id: _key(rev.sha256, direction, options) for rev in revisions}
    known = store.get_many(keys.values())
    missing = [rev.id for rev in revisions if keys[rev.id] not in known]
    unrendered: list[str] = []
    if missing:
        sql = dict(rendered or {})
        need = [rid for rid in missing if rid not in sql]
        if need:
            sql.update(rendered_steps(project, need, url, direction))
        steps = []
        for rid in missing:
            piece = sql.get(rid)
            if piece is None or piece.sql is None:
                unrendered.append(rid)
            else:
                steps.append((rid, direction.value, piece.sql))
        fresh: dict[str, list[dict[str, Any]]] = {keys[rid]: [] for rid, _, _ in steps}
        for finding in run_squawk(steps, options, project.version_table):
            fresh[keys[finding.revision]].append(finding.to_json())
        store.put_many(fresh)
        known.update(fresh)
    findings = tuple(
        Finding.from_json(item) for rev in revisions for item in known.get(keys[rev.id], [])
    )
    return LintReport(applies=True, findings=findings, unrendered=tuple(unrendered))


def options_for(settings: Settings) -> LintOptions:
    """The lint options the settings give (LINT_EXCLUDED_RULES, LINT_PG_VERSION)."""
    rules = tuple(r for r in settings.lint_excluded_rules.split(",") if r)
    return LintOptions(excluded=rules, pg_version=settings.lint_pg_version)
