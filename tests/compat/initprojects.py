"""Alembic projects as `alembic init` writes them: the templates' own files, unedited.

``init_project(root, template, url, revisions)`` runs ``alembic init -t TEMPLATE`` in
``root``, points ``sqlalchemy.url`` at ``url`` (the one line a new user edits) and writes
revision files with ``alembic revision`` semantics (module docstring, literals). Variants
of env.py are made by editing the template's own file in the way a team would.
"""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

REVISION = '''"""{message}

Revision ID: {rev}
Revises: {down_text}
Create Date: 2024-05-01 10:00:00.000000

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa
{imports}

# revision identifiers, used by Alembic.
revision: str = {rev!r}
down_revision: Union[str, Sequence[str], None] = {down!r}
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None
{module_level}

def upgrade() -> None:
{upgrade}


def downgrade() -> None:
{downgrade}
'''


@dataclass(frozen=True)
class InitRev:
    id: str
    down: str | tuple[str, ...] | None
    message: str
    upgrade: str = "pass"
    downgrade: str = "pass"
    imports: str = ""
    module_level: str = ""


# Three steps with real DDL: a table, a column, an index.
LINEAR = [
    InitRev(
        "1a2b3c4d5e6f",
        None,
        "create accounts",
        "op.create_table('accounts', sa.Column('id', sa.Integer, primary_key=True),"
        " sa.Column('name', sa.String(50)))",
        "op.drop_table('accounts')",
    ),
    InitRev(
        "2b3c4d5e6f7a",
        "1a2b3c4d5e6f",
        "add accounts email",
        "op.add_column('accounts', sa.Column('email', sa.String(100)))",
        "op.drop_column('accounts', 'email')",
    ),
    InitRev(
        "3c4d5e6f7a8b",
        "2b3c4d5e6f7a",
        "index accounts by name",
        "op.create_index('ix_accounts_name', 'accounts', ['name'])",
        "op.drop_index('ix_accounts_name', table_name='accounts')",
    ),
]

# A revision with module-level state, as some teams write them: a MetaData at module level
# and a Table defined inside upgrade() (a second run in one process would redefine it).
MODULE_STATE = InitRev(
    "4d5e6f7a8b9c",
    "3c4d5e6f7a8b",
    "seed plans",
    "plans = sa.Table('plans', meta, sa.Column('id', sa.Integer, primary_key=True),"
    " sa.Column('name', sa.String(20)))\n"
    "op.create_table('plans', sa.Column('id', sa.Integer, primary_key=True),"
    " sa.Column('name', sa.String(20)))\n"
    "op.bulk_insert(plans, [{'id': 1, 'name': 'basic'}, {'id': 2, 'name': 'pro'}])",
    "op.drop_table('plans')",
    module_level="\nmeta = sa.MetaData()\n",
)

# A fork and its merge: Alembic orders the merge's version-table statements by set order.
BRANCHED = [
    LINEAR[0],
    InitRev(
        "b1b1b1b1b1b1",
        "1a2b3c4d5e6f",
        "left",
        "op.create_table('lefts', sa.Column('id', sa.Integer, primary_key=True))",
        "op.drop_table('lefts')",
    ),
    InitRev(
        "c2c2c2c2c2c2",
        "1a2b3c4d5e6f",
        "right",
        "op.create_table('rights', sa.Column('id', sa.Integer, primary_key=True))",
        "op.drop_table('rights')",
    ),
    InitRev("d3d3d3d3d3d3", ("b1b1b1b1b1b1", "c2c2c2c2c2c2"), "merge left and right"),
    InitRev(
        "e4e4e4e4e4e4",
        "d3d3d3d3d3d3",
        "after the merge",
        "op.create_table('afters', sa.Column('id', sa.Integer, primary_key=True))",
        "op.drop_table('afters')",
    ),
]


def _indent(code: str) -> str:
    return textwrap.indent(textwrap.dedent(code).strip() or "pass", "    ")


def write_revision(versions: Path, rev: InitRev) -> Path:
    slug = re.sub(r"\W+", "_", rev.message.lower()).strip("_")
    down_text = ", ".join(rev.down) if isinstance(rev.down, tuple) else (rev.down or "")
    path = versions / f"{rev.id}_{slug}.py"
    path.write_text(
        REVISION.format(
            message=rev.message.capitalize(),
            rev=rev.id,
            down=rev.down,
            down_text=down_text,
            imports=rev.imports,
            module_level=rev.module_level,
            upgrade=_indent(rev.upgrade),
            downgrade=_indent(rev.downgrade),
        )
    )
    return path


def init_project(root: Path, template: str, url: str, revisions: list[InitRev] = LINEAR) -> Path:
    """``alembic init -t template`` in ``root``; returns the alembic.ini's path."""
    root.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [sys.executable, "-m", "alembic", "init", "-t", template, "migrations"],
        cwd=root,
        check=True,
        capture_output=True,
    )
    ini = root / "alembic.ini"
    text = ini.read_text()
    text = text.replace(
        "sqlalchemy.url = driver://user:pass@localhost/dbname",
        f"sqlalchemy.url = {url.replace('%', '%%')}",
    )
    ini.write_text(text)
    versions = root / "migrations" / "versions"
    versions.mkdir(exist_ok=True)
    for rev in revisions:
        write_revision(versions, rev)
    return ini


def env_py(ini: Path) -> Path:
    return ini.parent / "migrations" / "env.py"


def edit_env(ini: Path, old: str, new: str) -> None:
    """Edit the template's env.py in one place (it must be there exactly once)."""
    path = env_py(ini)
    text = path.read_text()
    assert text.count(old) == 1, f"{old!r} not found once in {path}"
    path.write_text(text.replace(old, new))
