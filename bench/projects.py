"""Generated Alembic projects of N revisions, with branches and merges, for the bench."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

# Every BRANCH_EVERY revisions the history forks in two for one revision and merges again.
BRANCH_EVERY = 100

ENV = """
from alembic import context
from sqlalchemy import create_engine
from sqlalchemy.pool import NullPool

config = context.config
url = config.attributes.get("url") or config.get_main_option("sqlalchemy.url")

if context.is_offline_mode():
    context.configure(url=url, literal_binds=True, transaction_per_migration=True)
    with context.begin_transaction():
        context.run_migrations()
else:
    connection = config.attributes.get("connection")
    if connection is not None:
        context.configure(connection=connection, transaction_per_migration=True)
        with context.begin_transaction():
            context.run_migrations()
    else:
        engine = create_engine(url, poolclass=NullPool)
        with engine.connect() as connection:
            context.configure(connection=connection, transaction_per_migration=True)
            with context.begin_transaction():
                context.run_migrations()
        engine.dispose()
"""

REVISION = '''"""{message}

Revision ID: {rev}
Revises: {down_text}
Create Date: 2024-01-01 00:00:00
"""
import sqlalchemy as sa
from alembic import op

revision = {rev!r}
down_revision = {down!r}
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        {table!r},
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("created_at", sa.DateTime, server_default=sa.func.now()),
    )
    op.create_index({index!r}, {table!r}, ["name"])


def downgrade():
    op.drop_index({index!r}, table_name={table!r})
    op.drop_table({table!r})
'''

MERGE = '''"""{message}

Revision ID: {rev}
Revises: {down_text}
Create Date: 2024-01-01 00:00:00
"""

revision = {rev!r}
down_revision = {down!r}
branch_labels = None
depends_on = None


def upgrade():
    pass


def downgrade():
    pass
'''


@dataclass(frozen=True)
class GeneratedProject:
    size: int
    ini: Path
    order: tuple[str, ...]  # revision ids, base first, each after its parents
    branches: int

    @property
    def head(self) -> str:
        return self.order[-1]


def _rev_id(n: int) -> str:
    return hashlib.sha1(f"bench-{n}".encode()).hexdigest()[:12]


def generate(root: Path, size: int, url: str) -> GeneratedProject:
    """Write a project of ``size`` revisions under ``root`` (alembic.ini points at ``url``)."""
    versions = root / "migrations" / "versions"
    versions.mkdir(parents=True)
    (root / "migrations" / "env.py").write_text(ENV)
    (root / "alembic.ini").write_text(
        "[alembic]\nscript_location = %(here)s/migrations\n"
        f"sqlalchemy.url = {url}\npath_separator = os\n"
    )
    order: list[str] = []
    down: str | tuple[str, ...] | None = None
    branches = 0
    n = 0

    def write(template: str, parent: str | tuple[str, ...] | None, message: str) -> str:
        nonlocal n
        rev = _rev_id(n)
        down_text = ", ".join(parent) if isinstance(parent, tuple) else (parent or "")
        (versions / f"{rev}_step_{n}.py").write_text(
            template.format(
                rev=rev,
                down=parent,
                down_text=down_text,
                message=message,
                table=f"t{n}",
                index=f"ix_t{n}_name",
            )
        )
        order.append(rev)
        n += 1
        return rev

    while n < size:
        if n % BRANCH_EVERY == BRANCH_EVERY - 3 and size - n >= 3:
            # A fork of two revisions on the same parent, then their merge.
            left = write(REVISION, down, f"left side of fork {branches}")
            right = write(REVISION, down, f"right side of fork {branches}")
            down = write(MERGE, (left, right), f"merge fork {branches}")
            branches += 1
        else:
            down = write(REVISION, down, f"create table t{n}")
    return GeneratedProject(
        size=size, ini=root / "alembic.ini", order=tuple(order), branches=branches
    )
