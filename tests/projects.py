"""Small Alembic projects written by the tests: their revisions, env.py and layout.

A plain module (not conftest), so that every test folder imports the same ``Rev``: pytest
replaces the module named ``conftest`` as it enters tests/browser.
"""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Rev:
    """One revision of a generated test project."""

    id: str
    down: str | tuple[str, ...] | None
    message: str = ""
    upgrade: str = "pass"
    downgrade: str = "pass"
    branch_labels: tuple[str, ...] | None = None
    depends_on: str | tuple[str, ...] | None = None


# a1 -> b2 -> (c3 | c4 [feature]) -> m5 (merge) -> d6: a branch, its merge and a backfill.
BRANCHED = [
    Rev(
        "a1a1a1a1a1a1",
        None,
        "create t1",
        "op.create_table('t1', sa.Column('id', sa.Integer, primary_key=True))",
        "op.drop_table('t1')",
    ),
    Rev(
        "b2b2b2b2b2b2",
        "a1a1a1a1a1a1",
        "add t1 name",
        "op.add_column('t1', sa.Column('name', sa.String(50)))",
        "with op.batch_alter_table('t1') as b:\n    b.drop_column('name')",
    ),
    Rev(
        "c3c3c3c3c3c3",
        "b2b2b2b2b2b2",
        "create t2",
        "op.create_table('t2', sa.Column('id', sa.Integer, primary_key=True))",
        "op.drop_table('t2')",
    ),
    Rev(
        "c4c4c4c4c4c4",
        "b2b2b2b2b2b2",
        "create t3",
        "op.create_table('t3', sa.Column('id', sa.Integer, primary_key=True))",
        "op.drop_table('t3')",
        branch_labels=("feature",),
    ),
    Rev("m5m5m5m5m5m5", ("c3c3c3c3c3c3", "c4c4c4c4c4c4"), "merge", "pass", "pass"),
    Rev(
        "d6d6d6d6d6d6",
        "m5m5m5m5m5m5",
        "backfill t1",
        "op.execute(\"UPDATE t1 SET name = 'x' WHERE name IS NULL\")",
        "pass",
    ),
]
BRANCHED_HEAD = "d6d6d6d6d6d6"

PROJECT_ENV = """
from alembic import context
from sqlalchemy import create_engine

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
        engine = create_engine(url)
        with engine.connect() as connection:
            context.configure(connection=connection, transaction_per_migration=True)
            with context.begin_transaction():
                context.run_migrations()
        engine.dispose()
"""


def _body(code: str) -> str:
    return textwrap.indent(textwrap.dedent(code).strip() or "pass", "    ")


def write_revision(versions: Path, rev: Rev, file_name: str | None = None) -> Path:
    """The revision's file in ``versions`` (named from its id and message unless given)."""
    path = versions / (file_name or f"{rev.id}_{rev.message.replace(' ', '_')[:30] or 'rev'}.py")
    path.write_text(
        f'''"""{rev.message or rev.id}

Revision ID: {rev.id}
Revises: {rev.down}
Create Date: 2024-01-01 00:00:00
"""
import sqlalchemy as sa
from alembic import op

revision = {rev.id!r}
down_revision = {rev.down!r}
branch_labels = {rev.branch_labels!r}
depends_on = {rev.depends_on!r}


def upgrade():
{_body(rev.upgrade)}


def downgrade():
{_body(rev.downgrade)}
'''
    )
    return path


def write_project(
    root: Path, revisions: list[Rev], url: str = "sqlite://", *, id_file_names: bool = False
) -> Path:
    """An Alembic project in ``root`` (``migrations/`` with env.py, the script template and
    the revisions); returns its alembic.ini. ``id_file_names``: files are named ``<id>.py``
    only, so a message may be anything (markup, slashes)."""
    versions = root / "migrations" / "versions"
    versions.mkdir(parents=True)
    (root / "migrations" / "env.py").write_text(PROJECT_ENV)
    (root / "migrations" / "script.py.mako").write_text(
        (REPO_ROOT / "admin" / "store" / "migrations" / "script.py.mako").read_text()
    )
    for rev in revisions:
        write_revision(versions, rev, f"{rev.id}.py" if id_file_names else None)
    ini = root / "alembic.ini"
    ini.write_text(f"[alembic]\nscript_location = %(here)s/migrations\nsqlalchemy.url = {url}\n")
    return ini


@contextmanager
def ancestor_visits(revision_map: Any) -> Iterator[list[int]]:
    """Inside, ``[n]``: how many revisions ``revision_map``'s ancestor walks visited (Alembic's
    ``_get_ancestor_nodes``, the walk its quadratic paths repeat): counted, not timed."""
    visits = [0]
    original = revision_map._get_ancestor_nodes

    def counted(*args: Any, **kwargs: Any) -> Iterator[Any]:
        for rev in original(*args, **kwargs):
            visits[0] += 1
            yield rev

    revision_map._get_ancestor_nodes = counted
    try:
        yield visits
    finally:
        del revision_map._get_ancestor_nodes
