"""schema-admin backup / backups list|verify|prune / restore, and `make prod-migrate`, run
as subprocesses against a SQLite target and store in tmp_path."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.test_cli_engine import HEAD, REVISIONS, one_line_error, schema_admin, store_rows
from tests.test_makefile import make

# Each of these tests takes seconds (processes started, jobs run): run them first.
pytestmark = pytest.mark.slow


@pytest.fixture
def project_ini(alembic_project: Callable[..., Path]) -> Path:
    return alembic_project(REVISIONS)


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'target.sqlite3'}"


def rows(tmp_path: Path, sql: str) -> list[Any]:
    return list(store_rows(tmp_path, sql))


def t1_count(tmp_path: Path) -> int:
    connection = sqlite3.connect(tmp_path / "target.sqlite3")
    try:
        return int(connection.execute("SELECT count(*) FROM t1").fetchone()[0])
    finally:
        connection.close()


def test_backup_verify_restore_and_prune_from_the_command_line(
    tmp_path: Path, project_ini: Path, url: str
) -> None:
    def cli(*args: str, **extra: str) -> Any:
        return schema_admin(tmp_path, project_ini, url, *args, **extra)

    assert cli("init-db").returncode == 0
    connection = sqlite3.connect(tmp_path / "target.sqlite3")
    connection.executemany("INSERT INTO t1 (name) VALUES (?)", [("x",)] * 25)
    connection.commit()
    connection.close()

    first = cli("backup")
    assert first.returncode == 0, first.stderr
    assert "backing up" in first.stdout and "job succeeded" in first.stdout
    assert f"backup 1: {tmp_path / 'backups'}" in first.stderr and "verified" in first.stderr
    assert rows(tmp_path, "SELECT status, reason, revision, format FROM backups") == [
        ("verified", "manual", HEAD, "sqlite")
    ]
    listed = cli("backups", "list")
    assert listed.returncode == 0
    header, row = listed.stdout.splitlines()
    assert header.split("\t")[:3] == ["ID", "TAKEN (UTC)", "STATUS"]
    assert row.split("\t")[0] == "1" and row.split("\t")[2] == "verified" and HEAD in row

    (file_name,) = rows(tmp_path, "SELECT file_name FROM backups WHERE id = 1")[0]
    dump = tmp_path / "backups" / file_name
    dump.write_bytes(dump.read_bytes()[:-1024])
    broken = cli("backups", "verify", "1")
    assert broken.returncode == 1
    assert "job 3 failed" in broken.stderr and "changed since it was taken" in broken.stderr
    assert "not verified" in one_line_error(cli("restore", "1", "--replace", "--yes"))

    second = cli("backup", "--reason", "scheduled")
    assert second.returncode == 0, second.stderr
    connection = sqlite3.connect(tmp_path / "target.sqlite3")
    connection.execute("DELETE FROM t1")
    connection.commit()
    connection.close()
    assert "add --yes" in one_line_error(cli("restore", "2", "--replace"))
    assert t1_count(tmp_path) == 0
    replaced = cli("restore", "2", "--replace", "--yes")
    assert replaced.returncode == 0, replaced.stderr
    assert t1_count(tmp_path) == 25
    into = cli("restore", "2", "--into", "copy.sqlite3")
    assert into.returncode == 0, into.stderr
    assert (tmp_path / "copy.sqlite3").is_file()

    keep_one = {"BACKUP_KEEP_LAST": "1", "BACKUP_KEEP_DAYS": "0"}
    dry = cli("backups", "prune", "--dry-run", **keep_one)
    assert dry.returncode == 0 and f"would remove backup 1: {file_name}" in dry.stdout
    assert dump.exists()
    pruned = cli("backups", "prune", **keep_one)
    assert pruned.returncode == 0 and f"removed backup 1: {file_name}" in pruned.stdout
    assert not dump.exists()
    # 3 is the safety copy the restore over the target took first (the newest, so kept).
    assert rows(tmp_path, "SELECT id, status, reason FROM backups ORDER BY id") == [
        (1, "deleted", "manual"),
        (2, "deleted", "scheduled"),
        (3, "verified", "before-restore"),
    ]
    actions = [a for (a,) in rows(tmp_path, "SELECT action FROM audit_events")]
    assert actions.count("backup-verified") == 3 and "backups-pruned" in actions
    assert "restore-finished" in actions and "restore-refused" in actions


def test_bad_ids_and_usage(tmp_path: Path, project_ini: Path, url: str) -> None:
    def cli(*args: str) -> Any:
        return schema_admin(tmp_path, project_ini, url, *args)

    assert "there is no backup 'abc'" in one_line_error(cli("backups", "verify", "abc"))
    assert "there is no backup 7" in one_line_error(cli("restore", "7"))
    assert cli("restore", "1", "--into", "x", "--replace").returncode == 2


def test_prod_migrate_backs_up_verifies_then_migrates(
    tmp_path: Path, project_ini: Path, url: str
) -> None:
    from admin import migrations

    migrations.create_database(url)
    applied = make(tmp_path, project_ini, url, "prod-migrate", "CONFIRM=yes")
    assert applied.returncode == 0, applied.stderr
    assert "backup gate (BACKUP_BEFORE_MIGRATE=true)" in applied.stdout
    assert "backup gate passed: backup 1 is verified" in applied.stdout
    job_log = applied.stdout[applied.stdout.index("job 1: upgrade") :]
    assert job_log.index("backup gate passed") < job_log.index("[1/6]")
    assert rows(tmp_path, "SELECT id, reason, status, revision FROM backups") == [
        (1, "before-migrate", "verified", "base")
    ]
    assert rows(tmp_path, "SELECT kind, status, backup_id FROM jobs") == [
        ("upgrade", "succeeded", 1)
    ]
