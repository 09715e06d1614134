"""The job worker: ``python -m admin.jobs.worker JOB_ID``, a child process of a supervisor.

It reads its job from the store, takes the target's migration lock, runs the job through
the engine and writes one JSON line per event on stdout (``admin.jobs.protocol``). The
supervisor stores the lines and the outcome; the only store writes made here are the
backup handlers' Backup rows and their audit events (``admin.backups.records``).
Alembic's module-global state lives here, never in the web process.
"""

from __future__ import annotations

import hashlib
import logging
import os
import signal
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from types import FrameType
from typing import NoReturn

from sqlalchemy import Connection, text
from sqlalchemy.exc import DBAPIError

from admin import migrations
from admin.backups import gate as backup_gate
from admin.backups import handlers as backup_handlers
from admin.config import Settings, load_settings
from admin.errors import AdminError, describe
from admin.jobs.protocol import Emitter, Message
from admin.jobs.queue import get, heads_text
from admin.runtime import Runtime
from admin.store.models import Job, JobKind

EXIT_SUCCEEDED = 0
EXIT_FAILED = 1
EXIT_CONFIG = 2
EXIT_LOCKED = 3
EXIT_CANCELLED = 130


class Cancelled(BaseException):
    """SIGTERM from the supervisor: unwind (rolling back the open transaction)."""


@dataclass
class Context:
    """What a job handler works with."""

    settings: Settings
    runtime: Runtime
    job: Job
    out: Emitter

    @property
    def lock_owner(self) -> str:
        job = self.job
        return migrations.describe_owner(
            f"schema-admin job {job.id} ({job.source}, {job.requested_by})"
        )


Handler = Callable[[Context], int]
# Steps run before a migration's first SQL: the backup gate (a no-op unless
# settings.backups_gate_migrations) takes and verifies a backup first.
BEFORE_MIGRATION: list[Callable[[Context], None]] = [backup_gate.before_migration]


def _describe_db_error(exc: DBAPIError) -> str:
    orig = exc.orig
    code = getattr(orig, "pgcode", None)
    message = str(getattr(orig, "pgerror", None) or orig or exc).strip()
    first = message.splitlines()[0] if message else type(orig).__name__
    return f"[SQLSTATE {code}] {first}" if code else f"{type(orig).__name__}: {first}"


def _announce_backend(ctx: Context, connection: Connection) -> None:
    if connection.dialect.name != "postgresql":
        return
    pid = connection.execute(text("SELECT pg_backend_pid()")).scalar()
    connection.commit()
    ctx.out.send(Message("backend", f"target backend pid {pid}", "debug", {"pid": pid}))


def run_migration(ctx: Context) -> int:
    """Upgrade, downgrade or stamp under the migration lock, step by step."""
    settings, job, out = ctx.settings, ctx.job, ctx.out
    kind = JobKind(job.kind)
    command = migrations.Command(kind.value)
    project = migrations.open_project(settings.alembic_config)
    url = settings.database_url
    sql_digest = hashlib.sha256()

    def on_event(event: migrations.EngineEvent) -> None:
        if event.kind is migrations.EventKind.SQL:
            sql_digest.update(event.text.encode() + b"\n")
            out.send(Message("sql", event.text, "sql"))
        elif event.kind in (migrations.EventKind.STEP_STARTED, migrations.EventKind.STEP_FINISHED):
            finished = event.kind is migrations.EventKind.STEP_FINISHED
            out.send(
                Message(
                    "step",
                    f"[{event.step}/{event.steps}] {event.text}",
                    "step",
                    {
                        "event": "finished" if finished else "started",
                        "revision": event.revision,
                        "step": event.step,
                        "steps": event.steps,
                        "duration": event.duration,
                    },
                )
            )
        elif event.kind is migrations.EventKind.WARNING:
            out.log(event.text, "warning")
        else:
            out.log(event.text)

    out.log(f"taking the migration lock on {migrations.masked(url)}")
    with migrations.migration_lock(url, wait=settings.migration_lock_wait, owner=ctx.lock_owner):
        out.log("lock taken")
        if kind in (JobKind.UPGRADE, JobKind.DOWNGRADE):
            for step in BEFORE_MIGRATION:
                step(ctx)
        engine = migrations.new_engine(url, application_name=ctx.lock_owner)
        try:
            with engine.connect() as connection:
                _announce_backend(ctx, connection)
                after = migrations.run(
                    project,
                    connection,
                    command,
                    job.target_revision or "heads",
                    on_event=on_event,
                    lock_timeout=settings.lock_timeout,
                    statement_timeout=settings.statement_timeout,
                    expected_fingerprint=job.plan_fingerprint,
                )
        finally:
            engine.dispose()
    out.result(
        "succeeded", revision_after=heads_text(after), sql_fingerprint=sql_digest.hexdigest()
    )
    return EXIT_SUCCEEDED


HANDLERS: dict[JobKind, Handler] = {
    JobKind.UPGRADE: run_migration,
    JobKind.DOWNGRADE: run_migration,
    JobKind.STAMP: run_migration,
    **backup_handlers.HANDLERS,  # backup, verify, restore
}


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise Cancelled()


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    out = Emitter()
    if len(args) != 1 or not args[0].isdigit():
        out.result("failed", error="usage: python -m admin.jobs.worker JOB_ID")
        return EXIT_CONFIG
    signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        settings = load_settings()
    except AdminError as exc:
        out.result("failed", error=str(exc))
        return EXIT_CONFIG
    runtime = Runtime.open(settings)
    try:
        with runtime.reads() as session:
            job = get(session, int(args[0]))
            session.expunge(job)
        handler = HANDLERS.get(JobKind(job.kind))
        if handler is None:
            out.result("failed", error=f"no worker handler for {job.kind} jobs")
            return EXIT_FAILED
        return handler(Context(settings, runtime, job, out))
    except Cancelled:
        out.log("cancelled: the open transaction was rolled back", "warning")
        out.result("cancelled", error="cancelled on request")
        return EXIT_CANCELLED
    except migrations.LockHeld as exc:
        out.log(str(exc), "error")
        out.result("failed", error=str(exc))
        return EXIT_LOCKED
    except AdminError as exc:
        out.log(str(exc), "error")
        out.result("failed", error=str(exc))
        return EXIT_FAILED
    except DBAPIError as exc:
        message = _describe_db_error(exc)
        out.log(f"error {message}", "error")
        out.result("failed", error=message, sqlstate=getattr(exc.orig, "pgcode", None))
        return EXIT_FAILED
    except Exception as exc:
        # Unexpected: the traceback goes to stderr (stored as such), one line to the log.
        traceback.print_exc(file=sys.stderr)
        message = describe(exc)
        out.log(message, "error")
        out.result("failed", error=message)
        return EXIT_FAILED
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        runtime.close()


def exit_now(code: int) -> NoReturn:
    """End the process once the result is written and every connection closed, without the
    interpreter's teardown (after a long plan: every revision module, freed one by one)."""
    migrations.dispose_engines()
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    exit_now(main())
