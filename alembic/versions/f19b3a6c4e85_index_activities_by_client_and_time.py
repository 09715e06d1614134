"""Index activities by client and time

The client timeline (a client's activities, newest first) scanned ix_activities_client_id
and sorted; a (client_id, occurred_at) index serves it directly and makes the single-column
index redundant, so it goes.

activities is large and written all day, so on PostgreSQL both indexes are built and dropped
CONCURRENTLY (no write lock), which cannot run inside a transaction: the step runs in an
autocommit block. A concurrent build that fails leaves an INVALID index behind; the
DROP ... IF EXISTS first makes a retry after such a failure work. SQLite has no
CONCURRENTLY and no such concern: plain CREATE/DROP INDEX there.

Revision ID: f19b3a6c4e85
Revises: 5d0c7be2a918
Create Date: 2024-03-20 17:08:12.775301
"""

from __future__ import annotations

from alembic import op

revision = "f19b3a6c4e85"
down_revision = "5d0c7be2a918"
branch_labels = None
depends_on = None

NEW = "ix_activities_client_id_occurred_at"
OLD = "ix_activities_client_id"


def _postgresql() -> bool:
    # The dialect, not the connection: this must also render offline (alembic upgrade --sql).
    return op.get_context().dialect.name == "postgresql"


def upgrade() -> None:
    if not _postgresql():
        op.create_index(NEW, "activities", ["client_id", "occurred_at"])
        op.drop_index(OLD, table_name="activities")
        return
    with op.get_context().autocommit_block():
        op.drop_index(NEW, table_name="activities", postgresql_concurrently=True, if_exists=True)
        op.create_index(
            NEW, "activities", ["client_id", "occurred_at"], postgresql_concurrently=True
        )
        op.drop_index(OLD, table_name="activities", postgresql_concurrently=True, if_exists=True)


def downgrade() -> None:
    if not _postgresql():
        op.create_index(OLD, "activities", ["client_id"])
        op.drop_index(NEW, table_name="activities")
        return
    with op.get_context().autocommit_block():
        op.drop_index(OLD, table_name="activities", postgresql_concurrently=True, if_exists=True)
        op.create_index(OLD, "activities", ["client_id"], postgresql_concurrently=True)
        op.drop_index(NEW, table_name="activities", postgresql_concurrently=True, if_exists=True)
