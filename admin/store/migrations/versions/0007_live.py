"""Jobs: the live view of the database while a job runs, and its steps' figures.

Revision ID: 0007_live
Revises: 0006
Create Date: 2026-12-07 14:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007_live"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("live", sa.JSON(), nullable=True))
        batch.add_column(
            sa.Column("live_version", sa.Integer(), nullable=False, server_default="0")
        )
        batch.add_column(sa.Column("step_stats", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("step_metrics", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("step_metrics")
        batch.drop_column("step_stats")
        batch.drop_column("live_version")
        batch.drop_column("live")
