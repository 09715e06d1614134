"""Append-only, hash-chained audit events.

Every state change records one event in the same transaction as the change. Each row
carries the sha256 of the previous row and its own canonical JSON, so an edit, a
deletion or a reordering behind the panel's back breaks the chain at that row.
Appends are serialized (an advisory transaction lock on PostgreSQL, the write lock
that BEGIN IMMEDIATE takes on SQLite) so concurrent processes cannot fork the chain.
"""

from __future__ import annotations

import dataclasses
import getpass
import hashlib
import json
import logging
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, ClassVar, cast

from sqlalchemy import event as sa_event
from sqlalchemy import select, text
from sqlalchemy.orm import Session

from admin.store.models import AuditEvent, Job, Source, utcnow

GENESIS = "0" * 64
# pg_advisory_xact_lock key that serializes appends to the chain.
_CHAIN_LOCK = 0x5C4E_A0D1

log = logging.getLogger(__name__)
event_log = logging.getLogger("admin.audit.events")


class Outcome(StrEnum):
    SUCCESS = "success"
    FAILURE = "failure"
    DENIED = "denied"


@dataclass(frozen=True)
class Actor:
    """Who did something, in what role, from where."""

    name: str
    role: str | None
    source: Source
    client_addr: str | None = None

    @classmethod
    def os_user(cls, source: Source = Source.CLI) -> Actor:
        """The person at the terminal (CLI, entrypoint)."""
        try:
            name = getpass.getuser()
        except (KeyError, OSError):
            name = "unknown"
        return cls(name=name, role=None, source=source)


EVENT_TYPES: dict[str, type[Event]] = {}


@dataclass(frozen=True, kw_only=True)
class Event:
    """Base of the closed set of audit events; each subclass names its action."""

    action: ClassVar[str]
    outcome: Outcome = Outcome.SUCCESS

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        action = cls.__dict__.get("action")
        if action is None:
            return
        if action in EVENT_TYPES:
            raise TypeError(f"audit action {action!r} is defined twice")
        EVENT_TYPES[action] = cls

    def target(self) -> str | None:
        """What the event is about, as ``kind:name`` (``user:bob``, ``job:12``)."""
        return None

    def details(self) -> dict[str, Any]:
        return {
            f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "outcome"
        }


# Sign-in and users.


@dataclass(frozen=True, kw_only=True)
class _UserEvent(Event):
    username: str

    def target(self) -> str | None:
        return f"user:{self.username}"


@dataclass(frozen=True, kw_only=True)
class LoginSucceeded(_UserEvent):
    action = "login-succeeded"


@dataclass(frozen=True, kw_only=True)
class LoginFailed(_UserEvent):
    action = "login-failed"
    reason: str
    outcome: Outcome = Outcome.FAILURE


@dataclass(frozen=True, kw_only=True)
class Logout(_UserEvent):
    action = "logout"


@dataclass(frozen=True, kw_only=True)
class UserCreated(_UserEvent):
    action = "user-created"
    role: str


@dataclass(frozen=True, kw_only=True)
class RoleChanged(_UserEvent):
    action = "role-changed"
    old_role: str
    new_role: str


@dataclass(frozen=True, kw_only=True)
class UserDisabled(_UserEvent):
    action = "user-disabled"


@dataclass(frozen=True, kw_only=True)
class UserEnabled(_UserEvent):
    action = "user-enabled"


@dataclass(frozen=True, kw_only=True)
class PasswordChanged(_UserEvent):
    action = "password-changed"


@dataclass(frozen=True, kw_only=True)
class PasswordReset(_UserEvent):
    action = "password-reset"


@dataclass(frozen=True, kw_only=True)
class PasswordRehashed(_UserEvent):
    """A stored hash in an old scheme was replaced by argon2id at sign-in."""

    action = "password-rehashed"
    old_scheme: str


@dataclass(frozen=True, kw_only=True)
class ApiTokenCreated(_UserEvent):
    action = "api-token-created"
    token_id: int
    name: str


@dataclass(frozen=True, kw_only=True)
class ApiTokenRevoked(_UserEvent):
    action = "api-token-revoked"
    token_id: int
    name: str


# Requests refused.


@dataclass(frozen=True, kw_only=True)
class AccessDenied(Event):
    """A request refused: for its role (403), a conflict (409), no or a bad credential on a
    route that changes something or with a token (401), a control character (400).

    ``repeated``: how many more refusals like this one (same address, route and status,
    anonymous) were held back since the last one recorded, so a flood grows the trail by
    one event a minute, not one a request.
    """

    action = "access-denied"
    method: str
    path: str
    status: int
    reason: str
    repeated: int = 0
    outcome: Outcome = Outcome.DENIED

    def target(self) -> str | None:
        return f"path:{self.path}"

    def details(self) -> dict[str, Any]:
        details = super().details()
        if not self.repeated:
            del details["repeated"]
        return details


# The store.


@dataclass(frozen=True, kw_only=True)
class StoreUpgraded(Event):
    action = "store-upgraded"
    revision_before: str | None
    revision_after: str | None

    def target(self) -> str | None:
        return "store"


# The audit trail itself (admin/web/routes/audit.py, schema-admin audit).


@dataclass(frozen=True, kw_only=True)
class AuditVerified(Event):
    """Someone walked the hash chain; a broken chain is recorded as a failure."""

    action = "audit-verified"
    count: int
    head: str
    broken_id: int | None
    problem: str | None

    def target(self) -> str | None:
        return "audit"

    @classmethod
    def of(cls, report: ChainReport) -> AuditVerified:
        """The event recording this walk of the chain and its result."""
        return cls(
            count=report.count,
            head=report.head,
            broken_id=report.broken_id,
            problem=report.problem,
            outcome=Outcome.SUCCESS if report.ok else Outcome.FAILURE,
        )


@dataclass(frozen=True, kw_only=True)
class AuditExported(Event):
    """The trail (events matching ``filters``, up to ``upto_id``) was exported."""

    action = "audit-exported"
    format: str
    filters: dict[str, Any]
    upto_id: int | None

    def target(self) -> str | None:
        return "audit"


# Migrations, jobs and backups (their services record these).


@dataclass(frozen=True, kw_only=True)
class _JobEvent(Event):
    job_id: int
    kind: str

    def target(self) -> str | None:
        return f"job:{self.job_id}"


@dataclass(frozen=True, kw_only=True)
class JobQueued(_JobEvent):
    action = "job-queued"
    target_revision: str | None
    plan: list[str]
    plan_fingerprint: str | None
    revision_before: str | None
    # REQUIRE_REHEARSAL: the rehearsal that cleared this upgrade (admin/rehearsal).
    rehearsal_id: int | None = None

    def details(self) -> dict[str, Any]:
        details = super().details()
        if self.rehearsal_id is None:
            del details["rehearsal_id"]  # events from before rehearsals read the same
        return details


@dataclass(frozen=True, kw_only=True)
class JobStarted(_JobEvent):
    action = "job-started"
    worker_pid: int | None


@dataclass(frozen=True, kw_only=True)
class JobFinished(_JobEvent):
    action = "job-finished"
    status: str
    revision_before: str | None
    revision_after: str | None
    plan_fingerprint: str | None
    sql_fingerprint: str | None
    backup_id: int | None
    error: str | None


@dataclass(frozen=True, kw_only=True)
class JobCancelRequested(_JobEvent):
    action = "job-cancel-requested"


@dataclass(frozen=True, kw_only=True)
class JobInterrupted(_JobEvent):
    action = "job-interrupted"
    revision_after: str | None
    reason: str
    outcome: Outcome = Outcome.FAILURE


@dataclass(frozen=True, kw_only=True)
class JobRefused(Event):
    action = "job-refused"
    kind: str
    target_revision: str | None
    reason: str
    outcome: Outcome = Outcome.DENIED

    def target(self) -> str | None:
        return f"revision:{self.target_revision}" if self.target_revision else None


# SQL previews (admin/preview.py): what a reviewer saw, before any job ran it.


@dataclass(frozen=True, kw_only=True)
class _SqlEvent(Event):
    direction: str
    target_revision: str
    from_revisions: list[str]
    from_database: bool
    revisions: list[str]
    plan_fingerprint: str
    sql_fingerprint: str | None
    dialect: str
    renderable: bool

    def target(self) -> str | None:
        return f"revision:{self.target_revision}"


@dataclass(frozen=True, kw_only=True)
class SqlPreviewed(_SqlEvent):
    """A plan and its offline SQL were shown (preview page or the API)."""

    action = "sql-previewed"


@dataclass(frozen=True, kw_only=True)
class SqlDownloaded(_SqlEvent):
    """A plan's offline SQL was downloaded as a .sql file."""

    action = "sql-downloaded"


@dataclass(frozen=True, kw_only=True)
class RevisionSqlViewed(Event):
    """One revision's own SQL (each way) was shown: its page or the API, to any role."""

    action = "revision-sql-viewed"
    revision_id: str
    dialect: str
    upgrade_sql: bool
    downgrade_sql: bool
    sha256: str

    def target(self) -> str | None:
        return f"revision:{self.revision_id}"


# The target database itself (schema-admin init-db).


@dataclass(frozen=True, kw_only=True)
class DatabaseCreated(Event):
    """A missing target database was created (``url``: its URL, password masked)."""

    action = "database-created"
    name: str
    url: str

    def target(self) -> str | None:
        return f"database:{self.name}"


# The container's start (schema-admin entrypoint).


@dataclass(frozen=True, kw_only=True)
class EntrypointStarted(Event):
    """The entrypoint handed over to the server (degraded: its start-up migration failed)."""

    action = "entrypoint-started"
    state: str
    job_id: int | None
    created_databases: list[str]
    degraded: bool
    error: str | None

    def target(self) -> str | None:
        return "entrypoint"


@dataclass(frozen=True, kw_only=True)
class EntrypointFailed(Event):
    """The entrypoint stopped the start: the panel was not started."""

    action = "entrypoint-failed"
    job_id: int | None
    created_databases: list[str]
    reason: str
    outcome: Outcome = Outcome.FAILURE

    def target(self) -> str | None:
        return "entrypoint"


# Backups and restores (admin/backups: the worker records these with the job's requester).


@dataclass(frozen=True, kw_only=True)
class _BackupEvent(Event):
    backup_id: int

    def target(self) -> str | None:
        return f"backup:{self.backup_id}"


@dataclass(frozen=True, kw_only=True)
class BackupStarted(_BackupEvent):
    """A backup job (or a migration's backup gate) began writing a backup."""

    action = "backup-started"
    job_id: int | None
    reason: str
    format: str
    revision: str | None


@dataclass(frozen=True, kw_only=True)
class BackupVerified(_BackupEvent):
    """A backup was read back in full and found complete (after it was taken, or again)."""

    action = "backup-verified"
    job_id: int | None
    file_name: str
    size_bytes: int
    sha256: str
    verify_ms: int
    detail: str
    again: bool


@dataclass(frozen=True, kw_only=True)
class BackupFailed(_BackupEvent):
    """A backup could not be taken, failed its verification, or was cancelled."""

    action = "backup-failed"
    job_id: int | None
    file_name: str | None
    error: str
    outcome: Outcome = Outcome.FAILURE


@dataclass(frozen=True, kw_only=True)
class BackupDownloaded(_BackupEvent):
    action = "backup-downloaded"
    file_name: str
    size_bytes: int


@dataclass(frozen=True, kw_only=True)
class BackupDeleted(_BackupEvent):
    action = "backup-deleted"
    file_name: str | None
    file_removed: bool


@dataclass(frozen=True, kw_only=True)
class BackupsPruned(Event):
    """Retention removed old backups (BACKUP_KEEP_LAST / BACKUP_KEEP_DAYS)."""

    action = "backups-pruned"
    backup_ids: list[int]
    file_names: list[str]
    keep_last: int
    keep_days: int
    job_id: int | None = None

    def target(self) -> str | None:
        return "backups"


@dataclass(frozen=True, kw_only=True)
class RestoreFinished(_BackupEvent):
    """A restore job ended: where the backup went, and the revision it brought back."""

    action = "restore-finished"
    job_id: int
    mode: str
    database_name: str | None
    revision_before: str | None
    revision_after: str | None
    leftover_tables: list[str]
    error: str | None


@dataclass(frozen=True, kw_only=True)
class RehearsalFinished(Event):
    """A rehearsal ended: its plan on a scratch copy, its round trip (admin/rehearsal)."""

    action = "rehearsal-finished"
    rehearsal_id: int
    job_id: int
    status: str
    backup_id: int | None
    plan_fingerprint: str | None
    sql_fingerprint: str | None
    round_trip: str | None
    scratch_database: str | None
    scratch_kept: bool
    error: str | None

    def target(self) -> str | None:
        return f"rehearsal:{self.rehearsal_id}"


@dataclass(frozen=True, kw_only=True)
class RestoreRefused(Event):
    """A restore request refused before any job ran (wrong confirmation, bad backup)."""

    action = "restore-refused"
    backup_id: int | None
    mode: str
    reason: str
    outcome: Outcome = Outcome.DENIED

    def target(self) -> str | None:
        return f"backup:{self.backup_id}" if self.backup_id is not None else "backups"


@dataclass(frozen=True, kw_only=True)
class BackupRefused(Event):
    """A backup, verify or delete request refused before anything ran (bad input, no
    confirmation); refusals for the role (403) or a conflict (409) are AccessDenied."""

    action = "backup-refused"
    backup_id: int | None
    request: str
    reason: str
    outcome: Outcome = Outcome.DENIED

    def target(self) -> str | None:
        return f"backup:{self.backup_id}" if self.backup_id is not None else "backups"


# Safety (admin/analysis): an applied revision file edited since, acknowledged by an admin.


@dataclass(frozen=True, kw_only=True)
class AppliedFileAcknowledged(Event):
    """An admin accepted that an applied revision's file now differs from what ran."""

    action = "applied-file-acknowledged"
    revision: str
    applied_sha256: str
    file_sha256: str
    job_id: int
    reason: str

    def target(self) -> str | None:
        return f"revision:{self.revision}"


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def _jsonable(details: dict[str, Any]) -> dict[str, Any]:
    """Details exactly as they read back from a JSON column (hashing needs a fixed form)."""
    result: dict[str, Any] = json.loads(_canonical(details))
    return result


def _stamp(moment: datetime) -> str:
    return moment.isoformat(timespec="microseconds")


def row_hash(row: AuditEvent) -> str:
    """sha256 over the previous hash and the row's canonical JSON."""
    body = {
        "created_at": _stamp(row.created_at),
        "actor": row.actor,
        "actor_role": row.actor_role,
        "source": row.source,
        "client_addr": row.client_addr,
        "action": row.action,
        "target": row.target,
        "outcome": row.outcome,
        "job_id": row.job_id,
        "backup_id": row.backup_id,
        "revision": row.revision,
        "details": row.details,
    }
    return hashlib.sha256((row.prev_hash + _canonical(body)).encode()).hexdigest()


def _lock_chain(session: Session) -> None:
    bind = session.get_bind()
    if bind.dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _CHAIN_LOCK})


def record(
    session: Session,
    event: Event,
    actor: Actor,
    *,
    revision: str | None = None,
) -> AuditEvent:
    """Append ``event`` in the session's transaction (committed with the change it records)."""
    details = _jsonable(event.details())
    _lock_chain(session)
    prev = session.scalar(select(AuditEvent.hash).order_by(AuditEvent.id.desc()).limit(1))
    row = AuditEvent(
        created_at=utcnow(),
        actor=actor.name,
        actor_role=actor.role,
        source=actor.source.value,
        client_addr=actor.client_addr,
        action=event.action,
        target=event.target(),
        outcome=event.outcome.value,
        job_id=details.get("job_id"),
        backup_id=details.get("backup_id"),
        revision=revision,
        details=details,
        prev_hash=prev or GENESIS,
    )
    row.hash = row_hash(row)
    session.add(row)
    session.flush()
    session.info.setdefault("audit_pending", []).append(row)
    return row


def as_dict(row: AuditEvent) -> dict[str, Any]:
    """An event as plain data (exports, the JSON log line)."""
    return {
        "id": row.id,
        "created_at": _stamp(row.created_at),
        "actor": row.actor,
        "actor_role": row.actor_role,
        "source": row.source,
        "client_addr": row.client_addr,
        "action": row.action,
        "target": row.target,
        "outcome": row.outcome,
        "job_id": row.job_id,
        "backup_id": row.backup_id,
        "revision": row.revision,
        "details": row.details,
        "prev_hash": row.prev_hash,
        "hash": row.hash,
    }


@sa_event.listens_for(Session, "after_commit")
def _log_committed(session: Session) -> None:
    """Write committed events to the ``admin.audit.events`` logger (for log collectors)."""
    rows = session.info.pop("audit_pending", [])
    if rows and event_log.isEnabledFor(logging.INFO):
        for row in rows:
            event_log.info(_canonical(as_dict(row)))


@sa_event.listens_for(Session, "after_rollback")
def _forget_rolled_back(session: Session) -> None:
    session.info.pop("audit_pending", None)


@dataclass(frozen=True)
class ChainReport:
    """The result of walking the chain."""

    count: int
    head: str
    broken_id: int | None = None
    problem: str | None = None

    @property
    def ok(self) -> bool:
        return self.broken_id is None


def verify(session: Session, batch: int = 2000) -> ChainReport:
    """Walk the chain in order; report the first broken link or the head hash and count."""
    expected_prev = GENESIS
    count = 0
    last_id = 0
    table = AuditEvent.__table__
    while True:
        # Plain rows, not ORM objects: about twice as fast over a long chain (row_hash reads
        # attributes only, and a row has them under the same names).
        rows = session.execute(
            select(table).where(table.c.id > last_id).order_by(table.c.id).limit(batch)
        ).all()
        if not rows:
            return ChainReport(count=count, head=expected_prev)
        for row in rows:
            if row.prev_hash != expected_prev:
                return ChainReport(
                    count=count,
                    head=expected_prev,
                    broken_id=row.id,
                    problem="its previous-hash does not match the row before it "
                    "(a row was deleted or inserted)",
                )
            if row_hash(cast(AuditEvent, row)) != row.hash:
                return ChainReport(
                    count=count,
                    head=expected_prev,
                    broken_id=row.id,
                    problem="its content does not match its hash (the row was changed)",
                )
            expected_prev = row.hash
            count += 1
            last_id = row.id


# Who applied a revision (the revision page's "applied by X at T (job N)").

_APPLYING_KINDS = ("upgrade", "stamp")


@dataclass(frozen=True)
class Applied:
    """The last successful job that applied a revision."""

    actor: str
    source: str
    at: datetime
    job_id: int | None
    event_id: int


def last_applied(session: Session, revision_id: str, batch: int = 200) -> Applied | None:
    """The newest successful upgrade or stamp that applied ``revision_id``, or None.

    Read from job-finished events (newest first, through the action index): an upgrade
    applied every revision of its plan, and a job applied the revision(s) it ended at.
    A later downgrade does not erase the fact; the revision page shows the current state.
    """
    before: int | None = None
    while True:
        query = (
            select(AuditEvent, Job.plan)
            .outerjoin(Job, Job.id == AuditEvent.job_id)
            .where(
                AuditEvent.action == JobFinished.action,
                AuditEvent.outcome == Outcome.SUCCESS.value,
            )
            .order_by(AuditEvent.id.desc())
            .limit(batch)
        )
        if before is not None:
            query = query.where(AuditEvent.id < before)
        rows = session.execute(query).all()
        if not rows:
            return None
        for row, plan in rows:
            if row.details.get("kind") not in _APPLYING_KINDS:
                continue
            after = (row.revision or "").split(",")
            planned = [str(p) for p in plan or []] if row.details.get("kind") == "upgrade" else []
            if revision_id in after or revision_id in planned:
                return Applied(row.actor, row.source, row.created_at, row.job_id, row.id)
        before = rows[-1][0].id
