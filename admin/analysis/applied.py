"""Applied-file checksums: what each revision file was when a job applied it to a target.

``record`` runs in the transaction that finishes a job (``jobs.queue.finish``): for every
revision an upgrade applied it reads the file, and stores its sha256 and its content, after
checking the files against the plan fingerprint the job ran under. Afterwards ``drift``
names applied revisions whose file differs from what ran (with a diff), until an admin
acknowledges the change with a reason (``acknowledge``, audited). In production a job is
refused while one does (``refuse_drift``).
"""

from __future__ import annotations

import difflib
import hashlib
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from admin import audit
from admin.config import Settings
from admin.errors import AdminError, Conflict, InvalidInput, NotFound
from admin.history import Position, applied_set
from admin.migrations import Direction, Project, Step, target_key
from admin.migrations.plan import fingerprint
from admin.store.models import AppliedFile, Job, JobKind, JobStatus, utcnow

MAX_REASON = 500
MAX_DIFF_LINES = 400

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Drift:
    """An applied revision whose file changed since the job that applied it."""

    revision: str
    job_id: int
    applied_at: datetime
    applied_sha256: str
    file_sha256: str
    diff: str

    @property
    def summary(self) -> str:
        return (
            f"the file of {self.revision} changed since job {self.job_id} applied it "
            f"(sha256 {self.applied_sha256[:12]} then, {self.file_sha256[:12]} now)"
        )


def _applied_ids(job: Job, status: JobStatus) -> list[str]:
    plan = [str(r) for r in (job.plan or [])]
    return plan if status is JobStatus.SUCCEEDED else plan[: max(0, job.steps_done)]


def record(session: Session, settings: Settings, project: Project, job: Job) -> int:
    """Store the files an upgrade job applied (called as the job finishes); how many."""
    status = JobStatus(job.status)
    if job.kind != JobKind.UPGRADE.value or not job.plan:
        return 0
    ids = _applied_ids(job, status)
    graph = project.graph(max_age=0)
    files: list[tuple[str, str, str, str]] = []
    for rid in ids:
        known = graph.by_id.get(rid)
        if known is None:
            continue
        data = known.path.read_bytes()
        text = data.decode("utf-8", errors="replace")
        files.append((rid, str(known.path), hashlib.sha256(data).hexdigest(), text))
    all_files = {rid: sha for rid, _, sha, _ in files}
    steps = tuple(
        Step(str(r), Direction.UPGRADE, "", all_files.get(str(r), ""), (), ()) for r in job.plan
    )
    matches = fingerprint(Direction.UPGRADE, steps) == job.plan_fingerprint
    key = target_key(settings.database_url)
    now = utcnow()
    for rid, path, sha, content in files:
        session.add(
            AppliedFile(
                target_key=key,
                revision=rid,
                path=path,
                sha256=sha,
                content=content,
                matches_plan=matches,
                job_id=job.id,
                applied_at=now,
            )
        )
    return len(files)


def record_job(session: Session, settings: Settings, job: Job) -> int:
    """``record`` for the managed project; a file that cannot be read is logged, never
    fails the job's end."""
    from admin.migrations import open_project

    try:
        return record(
            session, settings, open_project(settings.alembic_config, settings.cache_dir), job
        )
    except (OSError, AdminError) as exc:
        log.warning("job %s: applied files not recorded: %s", job.id, exc)
        return 0


def latest(session: Session, key: str, revisions: Iterable[str]) -> dict[str, AppliedFile]:
    """The newest record of each revision applied to the target ``key``."""
    wanted = list(dict.fromkeys(revisions))
    found: dict[str, AppliedFile] = {}
    for start in range(0, len(wanted), 500):
        rows = session.scalars(
            select(AppliedFile)
            .where(
                AppliedFile.target_key == key, AppliedFile.revision.in_(wanted[start : start + 500])
            )
            .order_by(AppliedFile.id)
        )
        for row in rows:
            found[row.revision] = row
    return found


def _diff(row: AppliedFile, now: str, path: str) -> str:
    lines = difflib.unified_diff(
        row.content.splitlines(keepends=True),
        now.splitlines(keepends=True),
        fromfile=f"{path} (as job {row.job_id} applied it)",
        tofile=f"{path} (now)",
    )
    out = list(lines)[:MAX_DIFF_LINES]
    return "".join(out)


def _newest(session: Session, key: str, wanted: list[str] | None) -> dict[str, Any]:
    """The newest record's id and hashes per revision (of ``wanted``, or all of them)."""
    columns = select(
        AppliedFile.id, AppliedFile.revision, AppliedFile.sha256, AppliedFile.acknowledged_sha256
    ).where(AppliedFile.target_key == key)
    chunks = (
        [columns]
        if wanted is None
        else [
            columns.where(AppliedFile.revision.in_(wanted[i : i + 500]))
            for i in range(0, len(wanted), 500)
        ]
    )
    newest: dict[str, Any] = {}
    for query in chunks:
        for row in session.execute(query.order_by(AppliedFile.id)):
            newest[row.revision] = row
    return newest


def drift(
    session: Session,
    settings: Settings,
    project: Project,
    revisions: Iterable[str] | None,
    *,
    among: frozenset[str] | None = None,
) -> dict[str, Drift]:
    """Which of ``revisions`` (None: every recorded one, kept to ``among`` when given)
    changed since a job applied them, and nobody acknowledged it."""
    graph = project.graph()
    wanted = (
        None if revisions is None else [r for r in dict.fromkeys(revisions) if r in graph.by_id]
    )
    # Hashes only: a history page asks for 100 revisions, and contents are read for the
    # changed ones alone.
    newest = _newest(session, target_key(settings.database_url), wanted)
    found = {}
    for rid, row in newest.items():
        known = graph.by_id.get(rid)
        if known is None or (among is not None and rid not in among):
            continue
        if known.sha256 in (row.sha256, row.acknowledged_sha256):
            continue
        record_row = session.get(AppliedFile, row.id)
        assert record_row is not None
        try:
            now = known.path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            now = ""
        found[rid] = Drift(
            rid,
            record_row.job_id,
            record_row.applied_at,
            record_row.sha256,
            known.sha256,
            _diff(record_row, now, known.path.name),
        )
    return found


def applied_drift(
    session: Session, settings: Settings, project: Project, current: tuple[str, ...]
) -> dict[str, Drift]:
    """Drift among the revisions applied to the database now (``current``: its heads)."""
    graph = project.graph()
    # Kept per graph and position (a dashboard poll does not walk the history again).
    among = applied_set(graph, Position(known=True, current=current))
    assert among is not None
    return drift(session, settings, project, None, among=among)


def refuse_drift(
    session: Session, settings: Settings, project: Project, current: tuple[str, ...]
) -> None:
    """Production: a job is refused (409) while an applied file differs, unacknowledged."""
    if not settings.is_production:
        return
    changed = applied_drift(session, settings, project, current)
    if changed:
        names = ", ".join(sorted(changed)[:5])
        raise Conflict(
            f"the file of applied revision(s) {names} changed since a job applied it: an admin "
            "must review the diff on the revision's page and acknowledge it (with a reason) "
            "before anything is applied in production",
            title="Applied file changed",
        )


def acknowledge(
    session: Session,
    settings: Settings,
    project: Project,
    revision: str,
    reason: str,
    actor: audit.Actor,
) -> AppliedFile:
    """Accept the file as it is now for ``revision`` (audited); 400 without a reason."""
    reason = " ".join((reason or "").split())
    if not reason:
        raise InvalidInput("say why the changed file is acceptable (a reason is required)")
    if len(reason) > MAX_REASON:
        raise InvalidInput(f"the reason is too long: at most {MAX_REASON} characters")
    known = project.graph(max_age=0).get(revision)
    row = latest(session, target_key(settings.database_url), [known.id]).get(known.id)
    if row is None:
        raise NotFound(f"no job has applied {known.id} to this database: nothing to acknowledge")
    if known.sha256 in (row.sha256, row.acknowledged_sha256):
        raise InvalidInput(f"the file of {known.id} has not changed since it was applied")
    row.acknowledged_sha256 = known.sha256
    row.acknowledged_by = actor.name
    row.acknowledged_at = utcnow()
    row.acknowledged_reason = reason
    audit.record(
        session,
        audit.AppliedFileAcknowledged(
            revision=known.id,
            applied_sha256=row.sha256,
            file_sha256=known.sha256,
            job_id=row.job_id,
            reason=reason,
        ),
        actor,
        revision=known.id,
    )
    return row
