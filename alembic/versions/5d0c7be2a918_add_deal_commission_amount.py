"""Add deal commission amount

Deals get the agent's commission as an amount of money, so payouts no longer recompute it
from a rate that may have changed since. Data migration: existing deals with an amount and
an agent are backfilled with amount x the agent's current commission_rate / 100, rounded to
cents, in one set-based UPDATE (plain SQL, so `alembic upgrade --sql` renders it too).

Revision ID: 5d0c7be2a918
Revises: e47a90b3d6f1
Create Date: 2024-03-04 08:33:51.402779
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "5d0c7be2a918"
down_revision = "e47a90b3d6f1"
branch_labels = None
depends_on = None

# Lightweight table constructs: the migration must not import app.models, which move on.
deals = sa.table(
    "deals",
    sa.column("agent_id", sa.Integer()),
    sa.column("amount", sa.Numeric(14, 2)),
    sa.column("commission_amount", sa.Numeric(14, 2)),
)
agents = sa.table(
    "agents",
    sa.column("id", sa.Integer()),
    sa.column("commission_rate", sa.Numeric(5, 2)),
)


def upgrade() -> None:
    op.add_column(
        "deals", sa.Column("commission_amount", sa.Numeric(precision=14, scale=2), nullable=True)
    )
    rate = (
        sa.select(agents.c.commission_rate).where(agents.c.id == deals.c.agent_id).scalar_subquery()
    )
    op.execute(
        deals.update()
        .where(
            deals.c.commission_amount.is_(None),
            deals.c.amount.is_not(None),
            deals.c.agent_id.is_not(None),
        )
        .values(commission_amount=sa.func.round(deals.c.amount * rate / 100, 2))
    )


def downgrade() -> None:
    # The amounts are derived from deals.amount and agents.commission_rate: nothing is lost.
    with op.batch_alter_table("deals") as batch_op:
        batch_op.drop_column("commission_amount")
