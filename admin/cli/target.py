"""What the migration commands share: the managed project, revision arguments, output."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from admin import controls, migrations
from admin.config import Settings
from admin.migrations import Graph
from admin.migrations.database import is_postgresql


def project(settings: Settings) -> migrations.Project:
    """The managed Alembic project (ALEMBIC_CONFIG)."""
    return migrations.open_project(settings.alembic_config, settings.cache_dir)


def dialect(url: str) -> str:
    return "postgresql" if is_postgresql(url) else "sqlite"


def shown(revisions: tuple[str, ...], graph: Graph | None = None) -> str:
    """Revision ids as a person reads them, with the message when there is one."""
    if not revisions:
        return "base (no revision applied)"
    parts = []
    for rev in revisions:
        known = graph.by_id.get(rev) if graph is not None else None
        parts.append(f"{rev} ({known.message})" if known and known.message else rev)
    return ", ".join(parts)


def relative(path: Path) -> str:
    """A path relative to the working directory when it lies below it."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def write(text: str, *, data: bool = False) -> None:
    """Write to stdout; a reader that went away (``| head``) is not an error.

    Control characters (a revision message's, a migration's output) are written as
    visible escapes, so they cannot drive the terminal; ``data`` (SQL) is written as it
    is when it goes to a file or a pipe, where it must stay byte for byte.
    """
    if not data or sys.stdout.isatty():
        text = controls.neutralise(text)
    try:
        sys.stdout.write(text)
        sys.stdout.flush()
    except BrokenPipeError:
        # Python would complain again when it flushes stdout at exit.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())


def echo(text: str) -> None:
    """A job's log line as it happens (control characters shown as escapes)."""
    print(controls.neutralise(text), flush=True)


def note(text: str) -> None:
    """A remark for the person at the terminal, kept out of stdout (which may be piped)."""
    print(f"schema-admin: {controls.neutralise(text)}", file=sys.stderr)
