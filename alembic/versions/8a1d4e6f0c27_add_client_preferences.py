"""Add client preferences

What a client is looking for (property types, cities, price range, bedrooms), one row per
client, for matching listings. Branches from 20240101000000 beside property photos
(3c9e1f7a2b4d); b5f2c8d91e03 merges the two.

Revision ID: 8a1d4e6f0c27
Revises: 20240101000000
Create Date: 2024-01-19 16:27:05.204117
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "8a1d4e6f0c27"
down_revision = "20240101000000"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "client_preferences",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("client_id", sa.Integer(), nullable=False),
        sa.Column("property_types", sa.JSON(), nullable=True),
        sa.Column("cities", sa.JSON(), nullable=True),
        sa.Column("min_price", sa.Numeric(precision=14, scale=2), nullable=True),
        sa.Column("max_price", sa.Numeric(precision=14, scale=2), nullable=True),
        sa.Column("currency", sa.String(length=3), server_default="USD", nullable=False),
        sa.Column("min_bedrooms", sa.Integer(), nullable=True),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.CheckConstraint(
            "min_price IS NULL OR max_price IS NULL OR min_price <= max_price",
            name=op.f("ck_client_preferences_price_range"),
        ),
        sa.ForeignKeyConstraint(
            ["client_id"],
            ["clients.id"],
            name=op.f("fk_client_preferences_client_id_clients"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_client_preferences")),
        sa.UniqueConstraint("client_id", name=op.f("uq_client_preferences_client_id")),
    )


def downgrade() -> None:
    op.drop_table("client_preferences")
