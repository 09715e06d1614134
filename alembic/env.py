"""Alembic environment of the APEX CRM database.

Two ways in:

* the panel (``admin.migrations``) passes a live connection in
  ``config.attributes["connection"]`` (it holds the migration lock already), a URL in
  ``config.attributes["url"]`` for offline SQL, and ``config.attributes["panel"] = True`` so
  the panel's own logging is left alone;
* a plain ``alembic -c alembic.ini ...`` run reads DATABASE_URL through admin.config,
  configures logging from alembic.ini, and takes the same migration lock as the panel, so
  the two never run at once.

Either way each revision runs in its own transaction, and on PostgreSQL lock_timeout and
statement_timeout are set from the settings.
"""

from __future__ import annotations

from logging.config import fileConfig

from alembic import context
from sqlalchemy import Connection, create_engine, text
from sqlalchemy.pool import NullPool

from admin.config import load_settings
from admin.migrations.lock import describe_owner, migration_lock
from app.models import Base

config = context.config
target_metadata = Base.metadata
run_by_panel = bool(config.attributes.get("panel"))

if config.config_file_name and not run_by_panel:
    fileConfig(config.config_file_name, disable_existing_loggers=False)


def _configure(**options: object) -> None:
    context.configure(
        target_metadata=target_metadata,
        transaction_per_migration=True,
        compare_type=True,
        on_version_apply=config.attributes.get("on_version_apply"),
        **options,
    )


def _set_timeouts(connection: Connection, lock_timeout: str, statement_timeout: str) -> None:
    if connection.dialect.name != "postgresql":
        return
    connection.execute(text("SELECT set_config('lock_timeout', :v, false)"), {"v": lock_timeout})
    connection.execute(
        text("SELECT set_config('statement_timeout', :v, false)"), {"v": statement_timeout}
    )
    # Commit so that Alembic starts its own transaction per revision on a clean connection.
    connection.commit()


def _run(connection: Connection, lock_timeout: str, statement_timeout: str) -> None:
    _set_timeouts(connection, lock_timeout, statement_timeout)
    _configure(connection=connection, render_as_batch=connection.dialect.name == "sqlite")
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_offline() -> None:
    url = config.attributes.get("url") or config.get_main_option("sqlalchemy.url")
    if not url:
        url = load_settings().database_url
    _configure(
        url=url,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
        render_as_batch=str(url).startswith("sqlite"),
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(
            connection,
            config.attributes.get("lock_timeout", "0"),
            config.attributes.get("statement_timeout", "0"),
        )
        return
    settings = load_settings()
    url = config.get_main_option("sqlalchemy.url") or settings.database_url
    with migration_lock(url, wait=settings.migration_lock_wait, owner=describe_owner("alembic")):
        engine = create_engine(url, poolclass=NullPool)
        try:
            with engine.connect() as connection:
                _run(connection, settings.lock_timeout, settings.statement_timeout)
        finally:
            engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
