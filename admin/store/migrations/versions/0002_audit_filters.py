"""Audit page filters: indexes for source, outcome, revision and backup, newest first.

The audit page pages by id (``WHERE ... AND id < :before ORDER BY id DESC LIMIT n``);
an index on (column, id) lets each filter walk only its own rows, newest first, however
long the trail grows. Actor and action have theirs since 0001, time has created_at.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27 09:00:00
"""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

INDEXES = {
    "ix_audit_events_source_id": ["source", "id"],
    "ix_audit_events_outcome_id": ["outcome", "id"],
    "ix_audit_events_revision_id": ["revision", "id"],
    "ix_audit_events_backup_id": ["backup_id"],
}


def upgrade() -> None:
    for name, columns in INDEXES.items():
        op.create_index(name, "audit_events", columns)


def downgrade() -> None:
    for name in INDEXES:
        op.drop_index(name, table_name="audit_events")
