"""Offline SQL: the exact script a plan will run, rendered by Alembic's ``--sql`` mode.

Rendering goes through ``EnvironmentContext`` with the project's cached ScriptDirectory and
an ``output_buffer`` (what ``command.upgrade(cfg, "A:B", sql=True)`` does, without parsing
every revision file again). Alembic keeps module-global state while env.py runs, so one
render runs at a time in a process.
"""

from __future__ import annotations

import hashlib
import io
import re
import threading
from dataclasses import dataclass

from alembic.runtime.environment import EnvironmentContext

from admin.migrations.plan import Direction, Plan, Step, alembic_steps
from admin.migrations.project import Project

# One env.py run per process at a time (alembic.context / alembic.op are globals).
ALEMBIC_LOCK = threading.RLock()
_MARKER = re.compile(r"^-- Running (upgrade|downgrade) .*$", re.MULTILINE)
_COMMIT = re.compile(r"^COMMIT;\s*$", re.MULTILINE)


@dataclass(frozen=True)
class StepSql:
    """The SQL of one step, or why it cannot be rendered offline."""

    step: Step
    sql: str | None
    error: str | None = None


@dataclass(frozen=True)
class SqlScript:
    plan: Plan
    dialect: str
    text: str
    steps: tuple[StepSql, ...]

    @property
    def fingerprint(self) -> str:
        return hashlib.sha256(self.text.encode()).hexdigest()

    @property
    def errors(self) -> list[StepSql]:
        return [s for s in self.steps if s.error]


def render_range(
    project: Project,
    direction: Direction,
    start: tuple[str, ...] | None,
    destination: str,
    url: str,
) -> str:
    """The SQL Alembic's ``upgrade/downgrade START:DEST --sql`` prints, for ``url``'s dialect."""
    buffer = io.StringIO()
    script = project.script()
    cfg = project.config(url=url)
    cfg.output_buffer = buffer

    def steps(rev: tuple[str, ...], context: object) -> list[object]:
        return alembic_steps(script, direction, destination, tuple(rev))

    with (
        ALEMBIC_LOCK,
        project.revision_errors(),
        EnvironmentContext(
            cfg,
            script,
            fn=steps,
            as_sql=True,
            starting_rev=start if start else None,
            destination_rev=destination,
        ),
    ):
        script.run_env()
    return buffer.getvalue()


def _slices(text: str, count: int) -> list[str] | None:
    """Cut a whole script at Alembic's ``-- Running`` markers, one slice per step."""
    markers = [m.start() for m in _MARKER.finditer(text)]
    if len(markers) != count:
        return None
    bounds = [0]
    for previous, marker in zip(markers, markers[1:], strict=False):
        commits = [m.end() for m in _COMMIT.finditer(text, previous, marker)]
        bounds.append(commits[-1] if commits else marker)
    bounds.append(len(text))
    return [text[a:b].strip("\n") + "\n" for a, b in zip(bounds, bounds[1:], strict=False)]


def render(project: Project, plan: Plan, url: str, dialect: str) -> SqlScript:
    """The SQL of a whole plan, as one script and as per-step slices."""
    if plan.is_empty:
        return SqlScript(plan=plan, dialect=dialect, text="", steps=())
    try:
        text = render_range(project, plan.direction, plan.current, plan.target, url)
    except Exception:
        # One step cannot be rendered offline: render step by step to say which.
        return _render_each(project, plan, url, dialect)
    parts = _slices(text, len(plan.steps))
    if parts is None:
        steps = tuple(StepSql(step, None, None) for step in plan.steps)
    else:
        steps = tuple(StepSql(step, part) for step, part in zip(plan.steps, parts, strict=True))
    return SqlScript(plan=plan, dialect=dialect, text=text, steps=steps)


def _render_each(project: Project, plan: Plan, url: str, dialect: str) -> SqlScript:
    pieces: list[StepSql] = []
    for step in plan.steps:
        if plan.direction is Direction.UPGRADE:
            target = step.revision
        else:
            target = step.to_revisions[0] if step.to_revisions else "base"
        try:
            sql = render_range(project, plan.direction, step.from_revisions, target, url)
            pieces.append(StepSql(step, sql))
        except Exception as exc:  # reported per step, never crashed on
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            pieces.append(
                StepSql(step, None, f"cannot be rendered offline: {type(exc).__name__}: {reason}")
            )
    text = "".join(
        piece.sql if piece.sql is not None else f"-- {piece.step.label}: {piece.error}\n\n"
        for piece in pieces
    )
    return SqlScript(plan=plan, dialect=dialect, text=text, steps=tuple(pieces))
