"""What the audit tests share: ``schema-admin`` run in this process, and reading the trail.

In-process runs cost no interpreter start (the coverage test runs every command); the
command's settings come from the environment, as in a shell, and the logging set-up it
does (root handlers, the audit JSON logger's switch) is undone afterwards.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select

from admin.cli import main
from admin.config import Settings
from admin.runtime import Runtime
from admin.store.models import AuditEvent


@contextlib.contextmanager
def logging_restored() -> Iterator[None]:
    root = logging.getLogger()
    events = logging.getLogger("admin.audit.events")
    saved = (list(root.handlers), root.level, events.disabled)
    try:
        yield
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
        events.disabled = saved[2]


@dataclass(frozen=True)
class CliRun:
    code: int
    stdout: str


@dataclass
class InProcessCli:
    """``schema-admin ARGS`` with ``settings`` as its environment, in ``cwd``."""

    settings: Settings
    cwd: Path

    def __call__(self, *argv: str, stdin: str = "", **env: str) -> CliRun:
        values = {**self.settings.to_env(), **env}
        saved_env = {name: os.environ.get(name) for name in values}
        saved_cwd = Path.cwd()
        saved_stdin = sys.stdin
        out = io.StringIO()
        os.environ.update(values)
        os.chdir(self.cwd)
        sys.stdin = io.StringIO(stdin)
        try:
            with logging_restored(), contextlib.redirect_stdout(out):
                code = main(list(argv))
        finally:
            sys.stdin = saved_stdin
            os.chdir(saved_cwd)
            for name, value in saved_env.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value
        return CliRun(code, out.getvalue())


def events_after(runtime: Runtime, mark: int) -> list[AuditEvent]:
    """The events appended after id ``mark``, in order."""
    with runtime.sessions() as session:
        return list(
            session.scalars(select(AuditEvent).where(AuditEvent.id > mark).order_by(AuditEvent.id))
        )


def last_id(runtime: Runtime) -> int:
    with runtime.sessions() as session:
        value = session.scalar(select(AuditEvent.id).order_by(AuditEvent.id.desc()).limit(1))
    return int(value or 0)
