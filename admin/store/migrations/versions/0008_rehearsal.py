"""Rehearsals: a plan run on a scratch copy of the target, measured, with its round trip.

Revision ID: 0008_rehearsal
Revises: 0007_live
Create Date: 2026-12-07 14:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008_rehearsal"
down_revision = "0007_live"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "rehearsals",
        sa.Column("id", BigId, primary_key=True),
        sa.Column("job_id", sa.BigInteger(), nullable=False),
        sa.Column("target_key", sa.String(64), nullable=False),
        sa.Column("target_revision", sa.String(255), nullable=True),
        sa.Column("plan", sa.JSON(), nullable=True),
        sa.Column("plan_fingerprint", sa.String(64), nullable=True),
        sa.Column("sql_fingerprint", sa.String(64), nullable=True),
        sa.Column("backup_id", sa.BigInteger(), nullable=True),
        sa.Column("backup_revision", sa.String(500), nullable=True),
        sa.Column("backup_taken_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("scratch_database", sa.String(255), nullable=True),
        sa.Column("scratch_kept", sa.Boolean(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("round_trip", sa.String(16), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("report", sa.JSON(), nullable=True),
        sa.Column("requested_by", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index("ix_rehearsals_job_id", "rehearsals", ["job_id"])
    op.create_index(
        "ix_rehearsals_target_fingerprints",
        "rehearsals",
        ["target_key", "plan_fingerprint", "id"],
    )


def downgrade() -> None:
    op.drop_index("ix_rehearsals_target_fingerprints", table_name="rehearsals")
    op.drop_index("ix_rehearsals_job_id", table_name="rehearsals")
    op.drop_table("rehearsals")
