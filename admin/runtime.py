"""The services a process works with: settings, the store's engine and sessions."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import Engine
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from admin import audit, files, migrations
from admin.auth import passwords
from admin.config import Settings
from admin.store import schema
from admin.store.db import make_session_factory, make_store_engine, transaction


@dataclass
class Runtime:
    """Opened once per process (web app lifespan, CLI command, worker) and closed at exit."""

    settings: Settings
    store_engine: Engine
    sessions: sessionmaker[Session] = field(init=False)
    read_engine: Engine = field(init=False)
    reads: sessionmaker[Session] = field(init=False)

    def __post_init__(self) -> None:
        # How every target connection of this process is made (TARGET_* settings).
        migrations.configure(self.settings)
        self.sessions = make_session_factory(self.store_engine)
        if self.store_engine.dialect.name == "sqlite":
            url = self.store_engine.url.render_as_string(hide_password=False)
            self.read_engine = make_store_engine(url, reads_only=True)
        else:
            self.read_engine = self.store_engine
        self.reads = make_session_factory(self.read_engine)

    @classmethod
    def open(cls, settings: Settings) -> Runtime:
        files.private_dir(settings.var_dir)
        passwords.configure(settings.password_hash_memory_kib, settings.password_hash_time_cost)
        store = make_url(settings.admin_database_url)
        if store.get_backend_name() == "sqlite" and store.database not in (None, "", ":memory:"):
            # The password hashes, sessions and audit: nobody else's to read (also the WAL).
            for suffix in ("", "-wal", "-shm"):
                files.tighten(Path(store.database + suffix))
        return cls(settings=settings, store_engine=make_store_engine(settings.admin_database_url))

    def close(self) -> None:
        self.store_engine.dispose()
        self.read_engine.dispose()

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        with transaction(self.sessions) as session:
            yield session

    def upgrade_store(self, actor: audit.Actor) -> tuple[str | None, str | None]:
        """Apply the store's revisions; an actual change is audited."""
        before, after = schema.upgrade(self.store_engine)
        if before != after:
            with self.transaction() as session:
                audit.record(
                    session,
                    audit.StoreUpgraded(revision_before=before, revision_after=after),
                    actor,
                )
        return before, after
