"""A first run on the embedded default: the demo target, everything under VAR_DIR, and the
Makefile's knob for an empty revision."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import TEST_SECRET_KEY
from projects import REPO_ROOT

from admin import demo, migrations
from admin.audit import Actor
from admin.config import Settings
from admin.store.models import Source
from tests.test_makefile import make, project_ini, url  # noqa: F401 - fixtures

ACTOR = Actor("tests", None, Source.CLI)


def _embedded(tmp_path: Path, **values: object) -> Settings:
    """The embedded default as a fresh checkout has it, in ``tmp_path`` (the cwd)."""
    defaults: dict[str, object] = {"secret_key": TEST_SECRET_KEY}
    defaults.update(values)
    return Settings(_env_file=None, **defaults)  # type: ignore[arg-type]


def test_the_demo_is_made_only_for_the_embedded_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert demo.wanted(_embedded(tmp_path))
    assert not demo.wanted(_embedded(tmp_path, environment="production"))
    assert not demo.wanted(_embedded(tmp_path, database_url=f"sqlite:///{tmp_path}/crm.db"))
    assert not demo.wanted(_embedded(tmp_path, database_url="postgresql://u@h/crm"))
    (tmp_path / "var").mkdir()
    (tmp_path / "var" / "demo.sqlite3").write_bytes(b"")
    assert not demo.wanted(_embedded(tmp_path))  # it exists: never made twice


def test_the_demo_is_an_early_revision_with_rows_and_its_job_is_on_record(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    settings = _embedded(tmp_path, alembic_config=REPO_ROOT / "alembic.ini")
    made = demo.create(settings, ACTOR, echo=lambda line: None)
    assert made.succeeded and made.rows > 0
    assert made.job.kind == "upgrade" and made.job.target_revision == demo.DEMO_REVISION
    status = migrations.read_status(
        migrations.open_project(settings.alembic_config), settings.database_url
    )
    assert status.current == (demo.DEMO_REVISION,)
    assert len(status.pending) == 6
    with sqlite3.connect(tmp_path / "var" / "demo.sqlite3") as db:
        assert db.execute("SELECT count(*) FROM clients").fetchone()[0] == 3
    assert not demo.wanted(settings)
    migrations.dispose_engines()


def test_backups_go_under_var_dir_unless_backup_dir_is_set(tmp_path: Path) -> None:
    target = tmp_path / "crm.sqlite3"
    migrations.create_database(f"sqlite:///{target}")
    env = {k: v for k, v in os.environ.items() if k != "BACKUP_DIR"}
    env.update(
        DATABASE_URL=f"sqlite:///{target}",
        ADMIN_DATABASE_URL=f"sqlite:///{tmp_path / 'store.sqlite3'}",
        VAR_DIR=str(tmp_path / "elsewhere"),
        ALEMBIC_CONFIG=str(REPO_ROOT / "alembic.ini"),
        SECRET_KEY=TEST_SECRET_KEY,
    )
    answer = subprocess.run(
        [sys.executable, "-m", "admin", "backup"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert answer.returncode == 0, answer.stderr
    written = list((tmp_path / "elsewhere" / "backups").glob("*.sqlite3*"))
    assert len(written) == 1 and written[0].stat().st_mode & 0o777 == 0o600
    assert not (tmp_path / "var").exists()
    # Set explicitly, BACKUP_DIR still wins.
    assert _embedded(tmp_path, var_dir=tmp_path / "v", backup_dir=tmp_path / "b").backup_dir == (
        tmp_path / "b"
    )
    assert _embedded(tmp_path, var_dir=tmp_path / "v").backup_dir == tmp_path / "v" / "backups"


def test_make_migrate_create_empty_writes_a_revision_without_a_difference(
    tmp_path: Path,
    project_ini: Path,  # noqa: F811 - the fixture of that name
    url: str,  # noqa: F811
) -> None:
    versions = project_ini.parent / "migrations" / "versions"
    before = set(versions.glob("*.py"))
    assert make(tmp_path, project_ini, url, "init-db").returncode == 0
    refused = make(tmp_path, project_ini, url, "migrate-create", "MESSAGE=backfill by hand")
    assert refused.returncode != 0 and "no difference" in refused.stderr
    created = make(
        tmp_path, project_ini, url, "migrate-create", "MESSAGE=backfill by hand", "EMPTY=1"
    )
    assert created.returncode == 0, created.stderr
    (written,) = set(versions.glob("*.py")) - before
    assert "backfill by hand" in written.read_text()
    usage = make(tmp_path, project_ini, url, "migrate-create", "EMPTY=1")
    assert usage.returncode == 2 and "[EMPTY=1]" in usage.stderr
