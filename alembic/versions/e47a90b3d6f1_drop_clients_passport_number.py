"""Drop clients passport number

Personal-data retention: the CRM no longer keeps clients' passport numbers (the notary's
system holds them for signed deals). The upgrade deletes the column and every number in it.

This revision cannot be downgraded: the numbers are gone, and putting back an empty column
would only pretend otherwise. Going below it means restoring the backup taken before it.

Revision ID: e47a90b3d6f1
Revises: b5f2c8d91e03
Create Date: 2024-02-14 13:50:09.117650
"""

from __future__ import annotations

from alembic import op
from alembic.util import CommandError

revision = "e47a90b3d6f1"
down_revision = "b5f2c8d91e03"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # SQLite cannot always drop a column in place: batch mode rebuilds the table there.
    with op.batch_alter_table("clients") as batch_op:
        batch_op.drop_column("passport_number")


def downgrade() -> None:
    # CommandError: the alembic CLI prints it as one "FAILED: ..." line, no traceback, and
    # the panel shows it as is. Raised before any change, so the database stays at e47a90b3d6f1.
    raise CommandError(
        "Revision e47a90b3d6f1 (drop clients passport number) cannot be downgraded: its "
        "upgrade deleted clients.passport_number and every passport number in it, and no "
        "migration can bring them back. The database stays at e47a90b3d6f1. To go below it, "
        "restore the backup taken before revision e47a90b3d6f1 was applied."
    )
