"""Safety: applied_files, each revision file as a job applied it to a target.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-07 12:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "applied_files",
        sa.Column("id", BigId, primary_key=True),
        sa.Column("target_key", sa.String(64), nullable=False),
        sa.Column("revision", sa.String(255), nullable=False),
        sa.Column("path", sa.String(1000), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("content", sa.Text(), nullable=False),
        sa.Column("matches_plan", sa.Boolean(), nullable=False),
        sa.Column("job_id", sa.BigInteger(), nullable=False),
        sa.Column("applied_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("acknowledged_sha256", sa.String(64), nullable=True),
        sa.Column("acknowledged_by", sa.String(64), nullable=True),
        sa.Column("acknowledged_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("acknowledged_reason", sa.Text(), nullable=True),
    )
    op.create_index(
        "ix_applied_files_target_revision", "applied_files", ["target_key", "revision", "id"]
    )


def downgrade() -> None:
    op.drop_index("ix_applied_files_target_revision", table_name="applied_files")
    op.drop_table("applied_files")
