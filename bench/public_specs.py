"""The public Alembic projects the bench checks, and how each is laid out for a run.

Each is taken from a fetched copy of its repository (a bare git directory, found through
``BENCH_PUBLIC_REPOS``) with ``git archive``: its revision files as they are, unedited.
Where a project's env.py needs its whole application, the bench writes a small env.py of
its own beside them (its ``script_location``; ``version_locations`` names the project's
own versions folder) and says why; the rest of that env.py follows the project's own.
Nothing of theirs is kept in this repository: it is extracted into a temporary directory.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

# The fastapi template's env.py without its `from app.models import SQLModel` (see NOTES).
FASTAPI_ENV = '''"""Written by the bench, not the project's: see bench/public_specs.py."""
import os
from logging.config import fileConfig

from alembic import context
from sqlalchemy import engine_from_config, pool

config = context.config
assert config.config_file_name is not None
fileConfig(config.config_file_name)
target_metadata = None


def get_url():
    # What app.core.config does with DATABASE_URL: psycopg 3 as the driver.
    url = os.environ["DATABASE_URL"]
    for scheme in ("postgres://", "postgresql://"):
        if url.startswith(scheme):
            return url.replace(scheme, "postgresql+psycopg://", 1)
    return url


def run_migrations_offline():
    context.configure(
        url=get_url(), target_metadata=target_metadata, literal_binds=True, compare_type=True
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online():
    configuration = config.get_section(config.config_ini_section)
    assert configuration is not None
    configuration["sqlalchemy.url"] = get_url()
    connectable = engine_from_config(configuration, prefix="sqlalchemy.", poolclass=pool.NullPool)
    with connectable.connect() as connection:
        context.configure(connection=connection, target_metadata=target_metadata, compare_type=True)
        with context.begin_transaction():
            context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
'''

# Warehouse's env.py without `from warehouse import db` (see NOTES).
WAREHOUSE_ENV = '''"""Written by the bench, not the project's: see bench/public_specs.py."""
import alembic_postgresql_enum  # noqa: F401 # import activates the plugin

from alembic import context
from sqlalchemy import create_engine, pool, text


def run_migrations_offline():
    url = context.config.get_main_option("sqlalchemy.url")
    context.configure(url=url, compare_server_default=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online():
    url = context.config.get_main_option("sqlalchemy.url")
    connectable = create_engine(url, poolclass=pool.NullPool)
    with connectable.connect() as connection:
        connection.execute(text("SET statement_timeout = 5000"))
        connection.execute(text("SET lock_timeout = 4000"))
        context.configure(
            connection=connection, compare_server_default=True, transaction_per_migration=True
        )
        with context.begin_transaction():
            connection.execute(text("SELECT pg_advisory_lock(hashtext('alembic'))"))
            context.run_migrations()
            context.get_bind().commit()
            connection.execute(text("SELECT pg_advisory_unlock(hashtext('alembic'))"))


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
'''

UNUSED_URL = "postgresql://postgres@127.0.0.1:5432/apex_public_named_in_alembic_ini"


@dataclass(frozen=True)
class Laid:
    """A project extracted for a run: its config, where commands run, what they need."""

    config: Path
    cwd: Path
    python_path: tuple[Path, ...]
    url_in_ini: bool  # env.py reads sqlalchemy.url (else the URL comes from the environment)


@dataclass(frozen=True)
class Spec:
    repo: str
    versions: str  # the versions folder in the repository (also how a git dir is recognised)
    extract: tuple[str, ...]
    needs: tuple[str, ...]  # modules the project's own code imports, beyond the panel's
    lay: Callable[[Path], Laid]
    notes: tuple[str, ...] = field(default=())


def _fastapi(root: Path) -> Laid:
    backend = root / "backend"
    (backend / "bench_env").mkdir()
    (backend / "bench_env" / "env.py").write_text(FASTAPI_ENV)
    ini = (backend / "alembic.ini").read_text()
    assert "script_location = app/alembic\n" in ini, "the template's alembic.ini changed"
    (backend / "bench.ini").write_text(
        ini.replace(
            "script_location = app/alembic\n",
            "script_location = %(here)s/bench_env\n"
            "version_locations = %(here)s/app/alembic/versions\npath_separator = os\n",
        )
    )
    return Laid(backend / "bench.ini", backend, (), url_in_ini=False)


def _warehouse(root: Path) -> Laid:
    (root / "bench_env").mkdir()
    (root / "bench_env" / "env.py").write_text(WAREHOUSE_ENV)
    (root / "alembic.ini").write_text(
        "[alembic]\nscript_location = %(here)s/bench_env\n"
        "version_locations = %(here)s/warehouse/migrations/versions\n"
        f"path_separator = os\nsqlalchemy.url = {UNUSED_URL}\n"
    )
    return Laid(root / "alembic.ini", root, (root,), url_in_ini=True)


SPECS = (
    Spec(
        "fastapi/full-stack-fastapi-template",
        "backend/app/alembic/versions",
        ("backend/alembic.ini", "backend/app/alembic"),
        ("sqlmodel", "psycopg"),
        _fastapi,
        (
            "Its env.py imports `app.models` (SQLModel classes whose forward references need "
            "Python 3.14's deferred annotations; the template requires Python >= 3.14, this "
            "machine runs 3.11), so the bench uses its own env.py beside the template's "
            "revision files: the template's env.py without that import (`fileConfig`, the URL "
            "from the application's own `DATABASE_URL` turned into `postgresql+psycopg`, its "
            "own `engine_from_config` engine: it ignores `sqlalchemy.url` and the passed "
            "connection). The template's alembic.ini, with `script_location` pointed at that "
            "env.py and `version_locations` at the template's versions folder.",
        ),
    ),
    Spec(
        "pypi/warehouse",
        "warehouse/migrations/versions",
        (
            "warehouse/migrations",
            "warehouse/__init__.py",
            "warehouse/utils/__init__.py",
            "warehouse/utils/db",
        ),
        ("alembic_postgresql_enum", "structlog", "packaging"),
        _warehouse,
        (
            "Its env.py imports `warehouse.db` (the whole Pyramid application) for the "
            "metadata and reads the URL from the main option `url`, which warehouse's own CLI "
            "sets; the bench's env.py is theirs without those two (the URL from "
            "`sqlalchemy.url`): `alembic_postgresql_enum`, its own NullPool engine, "
            "`statement_timeout` 5 s / `lock_timeout` 4 s, `transaction_per_migration`, its "
            "advisory lock and its explicit commit. Revisions import "
            "`warehouse.utils.db.types`: that package is extracted from the same commit "
            "(with `structlog`, which it imports). alembic.ini is the bench's: no other "
            "exists in the repository (warehouse builds its Config in code).",
        ),
    ),
)


def recognise(git_dir: Path) -> Spec | None:
    """The spec whose versions folder the repository's HEAD has, if any."""
    for spec in SPECS:
        found = subprocess.run(
            ["git", f"--git-dir={git_dir}", "ls-tree", "-d", "HEAD", spec.versions],
            capture_output=True,
            text=True,
        )
        if found.returncode == 0 and found.stdout.strip():
            return spec
    return None


def head_commit(git_dir: Path) -> str:
    return subprocess.run(
        ["git", f"--git-dir={git_dir}", "log", "-1", "--format=%H %cs"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()


def extract(git_dir: Path, spec: Spec, root: Path) -> Laid:
    root.mkdir(parents=True)
    archive = subprocess.run(
        ["git", f"--git-dir={git_dir}", "archive", "HEAD", *spec.extract],
        capture_output=True,
        check=True,
    )
    subprocess.run(["tar", "-x", "-C", str(root)], input=archive.stdout, check=True)
    return spec.lay(root)
