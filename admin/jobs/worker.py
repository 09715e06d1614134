"""The job worker: ``python -m admin.jobs.worker JOB_ID CONTROL_FD``, a child process of a
supervisor.

It reads its job from stdin (an ``Order``: the job and the settings it runs with), takes
the target's migration lock, runs the job through the engine and writes one JSON line per
event on the pipe ``CONTROL_FD`` (``admin.jobs.protocol``); what the job's code prints is
wrapped as ``output`` lines, so nothing it prints can pass for a message. The supervisor
stores the lines and the outcome; the only store writes made here are the backup handlers'
Backup rows and their audit events (``admin.backups.records``). Alembic's module-global
state lives here, never in the web process.

A migration needs nothing beyond the engine: this module imports neither the panel's
settings model nor the ORM nor the backups (tests/test_jobs_core.py checks it), which
would add half a second to every job's start. Backup, verify and restore jobs, and the
backup gate, load them when they run.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any, NoReturn, TextIO

from sqlalchemy import Connection, text
from sqlalchemy.exc import DBAPIError

from admin import migrations
from admin.errors import AdminError, describe
from admin.jobs.orphan import Watchman
from admin.jobs.protocol import Emitter, Message, Order, heads_text
from admin.live import naming, schedule

if TYPE_CHECKING:
    from admin.config import Settings
    from admin.runtime import Runtime
    from admin.store.models import Job

EXIT_SUCCEEDED = 0
EXIT_FAILED = 1
EXIT_CONFIG = 2
EXIT_LOCKED = 3
EXIT_CANCELLED = 130
# The longest a line waits in the worker before the supervisor can read it (Emitter).
LINGER = 0.01


class Cancelled(BaseException):
    """SIGTERM from the supervisor: unwind (rolling back the open transaction)."""


@dataclass
class Context:
    """What a job handler works with: the order, its beat thread (``watchman``), and the
    panel's settings, store and job row, each loaded on first use."""

    order: Order
    out: Emitter
    watchman: Watchman
    # The statement running last and the lock_timeout in force (for errors that name them).
    last_sql: str = ""
    last_autocommit: bool = False
    lock_timeout: str = ""

    @cached_property
    def settings(self) -> Settings:
        from admin.config import load_settings

        return load_settings()

    @cached_property
    def runtime(self) -> Runtime:
        from admin.runtime import Runtime

        return Runtime.open(self.settings)

    @cached_property
    def job(self) -> Job:
        from admin.jobs.queue import get

        with self.runtime.reads() as session:
            job = get(session, self.order.job_id)
            session.expunge(job)
        return job

    @property
    def lock_owner(self) -> str:
        order = self.order
        return migrations.describe_owner(
            f"schema-admin job {order.job_id} ({order.source}, {order.requested_by})"
        )

    def close(self) -> None:
        if "runtime" in self.__dict__:
            self.runtime.close()


Handler = Callable[[Context], int]


def _describe_db_error(exc: DBAPIError, ctx: Context | None = None) -> str:
    orig = exc.orig
    code = getattr(orig, "pgcode", None)
    message = str(getattr(orig, "pgerror", None) or orig or exc).strip()
    first = message.splitlines()[0] if message else type(orig).__name__
    if not code:
        return f"{type(orig).__name__}: {first}"
    diag = getattr(orig, "diag", None)
    return naming.db_error(
        code,
        first,
        detail=getattr(diag, "message_detail", None),
        statement=ctx.last_sql if ctx else None,
        lock_timeout=(ctx.lock_timeout or ctx.order.lock_timeout) if ctx else None,
        statement_timeout=ctx.order.statement_timeout if ctx else None,
        relation_name=_relation_namer(ctx, exc) if ctx else None,
    )


def _relation_namer(ctx: Context, exc: DBAPIError) -> Any:
    """oid -> relation name, read on a connection of its own (the failed one is aborted)."""

    def name(oid: int) -> str | None:
        try:
            engine = migrations.new_engine(ctx.order.database_url, autocommit=True)
            try:
                with engine.connect() as connection:
                    found = connection.execute(
                        text("SELECT CAST(CAST(:o AS oid) AS regclass)::text"), {"o": oid}
                    ).scalar()
            finally:
                engine.dispose()
            return str(found) if found else None
        except Exception:
            return None

    return name


def _is_lock_timeout(exc: BaseException) -> bool:
    orig = getattr(exc, "orig", None)
    return isinstance(exc, DBAPIError) and getattr(orig, "pgcode", None) == naming.LOCK_TIMEOUT


def _announce_backend(ctx: Context, connection: Connection) -> None:
    if connection.dialect.name != "postgresql":
        return
    pid = connection.execute(text("SELECT pg_backend_pid()")).scalar()
    connection.commit()
    ctx.out.send(Message("backend", f"target backend pid {pid}", "debug", {"pid": pid}))


def run_migration(ctx: Context) -> int:
    """Upgrade, downgrade or stamp under the migration lock, step by step."""
    order, out = ctx.order, ctx.out
    command = migrations.Command(order.kind)
    project = migrations.open_project(
        Path(order.alembic_config), Path(order.cache_dir) if order.cache_dir else None
    )
    url = order.database_url
    # Lock retries: a later attempt runs what is left of the plan (its first steps may be
    # committed); its steps keep their numbers in the whole plan.
    plan: list[migrations.Step] = []
    offset = 0

    def on_plan(steps: list[migrations.Step]) -> None:
        nonlocal plan, offset
        if not plan:
            plan = list(steps)
            return
        offset = len(plan) - len(steps)
        if offset < 0 or steps != plan[offset:]:
            raise migrations.PlanChanged(
                "after a lock timeout, what is left to run is not the rest of the reviewed "
                "plan (the database moved meanwhile): review the plan again"
            )

    def on_event(event: migrations.EngineEvent) -> None:
        if event.kind is migrations.EventKind.SQL:
            if event.level != "debug":
                ctx.last_sql, ctx.last_autocommit = event.text, event.autocommit
            out.send(Message("sql", event.text, event.level or "sql"))
        elif event.kind in (migrations.EventKind.STEP_STARTED, migrations.EventKind.STEP_FINISHED):
            finished = event.kind is migrations.EventKind.STEP_FINISHED
            heads = heads_text(event.heads) if event.heads is not None else None
            step = (event.step or 0) + offset
            steps = len(plan) or event.steps
            if finished:
                ctx.watchman.step_finished(step, event.revision, heads)
            out.send(
                Message(
                    "step",
                    f"[{step}/{steps}] {event.text}",
                    "step",
                    {
                        "event": "finished" if finished else "started",
                        "revision": event.revision,
                        "step": step,
                        "steps": steps,
                        "duration": event.duration,
                        "rows": event.rows,
                        "label": event.text,
                        "heads": list(event.heads) if event.heads is not None else None,
                    },
                )
            )
        elif event.kind is migrations.EventKind.WARNING:
            out.log(event.text, event.level or "warning")
        else:
            out.log(event.text, event.level or "info")

    def on_backend(pid: int) -> None:
        out.send(Message("backend", f"migration backend pid {pid}", "debug", {"pid": pid}))

    out.log(f"taking the migration lock on {migrations.masked(url)}")
    with migrations.migration_lock(url, wait=order.migration_lock_wait, owner=ctx.lock_owner):
        out.log("lock taken")
        if order.backup_gate and command is not migrations.Command.STAMP:
            from admin.backups import gate

            gate.before_migration(ctx)
        engine = migrations.new_engine(url, application_name=ctx.lock_owner)
        tries = schedule.schedule_for(
            order.lock_retries,
            order.lock_timeout,
            order.lock_retry_pause,
            order.lock_retry_final_without_timeout,
        )
        if tries.retries and command is not migrations.Command.STAMP:
            out.log(f"lock retries: {tries.describe()}")
        try:
            with engine.connect() as connection:
                _announce_backend(ctx, connection)
                for attempt, timeout in enumerate(tries.timeouts, start=1):
                    ctx.lock_timeout = timeout
                    try:
                        after = migrations.run(
                            project,
                            connection,
                            command,
                            order.target_revision or "heads",
                            on_event=on_event,
                            lock_timeout=timeout,
                            statement_timeout=order.statement_timeout,
                            expected_fingerprint=order.plan_fingerprint if attempt == 1 else None,
                            on_plan=on_plan,
                            on_backend=on_backend,
                            should_stop=ctx.watchman.should_stop,
                        )
                        break
                    except DBAPIError as exc:
                        if not _retry_after(ctx, exc, attempt, tries):
                            raise
        finally:
            engine.dispose()
    out.result("succeeded", revision_after=heads_text(after))
    return EXIT_SUCCEEDED


def _retry_after(ctx: Context, exc: DBAPIError, attempt: int, tries: schedule.Schedule) -> bool:
    """After a lock timeout with attempts left: say so, pause, and True (try again)."""
    if not _is_lock_timeout(exc) or attempt >= len(tries.timeouts):
        return False
    if ctx.last_autocommit:
        ctx.out.log(
            "the lock timeout came in an autocommit block (the statements before it in this "
            "step are committed): the step is not retried",
            "warning",
        )
        return False
    following = tries.timeouts[attempt]
    said = "no lock_timeout" if following == "0" else f"lock_timeout {following}"
    ctx.out.send(
        Message(
            "retry",
            f"lock retry: attempt {attempt} of {len(tries.timeouts)} (lock_timeout "
            f"{ctx.lock_timeout}) timed out and was rolled back; next attempt in "
            f"{tries.pause:g} s with {said}",
            "warning",
            {
                "attempt": attempt,
                "attempts": len(tries.timeouts),
                "lock_timeout": ctx.lock_timeout,
                "statement": ctx.last_sql,
            },
        )
    )
    time.sleep(tries.pause)
    return True


def handler_for(kind: str) -> Handler | None:
    if kind in list(migrations.Command):  # upgrade, downgrade, stamp
        return run_migration
    if kind == "rehearsal":
        from admin.rehearsal.handler import run_rehearsal

        return run_rehearsal
    from admin.backups.handlers import HANDLERS  # backup, verify, restore

    return {k.value: handler for k, handler in HANDLERS.items()}.get(kind)


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise Cancelled()


def main(argv: list[str] | None = None, out: Emitter | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    out = out or Emitter()
    if len(args) not in (1, 2) or not all(arg.isdigit() for arg in args):
        out.result("failed", error="usage: python -m admin.jobs.worker JOB_ID CONTROL_FD < ORDER")
        return EXIT_CONFIG
    signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        order = Order.decode(sys.stdin.read())
    except ValueError as exc:
        out.result("failed", error=str(exc))
        return EXIT_CONFIG
    if order.job_id != int(args[0]):
        out.result("failed", error=f"the work order on stdin is for job {order.job_id}")
        return EXIT_CONFIG
    if order.target_connection:
        migrations.configure(migrations.ConnectOptions(**order.target_connection))
    watchman = Watchman(order, out)
    watchman.start()
    ctx = Context(order, out, watchman)
    code = EXIT_FAILED
    try:
        code = _run(ctx)
        return code
    finally:
        watchman.finish(code)


def _run(ctx: Context) -> int:
    """The job's handler, with every way it can end said as a result."""
    order, out = ctx.order, ctx.out
    try:
        handler = handler_for(order.kind)
        if handler is None:
            out.result("failed", error=f"no worker handler for {order.kind} jobs")
            return EXIT_FAILED
        return handler(ctx)
    except Cancelled:
        out.log("cancelled: the open transaction was rolled back", "warning")
        out.result("cancelled", error="cancelled on request")
        return EXIT_CANCELLED
    except migrations.Stopped as exc:
        out.log(str(exc), "warning")
        out.result("interrupted", error=str(exc))
        return EXIT_FAILED
    except migrations.LockHeld as exc:
        out.log(str(exc), "error")
        out.result("failed", error=str(exc))
        return EXIT_LOCKED
    except AdminError as exc:
        out.log(str(exc), "error")
        out.result("failed", error=str(exc))
        return EXIT_FAILED
    except DBAPIError as exc:
        message = _describe_db_error(exc, ctx)
        said = {
            "sqlstate": getattr(exc.orig, "pgcode", None),
            "lock_timeout": ctx.lock_timeout or order.lock_timeout,
            "statement": ctx.last_sql,
        }
        out.send(Message("log", f"error {message}", "error", said))
        if exc.connection_invalidated:
            # Not the migration's fault: the target went away (restarted, cut off).
            message = f"the connection to the target was lost: {message}"
            out.result("interrupted", error=message)
        else:
            out.result("failed", error=message, **said)
        return EXIT_FAILED
    except Exception as exc:
        # Unexpected: the traceback at debug level, one line to the log.
        out.log(traceback.format_exc().rstrip(), "debug")
        message = describe(exc)
        out.log(message, "error")
        out.result("failed", error=message)
        return EXIT_FAILED
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        ctx.close()


def exit_now(code: int) -> NoReturn:
    """End the process once the result is written and every connection closed, without the
    interpreter's teardown (after a long plan: every revision module, freed one by one)."""
    migrations.dispose_engines()
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _control_stream(argv: list[str]) -> TextIO:
    """The pipe the supervisor reads messages from (stdout when none is given: a worker
    started by hand)."""
    if len(argv) == 2 and argv[1].isdigit():
        try:
            return os.fdopen(int(argv[1]), "w", encoding="utf-8")
        except OSError:
            pass
    return sys.stdout


if __name__ == "__main__":
    emitter = Emitter(_control_stream(sys.argv[1:]), linger=LINGER)
    sys.stdout = emitter.text_stream("stdout", "info")
    sys.stderr = emitter.text_stream("stderr", "warning")
    exit_now(main(out=emitter))
