"""Add property photos

Photos of a listing, in display order, one of them the cover. Written on its own branch
while client preferences (8a1d4e6f0c27) was written on another; b5f2c8d91e03 merges them.

Revision ID: 3c9e1f7a2b4d
Revises: 20240101000000
Create Date: 2024-01-18 11:02:44.918263
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "3c9e1f7a2b4d"
down_revision = "20240101000000"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "property_photos",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("property_id", sa.Integer(), nullable=False),
        sa.Column("url", sa.String(length=1024), nullable=False),
        sa.Column("caption", sa.String(length=255), nullable=True),
        sa.Column("position", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("is_cover", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.ForeignKeyConstraint(
            ["property_id"],
            ["properties.id"],
            name=op.f("fk_property_photos_property_id_properties"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_property_photos")),
        # Also the index for "photos of a property": property_id leads.
        sa.UniqueConstraint(
            "property_id", "position", name="uq_property_photos_property_id_position"
        ),
    )


def downgrade() -> None:
    op.drop_table("property_photos")
