"""The ``rehearsal`` job, as the worker runs it.

1. the newest verified backup of the target taken at its current revision (one is taken
   and verified first, under the target's migration lock, when there is none);
2. a scratch database filled from it (``scratch``), after a check of free disk, then
   ANALYZE (a restore has no statistics; production has, and plans depend on them);
3. the plan, run as an Apply runs it (same files, plan fingerprint checked, the same
   LOCK_TIMEOUT / STATEMENT_TIMEOUT and session settings), measured by ``probe``;
4. the way back: a downgrade to where the copy started, its schema compared with the one
   before (``catalog``), then the upgrade again;
5. the report in the store (``records``), an audit event, and the scratch database dropped
   (kept after a failure only with REHEARSAL_KEEP_FAILED, and then named).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import ExitStack
from typing import TYPE_CHECKING, Any

from sqlalchemy import select, text

from admin import audit, migrations
from admin.backups import handlers as backup_jobs
from admin.backups import records as backup_records
from admin.backups.handlers import sigterm_stops
from admin.errors import describe
from admin.jobs.protocol import Message, heads_text
from admin.jobs.queue import requester
from admin.rehearsal import catalog, records, scratch
from admin.rehearsal.probe import Probe
from admin.rehearsal.report import summarize
from admin.store.models import Backup, BackupStatus, utcnow

if TYPE_CHECKING:
    from admin.jobs.worker import Context

SUCCEEDED = 0
BACKUP_REASON = "before-rehearsal"


def run_rehearsal(ctx: Context) -> int:
    settings, out = ctx.settings, ctx.out
    job = ctx.job
    project = migrations.open_project(settings.alembic_config, settings.cache_dir)
    backup = _backup(ctx)
    plan_fp = job.plan_fingerprint
    sql_fp = _sql_fingerprint(ctx, project)
    rehearsal_id = records.start(
        ctx.runtime,
        job_id=job.id,
        target_key=migrations.target_key(settings.database_url),
        target_revision=job.target_revision,
        plan=job.plan,
        plan_fingerprint=plan_fp,
        sql_fingerprint=sql_fp,
        backup_id=backup.id,
        backup_revision=backup.revision,
        backup_taken_at=backup.created_at,
        requested_by=job.requested_by,
    )
    out.send(
        Message("rehearsal", f"rehearsal {rehearsal_id}", "info", {"rehearsal_id": rehearsal_id})
    )
    server = scratch.server_url(settings.database_url, settings.rehearsal_database_url)
    _clean_abandoned(ctx, server)
    name = scratch.scratch_name(settings.database_url, job.id)
    copy: scratch.Scratch | None = None
    report: dict[str, Any] = {}
    status, error = records.FAILED, None
    started = time.monotonic()
    try:
        scratch.check_room(scratch.size_of(settings.database_url), server, out.log)
        path = backup_records.path_of(settings, backup)
        if path is None:
            raise scratch.RehearsalError(f"backup {backup.id} has no file")
        restore_began = time.monotonic()
        with sigterm_stops() as stop:
            copy = scratch.restore(
                path,
                backup.format,
                server,
                name,
                pg_bin_dir=settings.pg_bin_dir,
                on_line=backup_jobs.sink(out),
                should_stop=stop,
                expected_sha256=backup.sha256,
            )
        restore_seconds = time.monotonic() - restore_began
        records.update(ctx.runtime, rehearsal_id, scratch_database=copy.name)
        out.log(f"scratch database {copy.name} ({copy.display}) restored in {restore_seconds:.1f}s")
        report = rehearse(ctx, project, copy)
        report["restore"] = {
            "seconds": round(restore_seconds, 3),
            "backup_bytes": backup.size_bytes,
            "bytes_per_second": int((backup.size_bytes or 0) / restore_seconds)
            if restore_seconds
            else None,
        }
        report["backup"] = {
            "id": backup.id,
            "revision": backup.revision,
            "taken_at": backup.created_at.isoformat() if backup.created_at else None,
        }
        report["summary"] = summarize(report, settings.rehearsal_lock_warning)
        report["seconds"] = round(time.monotonic() - started, 3)
        if report["upgrade"]["error"] is None:
            status = records.SUCCEEDED
        else:
            error = report["upgrade"]["error"]
    except BaseException as exc:
        error = describe(exc) if isinstance(exc, Exception) else "cancelled on request"
        raise
    finally:
        _end(ctx, rehearsal_id, copy, server, report, status, error)
    if status != records.SUCCEEDED:
        out.result("failed", error=f"the plan failed on the scratch copy: {error}")
        return 1
    summary = report["summary"]
    out.log(f"rehearsal {rehearsal_id} succeeded: {summary['headline']}")
    out.result("succeeded", backup_id=backup.id, rehearsal_id=rehearsal_id)
    return SUCCEEDED


def _end(
    ctx: Context,
    rehearsal_id: int,
    copy: scratch.Scratch | None,
    server: str,
    report: dict[str, Any],
    status: str,
    error: str | None,
) -> None:
    """Drop (or keep) the scratch database, store the report, audit the end."""
    settings, out = ctx.settings, ctx.out
    kept = False
    if copy is not None:
        if status != records.SUCCEEDED and settings.rehearsal_keep_failed:
            kept = True
            out.log(
                f"REHEARSAL_KEEP_FAILED: the scratch database {copy.name} ({copy.display}) is "
                "kept for inspection; drop it when done",
                "warning",
            )
        else:
            scratch.drop(copy, server, out.log)
    with ctx.runtime.transaction() as session:
        row = records.get(session, rehearsal_id)
        row.status = status
        row.error = error
        row.report = report or None
        row.round_trip = (report.get("round_trip") or {}).get("result")
        row.scratch_kept = kept
        row.finished_at = utcnow()
        audit.record(
            session,
            audit.RehearsalFinished(
                rehearsal_id=rehearsal_id,
                job_id=row.job_id,
                status=status,
                backup_id=row.backup_id,
                plan_fingerprint=row.plan_fingerprint,
                sql_fingerprint=row.sql_fingerprint,
                round_trip=row.round_trip,
                scratch_database=row.scratch_database,
                scratch_kept=kept,
                error=error,
                outcome=audit.Outcome.SUCCESS
                if status == records.SUCCEEDED
                else audit.Outcome.FAILURE,
            ),
            requester(ctx.job),
            revision=row.target_revision,
        )


def _clean_abandoned(ctx: Context, server: str) -> None:
    """Drop the scratch databases of earlier rehearsals whose worker was killed (a SIGKILL
    leaves no chance to drop them), and mark those rehearsals interrupted."""
    key = migrations.target_key(ctx.settings.database_url)
    with ctx.runtime.transaction() as session:
        for row in records.abandoned(session, key):
            if row.scratch_database:
                copy = scratch.scratch_for(server, row.scratch_database)
                scratch.drop(copy, server, ctx.out.log)
            row.status = "interrupted"
            row.error = row.error or (
                f"its job {row.job_id} ended without finishing it; the scratch database was "
                f"dropped by job {ctx.job.id}"
            )
            row.finished_at = utcnow()


def _backup(ctx: Context) -> Backup:
    """The newest verified backup at the target's current revision; taken now if none."""
    settings, out = ctx.settings, ctx.out
    current = backup_jobs.read_revision(settings)
    key = migrations.target_key(settings.database_url)
    with ctx.runtime.reads() as session:
        newest = session.scalar(
            select(Backup)
            .where(Backup.target_key == key, Backup.status == BackupStatus.VERIFIED.value)
            .order_by(Backup.id.desc())
            .limit(1)
        )
        if newest is not None:
            session.expunge(newest)
    if newest is not None and newest.revision == current and newest.file_name:
        out.send(
            Message(
                "backup",
                f"rehearsing on backup {newest.id} (taken {newest.created_at:%Y-%m-%d %H:%M} UTC "
                f"at revision {current})",
                "info",
                {"backup_id": newest.id},
            )
        )
        return newest
    why = (
        "no verified backup of the target"
        if newest is None
        else f"the newest verified backup ({newest.id}) is at {newest.revision or 'an unknown'} "
        f"revision, the target at {current}"
    )
    out.log(f"{why}: taking one first")
    with backup_jobs._lock(ctx):
        backup_id, _ = backup_jobs.take_and_verify(
            ctx, reason=BACKUP_REASON, fmt=settings.backup_format
        )
    with ctx.runtime.reads() as session:
        taken = backup_records.get(session, backup_id)
        session.expunge(taken)
    return taken


def _sql_fingerprint(ctx: Context, project: migrations.Project) -> str | None:
    """The plan's canonical offline script's fingerprint, as the preview shows it."""
    job, settings = ctx.job, ctx.settings
    before = job.revision_before or "base"
    current = () if before == "base" else tuple(before.split(","))
    try:
        plan = migrations.make_plan(
            project,
            migrations.Direction.UPGRADE,
            job.target_revision or "heads",
            current,
            max_age=0,
        )
        if plan.fingerprint != job.plan_fingerprint:
            raise migrations.PlanChanged(
                "the plan's revision files changed since the rehearsal was requested"
            )
        dialect = (
            "postgresql" if migrations.database.is_postgresql(settings.database_url) else "sqlite"
        )
        return migrations.render(project, plan, settings.database_url, dialect).fingerprint
    except migrations.PlanChanged:
        raise
    except Exception as exc:  # a plan that cannot render offline still rehearses
        ctx.out.log(f"warning: the plan's SQL fingerprint cannot be computed: {describe(exc)}")
        return None


def rehearse(ctx: Context, project: migrations.Project, copy: scratch.Scratch) -> dict[str, Any]:
    """Upgrade (measured), downgrade back, compare, upgrade again, on the scratch copy."""
    job, out = ctx.job, ctx.out
    start = heads_text(migrations.read_current(project, copy.url)[1])
    if start != (job.revision_before or "base"):
        raise scratch.RehearsalError(
            f"the scratch copy is at {start}, the plan starts at {job.revision_before}"
        )
    with ExitStack() as stack:
        observer = None
        if not copy.is_sqlite:
            engine = migrations.new_engine(copy.url, autocommit=True)
            stack.callback(engine.dispose)
            observer = stack.enter_context(engine.connect())
            out.log("ANALYZE on the scratch copy (a restore has no statistics)")
            observer.execute(text("ANALYZE"))
        before = _schema(copy.url)
        size_before = _size(observer)
        probe = Probe(observer, out.log, project.version_table)
        upgrade: dict[str, Any] = {"error": None}
        began = time.monotonic()
        try:
            with probe.listening():
                _run(
                    ctx,
                    project,
                    copy.url,
                    migrations.Command.UPGRADE,
                    job.target_revision or "heads",
                    expected=job.plan_fingerprint,
                    on=probe.on_event,
                )
        except Exception as exc:
            upgrade["error"] = describe(exc)
            out.log(f"the upgrade failed on the scratch copy: {upgrade['error']}", "error")
        probe.finish()
        upgrade["seconds"] = round(time.monotonic() - began, 4)
        first = probe.first
        upgrade["steps"] = [
            step.as_dict(first.tuples if first is not None else lambda _: None)
            for step in probe.steps
        ]
        size_after = _size(observer)
        report: dict[str, Any] = {
            "scratch": copy.name,
            "start": start,
            "target": job.target_revision,
            "upgrade": upgrade,
            "size_before": size_before,
            "size_after": size_after,
            "postgresql": not copy.is_sqlite,
        }
        if upgrade["error"] is None:
            report["round_trip"] = _round_trip(ctx, project, copy, start, before)
        else:
            report["round_trip"] = {"result": "not run", "reason": "the upgrade failed"}
    return report


def _round_trip(
    ctx: Context,
    project: migrations.Project,
    copy: scratch.Scratch,
    start: str,
    before: catalog.Snapshot,
) -> dict[str, Any]:
    out, job = ctx.out, ctx.job
    result: dict[str, Any] = {"differences": []}
    out.log(f"round trip: downgrading the scratch copy back to {start}")
    if "," in start:
        result.update(result="stopped", reason=f"the plan starts at several heads ({start})")
    else:
        try:
            _run(ctx, project, copy.url, migrations.Command.DOWNGRADE, start, expected=None)
        except Exception as exc:
            at = heads_text(migrations.read_current(project, copy.url)[1])
            result.update(result="stopped", stopped_at=at, reason=describe(exc))
            out.log(f"round trip stopped at {at}: {describe(exc)}", "warning")
        else:
            found = catalog.differences(before, _schema(copy.url))
            result.update(result="identical" if not found else "different", differences=found)
            out.log(
                "round trip: identical"
                if not found
                else f"round trip: {len(found)} difference(s): " + "; ".join(found[:5]),
                "info" if not found else "warning",
            )
    out.log(f"upgrading the scratch copy again to {job.target_revision}")
    began = time.monotonic()
    try:
        _run(
            ctx,
            project,
            copy.url,
            migrations.Command.UPGRADE,
            job.target_revision or "heads",
            expected=None,
        )
        result["upgrade_again"] = {"ok": True, "seconds": round(time.monotonic() - began, 4)}
    except Exception as exc:
        result["upgrade_again"] = {"ok": False, "error": describe(exc)}
        out.log(f"the second upgrade failed: {describe(exc)}", "error")
    return result


def _logger(ctx: Context) -> Callable[[migrations.EngineEvent], None]:
    out = ctx.out

    def on_event(event_: migrations.EngineEvent) -> None:
        if event_.kind is migrations.EventKind.SQL:
            out.send(Message("sql", event_.text, "sql"))
        elif event_.kind in (migrations.EventKind.STEP_STARTED, migrations.EventKind.STEP_FINISHED):
            out.log(f"[{event_.step}/{event_.steps}] {event_.text}", "step")
        elif event_.kind is migrations.EventKind.WARNING:
            out.log(event_.text, event_.level or "warning")
        else:
            out.log(event_.text, event_.level or "info")

    return on_event


def _run(
    ctx: Context,
    project: migrations.Project,
    url: str,
    command: migrations.Command,
    target: str,
    *,
    expected: str | None,
    on: Any = None,
) -> tuple[str, ...]:
    """One run on the scratch copy, as the worker runs a migration job on the target."""
    order = ctx.order
    logger = _logger(ctx)

    def on_event(event_: migrations.EngineEvent) -> None:
        if on is not None:
            on(event_)
        logger(event_)

    with migrations.migration_lock(url, wait=order.migration_lock_wait, owner=ctx.lock_owner):
        engine = migrations.new_engine(url, application_name=ctx.lock_owner)
        try:
            with engine.connect() as connection:
                return migrations.run(
                    project,
                    connection,
                    command,
                    target,
                    on_event=on_event,
                    lock_timeout=order.lock_timeout,
                    statement_timeout=order.statement_timeout,
                    expected_fingerprint=expected,
                    should_stop=ctx.watchman.should_stop,
                )
        finally:
            engine.dispose()


def _schema(url: str) -> catalog.Snapshot:
    engine = migrations.new_engine(url)
    try:
        with engine.connect() as connection:
            return catalog.snapshot(connection)
    finally:
        engine.dispose()


def _size(observer: Any) -> int | None:
    if observer is None:
        return None
    return int(observer.execute(text("SELECT pg_database_size(current_database())")).scalar_one())
