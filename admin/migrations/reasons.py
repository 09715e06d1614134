"""Why a step cannot be rendered offline, written for the reviewer who reads it.

A step fails offline for different reasons that call for different actions: its downgrade
is irreversible (it raises on purpose), it reads the database while it runs (a query's
result, reflection: offline mode has no database), batch mode on SQLite copies the live
table, or it simply has an error. The reason names the revision and the line of its file
where it happened, and holds no memory address, so the same step gives the same reason in
every render and every process.
"""

from __future__ import annotations

import linecache
import re
import traceback
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from admin.migrations.plan import Step
    from admin.migrations.project import Project

_ADDRESS = re.compile(r"\s+at 0x[0-9a-fA-F]+|0x[0-9a-fA-F]{6,}")
_READS = re.compile(
    r"get_bind|\.bind\b|connection|\.execute\(|fetch(one|all|many)|scalar|inspect|reflect|"
    r"autoload|Inspector|\.first\(|\.all\(|\.one\("
)
_NONE_RESULT = re.compile(r"'NoneType' object|NoneType")
_BATCH_FILE = re.compile(r"alembic[/\\]operations[/\\]batch\.py$")
_REPEATED_PREFIX = "cannot be rendered offline: "


class Cause(StrEnum):
    IRREVERSIBLE = "irreversible"
    READS_DATABASE = "reads-database"
    BATCH_SQLITE = "batch-sqlite"
    ERROR = "error"


@dataclass(frozen=True)
class Reason:
    cause: Cause
    text: str
    location: str | None


def one_line(exc: BaseException) -> str:
    """An exception as one stable line: its type and first line, addresses removed."""
    message = str(exc).strip()
    while message.startswith(_REPEATED_PREFIX):
        message = message[len(_REPEATED_PREFIX) :]
    first = message.splitlines()[0] if message else ""
    first = _ADDRESS.sub("", first)
    name = type(exc).__name__
    return f"{name}: {first}" if first else name


def _frames(exc: BaseException) -> list[traceback.FrameSummary]:
    tb: TracebackType | None = exc.__traceback__
    return list(traceback.extract_tb(tb)) if tb is not None else []


def explain(exc: BaseException, project: Project, step: Step) -> Reason:
    """Why ``step`` could not be rendered offline (``exc`` raised while rendering it)."""
    while exc.__cause__ is not None:  # what the revision raised, not its translation
        exc = exc.__cause__
    graph = project.graph()
    revision = graph.by_id.get(step.revision)
    path = str(revision.path) if revision is not None else None
    frames = _frames(exc)
    own = [f for f in frames if path is not None and f.filename == path]
    last_own = own[-1] if own else None
    location = f"{Path(last_own.filename).name}:{last_own.lineno}" if last_own else None
    where = f" (line {last_own.lineno} of {Path(last_own.filename).name})" if last_own else ""
    line = (
        (last_own.line or linecache.getline(last_own.filename, last_own.lineno or 0)).strip()
        if last_own
        else ""
    )
    summary = one_line(exc)
    label = f"revision {step.revision}"

    if last_own is not None and last_own.name == "downgrade" and line.startswith("raise"):
        return Reason(
            Cause.IRREVERSIBLE,
            f"{label} cannot be downgraded: its downgrade raises {summary}{where}",
            location,
        )
    if isinstance(exc, NotImplementedError) and step.direction.value == "downgrade":
        return Reason(
            Cause.IRREVERSIBLE,
            f"{label} cannot be downgraded: its downgrade raises {summary}{where}",
            location,
        )
    if any(_BATCH_FILE.search(f.filename) for f in frames):
        return Reason(
            Cause.BATCH_SQLITE,
            f"{label} uses batch mode, which on SQLite copies the live table: offline mode has "
            f"no table to read{where}. Give the table's definition with copy_from= to render "
            "it offline; the job log shows its SQL when it runs",
            location,
        )
    if last_own is not None and (_READS.search(line) or _NONE_RESULT.search(summary)):
        shown = f": `{line[:120]}`" if line else ""
        return Reason(
            Cause.READS_DATABASE,
            f"{label} reads the database while it runs{where}{shown}; offline mode has no "
            "database to read, so its SQL shows only when a job runs it",
            location,
        )
    return Reason(Cause.ERROR, f"{label} fails offline{where}: {summary}", location)
