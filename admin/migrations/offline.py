"""Offline SQL rendered in a child process: ``python -m admin.migrations.offline``.

The panel never runs a project's env.py or revision code itself (their logging setup,
their module state, their imports' side effects would stay in it). A render child starts
with a fresh interpreter, loads the project from the catalog (no revision imported),
builds Alembic's revision map, and waits for one request on stdin: the panel keeps one
such child ready, so a render does not wait for the imports. It answers on a pipe of its
own (``--result-fd``), never on stdout, which env.py and revision code may print to, and
exits: every request gets a fresh process.

Each render runs Alembic's offline (``--sql``) mode through ``EnvironmentContext`` with an
``output_buffer``, as ``alembic upgrade A:B --sql`` does. The whole range is rendered first;
when a step cannot be rendered offline, each step is rendered on its own to say which and
why (``reasons``). Revision modules are imported afresh for every render (``lazy``), so a
module-level ``MetaData`` gives the same SQL the first and the hundredth time. The parent
starts this process with ``PYTHONHASHSEED=0``: where Alembic orders version-table
statements by set iteration (merges), the order is then the same in every render.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import re
import sys
import traceback
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from alembic.runtime.environment import EnvironmentContext

from admin.migrations import lazy, reasons
from admin.migrations.errors import MigrationError
from admin.migrations.plan import Direction, Step, alembic_steps, plan_steps
from admin.migrations.project import Project

_MARKER = re.compile(r"^-- Running (upgrade|downgrade) .*$", re.MULTILINE)
_COMMIT = re.compile(r"^COMMIT;\s*$", re.MULTILINE)


@dataclass(frozen=True)
class Request:
    """One plan to render: where from, where to, and the fingerprint it must have."""

    direction: str
    current: list[str]
    target: str
    fingerprint: str


@dataclass
class Rendered:
    """What a render gives back: the script, and per step its SQL or why there is none."""

    text: str
    steps: list[dict[str, Any]]
    error: str | None = None


def url_option(url: str) -> str:
    """A URL as a ConfigParser value (``%`` would start an interpolation)."""
    return url.replace("%", "%%")


def render_range(
    project: Project,
    direction: Direction,
    start: tuple[str, ...] | None,
    destination: str,
    url: str,
) -> str:
    """What ``alembic upgrade|downgrade START:DEST --sql`` prints, for ``url``'s dialect."""
    buffer = io.StringIO()
    script = project.script()
    lazy.forget_modules(script)
    cfg = project.config(url=url)
    cfg.set_main_option("sqlalchemy.url", url_option(url))
    cfg.output_buffer = buffer

    def steps(rev: tuple[str, ...], context: object) -> list[object]:
        return alembic_steps(script, direction, destination, tuple(rev))

    with (
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


def _piece(sql: str | None, explained: reasons.Reason | None = None) -> dict[str, Any]:
    if explained is None:
        return {"sql": sql, "error": None, "cause": None, "location": None}
    return {
        "sql": None,
        "error": explained.text,
        "cause": explained.cause.value,
        "location": explained.location,
    }


def render_plan(project: Project, request: Request, url: str) -> Rendered:
    """The plan's whole script and its slices, or each step on its own when one fails."""
    direction = Direction(request.direction)
    current = tuple(request.current)
    steps = plan_steps(project, direction, request.target, current, max_age=0)
    from admin.migrations.plan import fingerprint

    if fingerprint(direction, steps) != request.fingerprint:
        return Rendered(
            "", [], "the revision files changed while the SQL was being rendered: try again"
        )
    if not steps:
        return Rendered("", [])
    try:
        text = render_range(project, direction, current, request.target, url)
    except Exception:
        return _render_each(project, direction, steps, url)
    parts = _slices(text, len(steps))
    if parts is None:
        return Rendered(text, [_piece(None) for _ in steps])
    return Rendered(text, [_piece(part) for part in parts])


def _render_each(
    project: Project, direction: Direction, steps: tuple[Step, ...], url: str
) -> Rendered:
    pieces: list[dict[str, Any]] = []
    texts: list[str] = []
    for step in steps:
        if direction is Direction.UPGRADE:
            target = step.revision
        else:
            target = step.to_revisions[0] if step.to_revisions else "base"
        try:
            sql = render_range(project, direction, step.from_revisions, target, url)
        except Exception as exc:  # explained per step, never crashed on
            explained = reasons.explain(exc, project, step)
            pieces.append(_piece(None, explained))
            texts.append(f"-- {step.label}: cannot be rendered offline: {explained.text}\n\n")
        else:
            pieces.append(_piece(sql))
            texts.append(sql)
    return Rendered("".join(texts), pieces)


def serve_one(project: Project, request_line: str) -> dict[str, Any]:
    """Answer one request line (JSON): ``{"url": ..., "plans": [Request...]}``."""
    payload = json.loads(request_line)
    url = str(payload["url"])
    results = []
    for item in payload["plans"]:
        request = Request(
            direction=str(item["direction"]),
            current=[str(rev) for rev in item["current"]],
            target=str(item["target"]),
            fingerprint=str(item["fingerprint"]),
        )
        try:
            results.append(asdict(render_plan(project, request, url)))
        except MigrationError as exc:
            results.append(asdict(Rendered("", [], str(exc))))
    return {"results": results}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m admin.migrations.offline")
    parser.add_argument("--config", required=True)
    parser.add_argument("--cache-dir")
    parser.add_argument("--result-fd", type=int, required=True)
    args = parser.parse_args(argv)
    result = os.fdopen(args.result_fd, "w", encoding="utf-8")
    # What env.py and revision code print is not the answer: it goes to stderr.
    sys.stdout = sys.stderr
    try:
        project = Project(Path(args.config), Path(args.cache_dir) if args.cache_dir else None)
        _ = project.script(max_age=0).revision_map.heads  # the map, built while we wait
        line = sys.stdin.readline()
        if not line.strip():
            return 0  # the panel stopped and closed our stdin: nothing was asked
        answer = serve_one(project, line)
    except Exception as exc:
        traceback.print_exc(file=sys.stderr)
        answer = {"error": reasons.one_line(exc)}
    with contextlib.suppress(BrokenPipeError):
        json.dump(answer, result)
        result.close()
    return 0


if __name__ == "__main__":
    code = main()
    sys.stderr.flush()
    os._exit(code)
