"""A restore over the target first takes and verifies a backup of the state it replaces:
a row written after the restored backup is in that safety backup (one click back)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from test_backups_jobs import (  # noqa: F401 (make_runtime is a fixture)
    backup_job,
    backup_row,
    execute,
    make_runtime,
    restore_job,
    revision_of,
    seed,
    texts,
)

from admin.runtime import Runtime

pytestmark = pytest.mark.postgres


def rows(url: str) -> list[str]:
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            return list(connection.execute(text("SELECT name FROM items ORDER BY id")).scalars())
    finally:
        engine.dispose()


def test_restore_over_the_target_keeps_a_verified_safety_backup(
    make_runtime: Callable[..., Runtime],  # noqa: F811
) -> None:
    rt = make_runtime()
    url = rt.settings.database_url
    seed(rt)
    first = backup_job(rt)
    assert first.status == "succeeded", first.error
    execute(url, "INSERT INTO items VALUES (4242, 'written after the backup')")

    job = restore_job(rt, first.backup_id or 0, "replace")

    assert job.status == "succeeded", job.error
    assert "written after the backup" not in rows(url)
    log = texts(rt, job.id)
    assert any(line.startswith("safety backup: taking and verifying") for line in log)
    said = [line for line in log if line.startswith("safety backup ") and "verified" in line]
    assert len(said) == 1
    safety_id = int(said[0].split()[2])
    safety = backup_row(rt, safety_id)
    assert safety.status == "verified" and safety.reason == "before-restore"
    assert safety.job_id == job.id and safety_id != first.backup_id

    # One click back: restoring the safety backup brings the later row back.
    back = restore_job(rt, safety_id, "replace")
    assert back.status == "succeeded", back.error
    assert "written after the backup" in rows(url)
    assert revision_of(rt) == "bbb222"


def test_a_restore_into_a_new_database_takes_no_safety_backup(
    make_runtime: Callable[..., Runtime],  # noqa: F811
    tmp_path: Path,
) -> None:
    rt = make_runtime(target=f"sqlite:///{tmp_path / 'target.sqlite3'}")
    seed(rt)
    first = backup_job(rt)
    job = restore_job(rt, first.backup_id or 0, "new")
    assert job.status == "succeeded", job.error
    assert not any(line.startswith("safety backup") for line in texts(rt, job.id))
