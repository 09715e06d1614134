"""The store's tables: the panel's own state, never the target's."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    text,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# SQLite's INTEGER PRIMARY KEY is its rowid; BigInteger would lose autoincrement there.
BigId = BigInteger().with_variant(Integer(), "sqlite")


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on both dialects (SQLite stores naive values)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class Role(StrEnum):
    VIEWER = "viewer"
    REVIEWER = "reviewer"
    OPERATOR = "operator"
    ADMIN = "admin"

    @property
    def rank(self) -> int:
        return list(Role).index(self)

    def at_least(self, other: Role) -> bool:
        return self.rank >= other.rank


class JobKind(StrEnum):
    UPGRADE = "upgrade"
    DOWNGRADE = "downgrade"
    STAMP = "stamp"
    BACKUP = "backup"
    RESTORE = "restore"
    VERIFY = "verify"  # read a backup back in full again
    REHEARSAL = "rehearsal"  # the upgrade plan on a scratch copy (admin/rehearsal)


class JobStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    INTERRUPTED = "interrupted"

    @property
    def active(self) -> bool:
        return self in (JobStatus.QUEUED, JobStatus.RUNNING)


ACTIVE_JOB_STATUSES = ("queued", "running")


class Source(StrEnum):
    WEB = "web"
    API = "api"
    CLI = "cli"
    ENTRYPOINT = "entrypoint"


class BackupStatus(StrEnum):
    RUNNING = "running"
    VERIFIED = "verified"
    FAILED = "failed"
    DELETED = "deleted"


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {datetime: UTCDateTime(), dict[str, Any]: JSON()}


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(16), default=Role.VIEWER.value)
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    must_change_password: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    password_changed_at: Mapped[datetime | None]
    last_login_at: Mapped[datetime | None]

    @property
    def role_enum(self) -> Role:
        return Role(self.role)


class UserSession(Base):
    """A signed-in browser; only a hash of its cookie token is kept."""

    __tablename__ = "user_sessions"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    csrf_token: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]
    client_addr: Mapped[str | None] = mapped_column(String(64))
    user_agent: Mapped[str | None] = mapped_column(String(255))

    user: Mapped[User] = relationship(lazy="joined")


class ApiToken(Base):
    """A bearer token for the JSON API; only its hash is kept."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    prefix: Mapped[str] = mapped_column(String(16))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    created_by: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_used_at: Mapped[datetime | None]
    expires_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]

    user: Mapped[User] = relationship(lazy="joined")


class LoginFailure(Base):
    """A failed sign-in, counted for throttling per account and per address."""

    __tablename__ = "login_failures"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    username: Mapped[str] = mapped_column(String(255), index=True)
    client_addr: Mapped[str | None] = mapped_column(String(64), index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)


class Job(Base):
    """A migration, stamp, backup or restore run by a worker process."""

    __tablename__ = "jobs"
    __table_args__ = (
        # One active job per target, enforced by the database itself.
        Index(
            "uq_jobs_one_active_per_target",
            "target_key",
            unique=True,
            sqlite_where=text("status IN ('queued', 'running')"),
            postgresql_where=text("status IN ('queued', 'running')"),
        ),
        Index("ix_jobs_status_created", "status", "created_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16), default=JobStatus.QUEUED.value)
    target_key: Mapped[str] = mapped_column(String(64))
    target_display: Mapped[str] = mapped_column(String(500))
    target_revision: Mapped[str | None] = mapped_column(String(255))
    plan: Mapped[list[Any] | None] = mapped_column(JSON)
    plan_fingerprint: Mapped[str | None] = mapped_column(String(64))
    sql_fingerprint: Mapped[str | None] = mapped_column(String(64))
    revision_before: Mapped[str | None] = mapped_column(String(500))
    revision_after: Mapped[str | None] = mapped_column(String(500))
    options: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    steps_total: Mapped[int] = mapped_column(Integer, default=0)
    steps_done: Mapped[int] = mapped_column(Integer, default=0)
    requested_by: Mapped[str] = mapped_column(String(64))
    requested_role: Mapped[str | None] = mapped_column(String(16))
    source: Mapped[str] = mapped_column(String(16))
    client_addr: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    heartbeat_at: Mapped[datetime | None]
    worker_pid: Mapped[int | None] = mapped_column(Integer)
    worker_host: Mapped[str | None] = mapped_column(String(255))
    # Who runs the job now: "supervisor <host> <pid> <token>" or "worker <host> <pid> ...";
    # every write to a running job checks it (admin.jobs.queue).
    owner: Mapped[str | None] = mapped_column(String(128))
    exit_code: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)
    cancel_requested_by: Mapped[str | None] = mapped_column(String(64))
    cancel_requested_at: Mapped[datetime | None]
    # The backup that protected this job (no foreign key: backups and jobs refer to each other).
    backup_id: Mapped[int | None] = mapped_column(BigInteger)
    # What the database is doing for the running job (admin.live): None when nothing shows;
    # live_version counts its changes (live viewers refresh when it moves).
    live: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    live_version: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # One entry per step: step, revision, label, duration, rows affected, lock wait.
    # Deferred: a long job's table is large, and the status block (fetched every second by
    # each viewer) does not need it.
    step_stats: Mapped[list[Any] | None] = mapped_column(JSON, deferred=True)
    # The job's figures for /metrics (admin.live.figures): step durations and lock waits as
    # histogram counts, lock retries; written at its end.
    step_metrics: Mapped[dict[str, Any] | None] = mapped_column(JSON, deferred=True)

    @property
    def status_enum(self) -> JobStatus:
        return JobStatus(self.status)


class JobLine(Base):
    """One line of a job's log, in order."""

    __tablename__ = "job_lines"
    __table_args__ = (UniqueConstraint("job_id", "seq", name="uq_job_lines_job_seq"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    seq: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    stream: Mapped[str] = mapped_column(String(8), default="stdout")
    level: Mapped[str] = mapped_column(String(8), default="info")
    text: Mapped[str] = mapped_column(Text)


class Backup(Base):
    """A verified (or failed) copy of the target, taken by a backup job."""

    __tablename__ = "backups"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    job_id: Mapped[int | None] = mapped_column(ForeignKey("jobs.id", ondelete="SET NULL"))
    target_key: Mapped[str] = mapped_column(String(64), index=True)
    target_display: Mapped[str] = mapped_column(String(500))
    dialect: Mapped[str] = mapped_column(String(16))
    database_name: Mapped[str] = mapped_column(String(255))
    format: Mapped[str] = mapped_column(String(16))
    file_name: Mapped[str | None] = mapped_column(String(255))
    size_bytes: Mapped[int | None] = mapped_column(BigInteger)
    sha256: Mapped[str | None] = mapped_column(String(64))
    duration_ms: Mapped[int | None] = mapped_column(Integer)
    verify_ms: Mapped[int | None] = mapped_column(Integer)
    server_version: Mapped[str | None] = mapped_column(String(100))
    tool_version: Mapped[str | None] = mapped_column(String(100))
    revision: Mapped[str | None] = mapped_column(String(500))
    reason: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16), default=BackupStatus.RUNNING.value)
    error: Mapped[str | None] = mapped_column(Text)
    created_by: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    verified_at: Mapped[datetime | None]
    deleted_at: Mapped[datetime | None]
    # Store revision 0005: the sha256 a check found when the file no longer matched
    # ``sha256`` (a verify or a restore caught it); cleared when the file verifies again.
    found_sha256: Mapped[str | None] = mapped_column(String(64))


class AuditEvent(Base):
    """One audited action; rows form a sha256 hash chain and are never changed."""

    __tablename__ = "audit_events"
    __table_args__ = (
        Index("ix_audit_events_actor_id", "actor", "id"),
        Index("ix_audit_events_action_id", "action", "id"),
        Index("ix_audit_events_created_at", "created_at"),
        Index("ix_audit_events_job_id", "job_id"),
        # Store revision 0002: the audit page's filters.
        Index("ix_audit_events_source_id", "source", "id"),
        Index("ix_audit_events_outcome_id", "outcome", "id"),
        Index("ix_audit_events_revision_id", "revision", "id"),
        Index("ix_audit_events_backup_id", "backup_id"),
        # Store revision 0003: previews of a revision (target revision:<id>).
        Index("ix_audit_events_target_id", "target", "id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    actor: Mapped[str] = mapped_column(String(255))
    actor_role: Mapped[str | None] = mapped_column(String(16))
    source: Mapped[str] = mapped_column(String(16))
    client_addr: Mapped[str | None] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(64))
    target: Mapped[str | None] = mapped_column(String(500))
    outcome: Mapped[str] = mapped_column(String(16))
    job_id: Mapped[int | None] = mapped_column(BigInteger)
    backup_id: Mapped[int | None] = mapped_column(BigInteger)
    revision: Mapped[str | None] = mapped_column(String(500))
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64), unique=True)


class AppliedFile(Base):
    """A revision file as a job applied it to a target: its sha256 and its content, so a
    later edit of the file shows (with a diff against what ran) until an admin
    acknowledges it (admin/analysis/applied.py)."""

    __tablename__ = "applied_files"
    __table_args__ = (Index("ix_applied_files_target_revision", "target_key", "revision", "id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    target_key: Mapped[str] = mapped_column(String(64))
    revision: Mapped[str] = mapped_column(String(255))
    path: Mapped[str] = mapped_column(String(1000))
    sha256: Mapped[str] = mapped_column(String(64))
    content: Mapped[str] = mapped_column(Text)
    # The file read at the end of the job hashed to what the job's plan fingerprint bound.
    matches_plan: Mapped[bool] = mapped_column(Boolean, default=True)
    job_id: Mapped[int] = mapped_column(BigInteger)
    applied_at: Mapped[datetime] = mapped_column(default=utcnow)
    acknowledged_sha256: Mapped[str | None] = mapped_column(String(64))
    acknowledged_by: Mapped[str | None] = mapped_column(String(64))
    acknowledged_at: Mapped[datetime | None]
    acknowledged_reason: Mapped[str | None] = mapped_column(Text)


class Rehearsal(Base):
    """A plan run on a scratch copy of the target restored from a backup, measured, with
    its way back proven (admin/rehearsal)."""

    __tablename__ = "rehearsals"
    __table_args__ = (
        Index("ix_rehearsals_target_fingerprints", "target_key", "plan_fingerprint", "id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    job_id: Mapped[int] = mapped_column(BigInteger, index=True)
    target_key: Mapped[str] = mapped_column(String(64))
    target_revision: Mapped[str | None] = mapped_column(String(255))
    plan: Mapped[list[Any] | None] = mapped_column(JSON)
    plan_fingerprint: Mapped[str | None] = mapped_column(String(64))
    sql_fingerprint: Mapped[str | None] = mapped_column(String(64))
    backup_id: Mapped[int | None] = mapped_column(BigInteger)
    backup_revision: Mapped[str | None] = mapped_column(String(500))
    backup_taken_at: Mapped[datetime | None]
    scratch_database: Mapped[str | None] = mapped_column(String(255))
    scratch_kept: Mapped[bool] = mapped_column(Boolean, default=False)
    status: Mapped[str] = mapped_column(String(16), default="running")
    round_trip: Mapped[str | None] = mapped_column(String(16))
    error: Mapped[str | None] = mapped_column(Text)
    report: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    requested_by: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None]
