"""The container's start, as in the seed: wait for the databases, migrate, then serve.

``schema-admin entrypoint`` (the image's command) runs ``prepare`` and then replaces itself
with ``python -m admin serve`` (``exec``: the server gets the container's signals):

1. wait for the target's and the store's servers, with backoff, for at most WAIT_TIMEOUT;
2. create the store's database when it is missing (INIT_DB) and apply the store's revisions;
3. create the target database when it is missing (INIT_DB);
4. read where the target stands; unless MIGRATE_ON_START=false, apply the pending revisions
   as a job (source ``entrypoint``: locked, logged, audited, visible in the panel).

Several containers starting together: exactly one migrates. The others are refused by the
store's one-active-job rule (409) or find the migration lock held, wait for that run to
end, and find the schema up to date. A failed migration stops the start, unless
START_ON_MIGRATION_FAILURE=true: then the panel starts degraded and ``VAR_DIR/degraded.json``
says why (read by ``read_degraded``; /readyz, /metrics and the dashboard show it).
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import re
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import FrameType

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.pool import NullPool

from admin import audit, migrations
from admin.auth import users
from admin.config import Settings
from admin.errors import AdminError, Conflict, InvalidInput, Unavailable, describe
from admin.jobs import JobRequest, Runner, queue, run_in_foreground
from admin.jobs.worker import EXIT_LOCKED
from admin.migrations.database import is_postgresql, sqlite_path
from admin.runtime import Runtime
from admin.store.db import missing_store
from admin.store.models import Job, JobKind, JobStatus, Source, utcnow

log = logging.getLogger("admin.entrypoint")
job_log = logging.getLogger("admin.entrypoint.job")

DEGRADED_FILE = "degraded.json"
# Seconds between polls while another run migrates, and between progress notes.
POLL = 0.5
NOTE_EVERY = 15.0
_FIRST_LINE = re.compile(r"^job (\d+): ")
# libpq messages that no amount of waiting will change.
_REFUSED = ("password authentication failed", "no pg_hba.conf entry", "role ")


class MigrationFailed(AdminError):
    """The start-up migration failed: the panel is not started."""

    title = "Start-up migration failed"


class Stopped(AdminError):
    """SIGTERM or SIGINT arrived while the entrypoint was preparing."""

    exit_code = 143


def actor() -> audit.Actor:
    return audit.Actor.os_user(Source.ENTRYPOINT)


# The degraded record.


@dataclass(frozen=True)
class Degraded:
    """Why this instance serves without its start-up migration."""

    error: str
    job_id: int | None
    since: str


def degraded_path(settings: Settings) -> Path:
    return settings.var_dir / DEGRADED_FILE


def read_degraded(settings: Settings) -> Degraded | None:
    """The record written by a start in a degraded state, or None."""
    try:
        data = json.loads(degraded_path(settings).read_text(encoding="utf-8"))
        return Degraded(str(data["error"]), data.get("job_id"), str(data.get("since", "")))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def degraded_now(settings: Settings, state: migrations.State) -> Degraded | None:
    """The degraded record while it still applies: until the target reaches its head."""
    if state is migrations.State.UP_TO_DATE:
        return None
    return read_degraded(settings)


def _write_degraded(settings: Settings, record: Degraded) -> None:
    path = degraded_path(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".tmp")
    partial.write_text(json.dumps(asdict(record)), encoding="utf-8")
    partial.replace(path)


def _clear_degraded(settings: Settings) -> None:
    degraded_path(settings).unlink(missing_ok=True)


# Waiting for the servers.


@dataclass
class Deadline:
    timeout: float
    at: float = field(init=False)

    def __post_init__(self) -> None:
        self.at = time.monotonic() + self.timeout

    def remaining(self) -> float:
        return self.at - time.monotonic()


def server_of(url: str) -> str:
    parsed = make_url(url)
    return f"{parsed.host or 'localhost'}:{parsed.port or 5432}"


def _probe(url: str, timeout: float) -> None:
    # libpq's connect_timeout is whole seconds, at least 2.
    seconds = max(2, min(5, math.ceil(timeout)))
    engine = create_engine(url, poolclass=NullPool, connect_args={"connect_timeout": seconds})
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    finally:
        engine.dispose()


def wait_for_database(url: str, role: str, deadline: Deadline) -> bool:
    """Wait until the server of ``url`` answers; True when the database itself exists."""
    path = sqlite_path(url)
    if path is not None:
        return path.exists()
    if not is_postgresql(url):
        return True
    where = server_of(url)
    delay = 0.2
    last_note = -math.inf
    while True:
        try:
            _probe(url, deadline.remaining())
            return True
        except SQLAlchemyError as exc:
            reason = describe(exc)
        if 'database "' in reason and "does not exist" in reason:
            return False
        if any(marker in reason for marker in _REFUSED):
            raise Unavailable(f"the {role} server at {where} refused the connection: {reason}")
        remaining = deadline.remaining()
        if remaining <= 0:
            raise Unavailable(
                f"gave up waiting for the {role} database at {where} after "
                f"{deadline.timeout:g}s (WAIT_TIMEOUT): {reason}"
            )
        if time.monotonic() - last_note >= 5:
            last_note = time.monotonic()
            log.info(
                "waiting for the %s database at %s (%.0fs left): %s", role, where, remaining, reason
            )
        time.sleep(min(delay, remaining))
        delay = min(delay * 2, 3.0)


def _create(url: str, role: str, created: list[str]) -> None:
    """Create a missing database (INIT_DB); another container creating it too is fine."""
    try:
        made = migrations.create_database(url)
    except Unavailable:
        # Two CREATE DATABASE at once may fail with a duplicate key rather than 42P04.
        if not migrations.database_exists(url):
            raise
        made = False
    if made:
        name = migrations.database_name(url)
        created.append(f"{role} {name}")
        log.info("created the %s database %s", role, migrations.masked(url))


# The start.


@dataclass
class Start:
    """What the entrypoint did; ``degraded`` when the panel starts without its migration."""

    state: str = ""
    job: Job | None = None
    created: list[str] = field(default_factory=list)
    degraded: Degraded | None = None


@contextlib.contextmanager
def _stop_on_signals() -> Iterator[None]:
    """SIGTERM/SIGINT end the preparation (as PID 1, SIGTERM would otherwise be ignored)."""

    def stop(signum: int, frame: FrameType | None) -> None:
        raise Stopped(f"stopped by {signal.Signals(signum).name} before the panel started")

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.signal(s, stop) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def prepare(settings: Settings, *, serving: bool = True) -> Start:
    """Steps 1 to 4 above; raises an AdminError (with its exit code) when the start stops."""
    start = Start()
    with _stop_on_signals():
        deadline = Deadline(settings.wait_timeout)
        target_exists = wait_for_database(settings.database_url, "target", deadline)
        store_exists = wait_for_database(settings.admin_database_url, "store", deadline)
        # A SQLite store is the panel's own file: created as it is opened.
        if not store_exists and is_postgresql(settings.admin_database_url):
            if not settings.init_db:
                raise Unavailable(missing_store(settings.admin_database_url))
            _create(settings.admin_database_url, "store", start.created)
        rt = Runtime.open(settings)
        try:
            rt.upgrade_store(actor())
            try:
                if settings.init_db and not target_exists:
                    _create(settings.database_url, "target", start.created)
                _ensure_first_admin(rt)
                _migrate_on_start(rt, start, serving=serving)
            except AdminError as error:
                _record_failure(rt, start, error)
                raise
            _record_start(rt, start)
        finally:
            rt.close()
            migrations.dispose_engines()
    return start


def _ensure_first_admin(rt: Runtime) -> None:
    """Create the first admin here, once, rather than in each replica's server at once."""
    try:
        with rt.transaction() as session:
            initial = users.ensure_first_admin(
                session, audit.Actor("system", None, Source.ENTRYPOINT)
            )
    except IntegrityError:
        return  # another container created it at the same moment
    if initial is None:
        return
    path = users.write_initial_password(rt.settings.var_dir, initial)
    print(
        f"\n  First admin created: user {initial.username!r}, one-time password "
        f"{initial.password}\n  (also in {path}; you will be asked for a new one at sign-in)\n",
        flush=True,
    )


def _migrate_on_start(rt: Runtime, start: Start, *, serving: bool) -> None:
    settings = rt.settings
    project = migrations.open_project(settings.alembic_config, settings.cache_dir)
    status = migrations.read_status(project, settings.database_url, max_age=0)
    start.state = status.state.value
    states = migrations.State
    if status.state is states.UNREACHABLE:
        raise Unavailable(status.message)
    if status.state is states.MISSING:
        raise migrations.TargetMissing(
            f"{status.message.rstrip('.')}; or set INIT_DB=true to have the entrypoint create it"
        )
    log.info("target %s: %s", status.target, status.message)
    failure: str | None = None
    if status.state is states.UNKNOWN_REVISION:
        failure = status.message
    elif status.pending and not settings.migrate_on_start:
        log.warning(
            "%d revision(s) pending; MIGRATE_ON_START=false: serving without applying them",
            len(status.pending),
        )
    elif status.pending:
        job = _run_migration(rt, project)
        start.job = job
        if job is not None and job.status != JobStatus.SUCCEEDED.value:
            if job.status == JobStatus.CANCELLED.value:
                raise Stopped(f"the start-up migration (job {job.id}) was cancelled: {job.error}")
            failure = f"the start-up migration (job {job.id}) {job.status}: {job.error}"
        start.state = migrations.read_status(project, settings.database_url, max_age=0).state.value
    if failure is None:
        _clear_degraded(settings)
        return
    if not (serving and settings.start_on_migration_failure):
        raise MigrationFailed(failure)
    start.degraded = Degraded(failure, start.job.id if start.job else None, utcnow().isoformat())
    _write_degraded(settings, start.degraded)
    log.error("%s; START_ON_MIGRATION_FAILURE=true: starting the panel degraded", failure)


def _run_migration(rt: Runtime, project: migrations.Project) -> Job | None:
    """Upgrade to heads as a job; wait out another run. None: someone else migrated."""
    url = rt.settings.database_url
    while True:
        status = migrations.read_status(project, url, max_age=0)
        if not status.pending:
            log.info("the target is at %s: nothing left to apply", ", ".join(status.current))
            return None
        log.info("applying %d pending revision(s) as a job", len(status.pending))
        try:
            job = run_in_foreground(
                rt, JobRequest(JobKind.UPGRADE, "heads"), actor(), echo=_JobEcho()
            )
        except InvalidInput:
            continue  # "nothing to upgrade": another run finished meanwhile
        except Conflict as busy:
            log.info("waiting: %s", busy)
            waited = _wait_for_active_job(rt)
            if waited is not None and _failed_upgrade(waited):
                log.error("job %s, which this start waited for, failed", waited.id)
                return waited
            continue
        if job.status == JobStatus.FAILED.value and job.exit_code == EXIT_LOCKED:
            log.info("waiting: %s", job.error)
            _wait_for_lock(url)
            continue
        return job


class _JobEcho:
    """The job's lines into the application log, each with its job id."""

    def __init__(self) -> None:
        self.job_id: int | None = None

    def __call__(self, line: str) -> None:
        if self.job_id is None and (found := _FIRST_LINE.match(line)):
            self.job_id = int(found.group(1))
        job_log.info(line, extra={"job_id": self.job_id})


def _failed_upgrade(job: Job) -> bool:
    """Another start's upgrade failed: this one reports it rather than failing it again."""
    return (
        job.kind == JobKind.UPGRADE.value
        and job.status == JobStatus.FAILED.value
        and job.exit_code != EXIT_LOCKED
    )


def _wait_for_active_job(rt: Runtime) -> Job | None:
    """Until no job is active on the target (the last one seen, as it ended, is returned).

    A job whose worker is gone is recovered, as a server's runner would.
    """
    key = migrations.identity_key(rt.settings.database_url)
    runner = Runner(rt)  # supervises nothing here: only its recovery is used
    recover_every = max(1.0, rt.settings.job_lease / 2)
    last_recovery = last_note = time.monotonic()
    seen: int | None = None
    while True:
        with rt.reads() as session:
            job = queue.active(session, key)
            if job is None:
                return queue.get(session, seen) if seen is not None else None
            seen = job.id
            shown = f"job {job.id} ({job.status}, step {job.steps_done}/{job.steps_total})"
        now = time.monotonic()
        if now - last_note >= NOTE_EVERY:
            last_note = now
            log.info("still waiting for %s", shown)
        if now - last_recovery >= recover_every:
            last_recovery = now
            runner.recover()
        time.sleep(POLL)


def _wait_for_lock(url: str) -> None:
    """Until the migration lock is free (a run outside the store holds it)."""
    owner = migrations.describe_owner("schema-admin entrypoint (waiting)")
    last_note = time.monotonic()
    while True:
        try:
            with migrations.migration_lock(url, wait=POLL * 10, owner=owner):
                return
        except migrations.LockHeld as held:
            if time.monotonic() - last_note >= NOTE_EVERY:
                last_note = time.monotonic()
                log.info("still waiting: %s", held)


def _record_start(rt: Runtime, start: Start) -> None:
    degraded = start.degraded
    with rt.transaction() as session:
        audit.record(
            session,
            audit.EntrypointStarted(
                state=str(start.state),
                job_id=start.job.id if start.job else None,
                created_databases=start.created,
                degraded=degraded is not None,
                error=degraded.error if degraded else None,
                outcome=audit.Outcome.FAILURE if degraded else audit.Outcome.SUCCESS,
            ),
            actor(),
            revision=start.job.revision_after if start.job else None,
        )


def _record_failure(rt: Runtime, start: Start, error: AdminError) -> None:
    with contextlib.suppress(AdminError, SQLAlchemyError), rt.transaction() as session:
        audit.record(
            session,
            audit.EntrypointFailed(
                job_id=start.job.id if start.job else None,
                created_databases=start.created,
                reason=str(error),
            ),
            actor(),
        )


# Handing over to the server.


def server_command() -> list[str]:
    return [sys.executable, "-m", "admin", "serve"]


def exec_server(command: Callable[[], list[str]] = server_command) -> None:
    """Replace this process with the server (same pid: signals reach uvicorn directly)."""
    argv = command()
    for handler in logging.getLogger().handlers:
        handler.flush()
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(argv[0], argv)
