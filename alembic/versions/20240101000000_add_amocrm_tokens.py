"""Add amoCRM tokens

OAuth 2.0 tokens of the amoCRM integration: one row per amoCRM account (its id and
subdomain), with the current access and refresh tokens and when the access token expires.

Revision ID: 20240101000000
Revises: 196dfdb50f6c
Create Date: 2024-01-01 00:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "20240101000000"
down_revision = "196dfdb50f6c"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "amocrm_tokens",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("account_id", sa.BigInteger(), nullable=False),
        sa.Column("subdomain", sa.String(length=255), nullable=False),
        sa.Column("access_token", sa.Text(), nullable=False),
        sa.Column("refresh_token", sa.Text(), nullable=False),
        sa.Column("token_type", sa.String(length=20), server_default="Bearer", nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_amocrm_tokens")),
        sa.UniqueConstraint("account_id", name=op.f("uq_amocrm_tokens_account_id")),
    )
    # The refresh job looks for tokens about to expire.
    op.create_index(op.f("ix_amocrm_tokens_expires_at"), "amocrm_tokens", ["expires_at"])


def downgrade() -> None:
    op.drop_index(op.f("ix_amocrm_tokens_expires_at"), table_name="amocrm_tokens")
    op.drop_table("amocrm_tokens")
