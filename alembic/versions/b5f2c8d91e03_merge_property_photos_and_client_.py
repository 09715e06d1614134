"""Merge property photos and client preferences

Joins the two branches that grew from 20240101000000 at the same time. Nothing to change in
the schema: the two revisions touch different tables.

Revision ID: b5f2c8d91e03
Revises: 3c9e1f7a2b4d, 8a1d4e6f0c27
Create Date: 2024-01-23 10:15:38.660412
"""

from __future__ import annotations

revision = "b5f2c8d91e03"
down_revision = ("3c9e1f7a2b4d", "8a1d4e6f0c27")
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
