"""Alembic environment of the store's own schema (version table admin_alembic_version)."""

from __future__ import annotations

from alembic import context

from admin.store.models import Base
from admin.store.schema import VERSION_TABLE

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    version_table=VERSION_TABLE,
    render_as_batch=connection.dialect.name == "sqlite",
    transaction_per_migration=True,
)
with context.begin_transaction():
    context.run_migrations()
