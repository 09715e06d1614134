"""Initial store schema: users, sessions, API tokens, jobs, job lines, backups, audit.

Revision ID: 0001
Revises:
Create Date: 2026-11-26 07:19:14
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
ACTIVE = sa.text("status IN ('queued', 'running')")


def _id() -> sa.Column:
    return sa.Column("id", ID, primary_key=True)


def _ts(name: str, nullable: bool = False) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def _str(name: str, length: int, nullable: bool = False) -> sa.Column:
    return sa.Column(name, sa.String(length), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "users",
        _id(),
        _str("username", 64),
        _str("password_hash", 255),
        _str("role", 16),
        sa.Column("disabled", sa.Boolean(), nullable=False),
        sa.Column("must_change_password", sa.Boolean(), nullable=False),
        _ts("created_at"),
        _ts("updated_at"),
        _ts("password_changed_at", True),
        _ts("last_login_at", True),
        sa.UniqueConstraint("username", name=op.f("uq_users_username")),
    )
    op.create_table(
        "user_sessions",
        _id(),
        _str("token_hash", 64),
        sa.Column("user_id", ID, sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
        _str("csrf_token", 64),
        _ts("created_at"),
        _ts("last_seen_at"),
        _ts("expires_at"),
        _str("client_addr", 64, True),
        _str("user_agent", 255, True),
        sa.UniqueConstraint("token_hash", name=op.f("uq_user_sessions_token_hash")),
    )
    op.create_index(op.f("ix_user_sessions_user_id"), "user_sessions", ["user_id"])
    op.create_table(
        "api_tokens",
        _id(),
        _str("name", 100),
        _str("prefix", 16),
        _str("token_hash", 64),
        sa.Column("user_id", ID, sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
        _str("created_by", 64),
        _ts("created_at"),
        _ts("last_used_at", True),
        _ts("expires_at", True),
        _ts("revoked_at", True),
        sa.UniqueConstraint("token_hash", name=op.f("uq_api_tokens_token_hash")),
    )
    op.create_index(op.f("ix_api_tokens_user_id"), "api_tokens", ["user_id"])
    op.create_table(
        "login_failures",
        _id(),
        _str("username", 255),
        _str("client_addr", 64, True),
        _ts("created_at"),
    )
    for column in ("username", "client_addr", "created_at"):
        op.create_index(op.f(f"ix_login_failures_{column}"), "login_failures", [column])

    op.create_table(
        "jobs",
        _id(),
        _str("kind", 16),
        _str("status", 16),
        _str("target_key", 64),
        _str("target_display", 500),
        _str("target_revision", 255, True),
        sa.Column("plan", sa.JSON(), nullable=True),
        _str("plan_fingerprint", 64, True),
        _str("sql_fingerprint", 64, True),
        _str("revision_before", 500, True),
        _str("revision_after", 500, True),
        sa.Column("options", sa.JSON(), nullable=True),
        sa.Column("steps_total", sa.Integer(), nullable=False),
        sa.Column("steps_done", sa.Integer(), nullable=False),
        _str("requested_by", 64),
        _str("requested_role", 16, True),
        _str("source", 16),
        _str("client_addr", 64, True),
        _ts("created_at"),
        _ts("started_at", True),
        _ts("finished_at", True),
        _ts("heartbeat_at", True),
        sa.Column("worker_pid", sa.Integer(), nullable=True),
        _str("worker_host", 255, True),
        sa.Column("exit_code", sa.Integer(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        _str("cancel_requested_by", 64, True),
        _ts("cancel_requested_at", True),
        sa.Column("backup_id", sa.BigInteger(), nullable=True),
    )
    op.create_index("ix_jobs_status_created", "jobs", ["status", "created_at"])
    op.create_index(
        "uq_jobs_one_active_per_target",
        "jobs",
        ["target_key"],
        unique=True,
        sqlite_where=ACTIVE,
        postgresql_where=ACTIVE,
    )
    op.create_table(
        "job_lines",
        _id(),
        sa.Column("job_id", ID, sa.ForeignKey("jobs.id", ondelete="CASCADE"), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        _ts("created_at"),
        _str("stream", 8),
        _str("level", 8),
        sa.Column("text", sa.Text(), nullable=False),
        sa.UniqueConstraint("job_id", "seq", name="uq_job_lines_job_seq"),
    )
    op.create_table(
        "backups",
        _id(),
        sa.Column("job_id", ID, sa.ForeignKey("jobs.id", ondelete="SET NULL"), nullable=True),
        _str("target_key", 64),
        _str("target_display", 500),
        _str("dialect", 16),
        _str("database_name", 255),
        _str("format", 16),
        _str("file_name", 255, True),
        sa.Column("size_bytes", sa.BigInteger(), nullable=True),
        _str("sha256", 64, True),
        sa.Column("duration_ms", sa.Integer(), nullable=True),
        sa.Column("verify_ms", sa.Integer(), nullable=True),
        _str("server_version", 100, True),
        _str("tool_version", 100, True),
        _str("revision", 500, True),
        _str("reason", 32),
        _str("status", 16),
        sa.Column("error", sa.Text(), nullable=True),
        _str("created_by", 64),
        _ts("created_at"),
        _ts("verified_at", True),
        _ts("deleted_at", True),
    )
    op.create_index(op.f("ix_backups_target_key"), "backups", ["target_key"])

    op.create_table(
        "audit_events",
        _id(),
        _ts("created_at"),
        _str("actor", 255),
        _str("actor_role", 16, True),
        _str("source", 16),
        _str("client_addr", 64, True),
        _str("action", 64),
        _str("target", 500, True),
        _str("outcome", 16),
        sa.Column("job_id", sa.BigInteger(), nullable=True),
        sa.Column("backup_id", sa.BigInteger(), nullable=True),
        _str("revision", 500, True),
        sa.Column("details", sa.JSON(), nullable=False),
        _str("prev_hash", 64),
        _str("hash", 64),
        sa.UniqueConstraint("hash", name=op.f("uq_audit_events_hash")),
    )
    op.create_index("ix_audit_events_actor_id", "audit_events", ["actor", "id"])
    op.create_index("ix_audit_events_action_id", "audit_events", ["action", "id"])
    op.create_index("ix_audit_events_created_at", "audit_events", ["created_at"])
    op.create_index("ix_audit_events_job_id", "audit_events", ["job_id"])
    if op.get_context().dialect.name == "postgresql":
        # The audit log is append-only: the database itself refuses edits and deletions.
        op.execute(
            """
            CREATE FUNCTION admin_audit_events_append_only() RETURNS trigger
            LANGUAGE plpgsql AS $$
            BEGIN
                RAISE EXCEPTION 'audit_events is append-only: % refused', TG_OP
                    USING ERRCODE = 'insufficient_privilege';
            END;
            $$
            """
        )
        op.execute(
            "CREATE TRIGGER audit_events_append_only BEFORE UPDATE OR DELETE ON audit_events "
            "FOR EACH ROW EXECUTE FUNCTION admin_audit_events_append_only()"
        )
        op.execute(
            "CREATE TRIGGER audit_events_no_truncate BEFORE TRUNCATE ON audit_events "
            "FOR EACH STATEMENT EXECUTE FUNCTION admin_audit_events_append_only()"
        )


def downgrade() -> None:
    if op.get_context().dialect.name == "postgresql":
        op.execute("DROP TRIGGER audit_events_no_truncate ON audit_events")
        op.execute("DROP TRIGGER audit_events_append_only ON audit_events")
        op.execute("DROP FUNCTION admin_audit_events_append_only()")
    for table in (
        "audit_events",
        "backups",
        "job_lines",
        "jobs",
        "login_failures",
        "api_tokens",
        "user_sessions",
        "users",
    ):
        op.drop_table(table)
