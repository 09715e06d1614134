"""Online runs: upgrade, downgrade or stamp on a live connection, with a hook per event.

The caller (the job worker, a subprocess) holds the migration lock and hands over a
dedicated connection; env.py receives it in ``config.attributes["connection"]`` and runs
one transaction per revision (on PostgreSQL without waiting for each WAL flush: one flush
at the end, ``one_flush_per_run``). Each step started / finished, each SQL statement,
Alembic's log messages and Python warnings reach ``on_event`` as they happen.
"""

from __future__ import annotations

import logging
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection, Engine, event, text
from sqlalchemy.exc import InvalidRequestError, SQLAlchemyError

from admin.migrations import bound
from admin.migrations.capture import Capture
from admin.migrations.environment import NotWhereExpected, Watch, panel_environment
from admin.migrations.plan import Direction, Step, _step, alembic_steps, fingerprint
from admin.migrations.project import ALEMBIC_LOCK, MigrationError, Project

# The prefix of the WAL message that makes a run's last commit wait for the flush.
FLUSH_MESSAGE_PREFIX = "apex-schema-admin"


class Command(StrEnum):
    UPGRADE = "upgrade"
    DOWNGRADE = "downgrade"
    STAMP = "stamp"


class EventKind(StrEnum):
    LOG = "log"
    WARNING = "warning"
    STEP_STARTED = "step-started"
    STEP_FINISHED = "step-finished"
    SQL = "sql"


@dataclass(frozen=True)
class EngineEvent:
    kind: EventKind
    text: str
    revision: str | None = None
    step: int | None = None
    steps: int | None = None
    duration: float | None = None
    level: str | None = None
    heads: tuple[str, ...] | None = None
    # SQL: the statement ran in an autocommit block (Alembic's autocommit_block).
    autocommit: bool = False
    # STEP_FINISHED: rows the step's statements affected (None: none reported a count).
    rows: int | None = None


class Stopped(MigrationError):
    """The run was asked to stop between two steps (the job's owner is gone)."""

    status = 409
    title = "Stopped"


class PlanChanged(MigrationError):
    """What would run is not what was reviewed."""

    status = 409
    title = "Plan changed"


# How often the server checks, during a long statement, that the worker is still there
# (PostgreSQL 14+): a worker killed while its statement waits for a lock leaves no session
# holding that lock, and recovery sees it gone, within this time.
CLIENT_CHECK_INTERVAL = "1s"


def set_timeouts(connection: Connection, lock_timeout: str, statement_timeout: str) -> None:
    """Session-level lock_timeout / statement_timeout on PostgreSQL (committed), and the
    server's check that the client is still there during a statement."""
    if connection.dialect.name != "postgresql":
        return
    connection.execute(text("SELECT set_config('lock_timeout', :v, false)"), {"v": lock_timeout})
    connection.execute(
        text("SELECT set_config('statement_timeout', :v, false)"), {"v": statement_timeout}
    )
    if (
        connection.execute(text("SELECT current_setting('server_version_num')::int")).scalar_one()
        >= 140000
    ):
        connection.execute(
            text("SELECT set_config('client_connection_check_interval', :v, false)"),
            {"v": CLIENT_CHECK_INTERVAL},
        )
    connection.commit()


@contextmanager
def one_flush_per_run(
    connection: Connection, on_event: Callable[[EngineEvent], None]
) -> Iterator[None]:
    """Inside, a revision's commit does not wait for its WAL flush; on leaving, one commit
    that does makes every earlier one durable (PostgreSQL; elsewhere nothing changes).

    Alembic waits for a flush at each of a run's commits: a thousand waits at a thousand
    revisions. PostgreSQL's ``synchronous_commit = off`` is crash-safe (a server crash can
    lose the newest commits, each whole: the database is then where an earlier step left
    it, as after a run stopped there, and recovery records that revision); the WAL is
    flushed in order, so the final flushed commit covers all of the run's. Leaving on an
    error or a cancel flushes too, as far as the connection still can.
    """
    if connection.dialect.name != "postgresql":
        yield
        return
    connection.execute(text("SELECT set_config('synchronous_commit', 'off', false)"))
    connection.commit()
    on_event(
        EngineEvent(
            EventKind.LOG,
            "each revision commits without waiting for the WAL flush; the run ends with "
            "one flushed commit",
        )
    )
    try:
        yield
    finally:
        try:
            if connection.in_transaction():
                connection.rollback()
            connection.execute(text("RESET synchronous_commit"))
            # A commit waits for its flush only if its transaction wrote to the WAL: this
            # message does (nothing reads it; a logical decoding client skips our prefix).
            connection.execute(
                text("SELECT pg_logical_emit_message(true, :prefix, 'run flushed')"),
                {"prefix": FLUSH_MESSAGE_PREFIX},
            )
            connection.commit()
        except SQLAlchemyError as exc:
            # The server's WAL writer flushes the run's commits within a second anyway.
            on_event(EngineEvent(EventKind.WARNING, f"the final flush failed: {exc}"))


@dataclass
class _Run:
    """The run's progress: steps started and finished, as events."""

    emit: Callable[[EngineEvent], None]
    steps: list[Step]
    started: int = 0
    finished: int = 0
    step_began: float = 0.0
    rows: int | None = None

    def step_started(self, text_: str) -> None:
        step = self.steps[self.started]
        self.started += 1
        self.step_began = time.monotonic()
        self.rows = None
        self.emit(
            EngineEvent(
                EventKind.STEP_STARTED,
                text_,
                revision=step.revision,
                step=self.started,
                steps=len(self.steps),
            )
        )

    def step_finished(self, heads: set[str] | None = None) -> None:
        if self.finished >= self.started:
            return
        after = tuple(sorted(heads)) if heads is not None else None
        step = self.steps[self.finished]
        self.finished += 1
        duration = time.monotonic() - self.step_began
        self.emit(
            EngineEvent(
                EventKind.STEP_FINISHED,
                f"{step.label} done in {duration:.3f}s",
                revision=step.revision,
                step=self.finished,
                steps=len(self.steps),
                duration=duration,
                heads=after,
                rows=self.rows,
            )
        )


def _is_step_line(message: str) -> bool:
    # Alembic logs "Running upgrade a -> b, doc" as each step starts; the run reports it
    # itself, before the step, with its number.
    return message.startswith(("Running upgrade ", "Running downgrade ", "Running stamp_revision "))


@contextmanager
def _async_refused() -> Iterator[None]:
    """An env.py that builds an async engine: one line that says why and what to do."""
    try:
        yield
    except InvalidRequestError as exc:
        if "asyncio extension requires an async driver" not in str(exc):
            raise
        raise MigrationError(
            "env.py builds an async engine (asyncio), and the panel runs migrations with "
            "psycopg2, a synchronous driver: nothing was applied. Let env.py use the "
            "connection the panel passes in config.attributes['connection'] when there is "
            "one (Alembic's cookbook: connection sharing with asyncio)"
        ) from exc


def run(
    project: Project,
    connection: Connection,
    command: Command,
    target: str,
    *,
    on_event: Callable[[EngineEvent], None],
    lock_timeout: str = "0",
    statement_timeout: str = "0",
    expected_fingerprint: str | None = None,
    on_plan: Callable[[list[Step]], None] | None = None,
    on_backend: Callable[[int], None] | None = None,
    should_stop: Callable[[], str | None] | None = None,
) -> tuple[str, ...]:
    """Run ``command`` to ``target``; returns the heads the database is at afterwards, read
    on ``connection`` (the target) after the run.

    env.py gets the target as ``config.attributes["connection"]`` and as the
    ``sqlalchemy.url`` option; whichever connection it configures must reach the target
    (``environment.Watch``). With ``expected_fingerprint`` the run refuses (PlanChanged)
    unless the steps Alembic is about to execute are exactly the reviewed ones. After each
    step the version table is read back; the run stops if it is not where the step left it.
    Before each step ``should_stop`` may give a reason to stop there (Stopped).
    """
    script = project.script(max_age=0)
    graph = project.graph(max_age=0)
    state = _Run(emit=on_event, steps=[])
    direction = Direction.DOWNGRADE if command is Command.DOWNGRADE else Direction.UPGRADE

    def session_setup(conn: Connection) -> None:
        set_timeouts(conn, lock_timeout, statement_timeout)
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT set_config('synchronous_commit', 'off', false)"))
            name = connection.execute(text("SELECT current_setting('application_name')")).scalar()
            conn.execute(text("SELECT set_config('application_name', :n, false)"), {"n": name})
            conn.commit()

    def on_log(level: str, message: str, record: logging.LogRecord) -> None:
        if _is_step_line(message):
            return
        kind = EventKind.WARNING if level in ("warning", "error") else EventKind.LOG
        on_event(EngineEvent(kind, message, level=level))

    capture = Capture(on_log)
    watch = Watch(
        target=connection,
        session_setup=session_setup,
        capture=capture,
        on_backend=on_backend or (lambda pid: None),
        on_applied=state.step_finished,
        version_table=project.version_table,
    )

    def steps_for(rev: tuple[str, ...], context: MigrationContext) -> Iterator[Any]:
        # A generator: Alembic asks for each step after the previous one's transaction
        # ended, so the checks between steps see what that step left.
        if command is Command.STAMP:
            yield from script._stamp_revs(target, rev)
            return
        raw = alembic_steps(script, direction, target, tuple(rev))
        state.steps = [_step(graph, direction, item) for item in raw]
        found = fingerprint(direction, tuple(state.steps))
        if expected_fingerprint is not None and found != expected_fingerprint:
            raise PlanChanged(
                "what would run is not the plan that was reviewed (the database moved or "
                "revision files changed since): review the plan again"
            )
        if on_plan is not None:
            on_plan(state.steps)
        if raw and watch.one_transaction and context.impl.transactional_ddl:
            on_event(
                EngineEvent(
                    EventKind.LOG,
                    "env.py runs the whole plan in one transaction (transaction_per_migration "
                    "is off): the steps are committed together at the end, and an error rolls "
                    "every one of them back",
                )
            )
        for index, item in enumerate(raw, start=1):
            if index > 1:
                watch.check(context, index - 1, len(raw))
            reason = should_stop() if should_stop is not None else None
            if reason is not None:
                raise Stopped(f"stopped before step {index}/{len(raw)}: {reason}")
            state.step_started(f"Running {item}")
            yield item
        if raw:
            watch.check(context, len(raw), len(raw))

    def ours(conn: Any) -> bool:
        return not watch.quiet and (watch.migration is None or conn is watch.migration)

    def on_sql(
        conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, many: bool
    ) -> None:
        if ours(conn):
            said = bound.inline(cursor, statement.strip(), parameters, many)
            level = "debug" if bound.is_bookkeeping(statement) else None
            autocommit = conn.get_execution_options().get("isolation_level") == "AUTOCOMMIT"
            on_event(EngineEvent(EventKind.SQL, said, level=level, autocommit=autocommit))

    def on_sql_done(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        count = getattr(cursor, "rowcount", -1)
        if (
            ours(conn)
            and isinstance(count, int)
            and count >= 0
            and state.started > state.finished
            and project.version_table not in statement
            and not bound.is_bookkeeping(statement)
        ):
            state.rows = (state.rows or 0) + count

    def on_warning(message: Any, category: Any, *args: Any, **kwargs: Any) -> None:
        on_event(EngineEvent(EventKind.WARNING, f"{category.__name__}: {message}"))

    set_timeouts(connection, lock_timeout, statement_timeout)
    url = connection.engine.url.render_as_string(hide_password=False)
    cfg = project.config(
        connection=connection,
        url=url,
        lock_timeout=lock_timeout,
        statement_timeout=statement_timeout,
    )
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    with one_flush_per_run(connection, on_event):
        capture.install()
        event.listen(Engine, "before_cursor_execute", on_sql)
        event.listen(Engine, "after_cursor_execute", on_sql_done)
        try:
            with ALEMBIC_LOCK, project.revision_errors(), warnings.catch_warnings():
                warnings.simplefilter("default")
                warnings.showwarning = on_warning
                with (
                    panel_environment(
                        cfg, script, fn=steps_for, as_sql=False, destination_rev=target, watch=watch
                    ),
                    _async_refused(),
                ):
                    script.run_env()
        finally:
            event.remove(Engine, "before_cursor_execute", on_sql)
            event.remove(Engine, "after_cursor_execute", on_sql_done)
            capture.remove()
            if connection.in_transaction():
                connection.rollback()
        after = watch.final_heads()
        if watch.heads_after and set(after) != watch.heads_after[-1]:
            raise NotWhereExpected(
                f"the run's last step recorded {', '.join(sorted(watch.heads_after[-1]))} but "
                f"the target's version table holds {', '.join(after) or 'no revision'}"
            )
    return after
