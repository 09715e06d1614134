"""admin.backups on real PostgreSQL databases and real SQLite files: take, verify, restore."""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import stat
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from helpers import processes
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from admin import backups
from admin.backups import (
    BackupCancelled,
    BackupFailed,
    RestoreFailed,
    ToolMissing,
    VerificationFailed,
)
from admin.errors import Conflict, NotFound

PG_FORMATS = ["custom", "plain"]


class Lines(list[str]):
    """Collects what a backup function reports through on_line."""

    def __call__(self, line: str) -> None:
        self.append(line)


def execute(url: str, *statements: str) -> None:
    engine = create_engine(url)
    try:
        with engine.begin() as connection:
            for statement in statements:
                connection.execute(text(statement))
    finally:
        engine.dispose()


def counts(url: str) -> dict[str, int]:
    """Row count of every table in the public schema."""
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            tables = connection.execute(
                text("SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1")
            ).scalars()
            return {
                table: connection.execute(
                    text(f'SELECT count(*) FROM public."{table}"')
                ).scalar_one()
                for table in list(tables)
            }
    finally:
        engine.dispose()


def seed(url: str) -> dict[str, int]:
    execute(
        url,
        "CREATE TABLE items (id serial PRIMARY KEY, name text NOT NULL)",
        "INSERT INTO items (name) SELECT md5(i::text) FROM generate_series(1, 3000) AS i",
        "CREATE TABLE notes (id int PRIMARY KEY, item_id int REFERENCES items (id), body text)",
        "INSERT INTO notes SELECT i, i, repeat('n', 50) FROM generate_series(1, 400) AS i",
    )
    return counts(url)


def mutate(url: str) -> None:
    """What the backup must undo: a table dropped, rows added."""
    execute(
        url,
        "DROP TABLE notes",
        "INSERT INTO items (name) SELECT 'later' FROM generate_series(1, 25)",
    )


def dir_listing(path: Path) -> list[str]:
    """Everything in a directory, hidden in-progress files included."""
    return sorted(os.listdir(path)) if path.exists() else []


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def target(pg_databases: object) -> str:
    url: str = pg_databases.create("bk")  # type: ignore[attr-defined]
    return url


@pytest.fixture
def track_database(pg_databases: object) -> Callable[[str], None]:
    """Have the module's fixture drop a database a restore created."""

    def track(name: str) -> None:
        pg_databases.created.append(name)  # type: ignore[attr-defined]

    return track


@pytest.fixture
def backup_dir(tmp_path: Path) -> Path:
    return tmp_path / "backups" / "nested"


def take(url: str, backup_dir: Path, fmt: str = "custom", **kwargs: object) -> backups.BackupFile:
    options: dict[str, object] = {
        "fmt": fmt,
        "lock_wait_timeout": "10s",
        "pg_bin_dir": None,
        "on_line": Lines(),
    }
    options.update(kwargs)
    return backups.take(url, backup_dir, **options)  # type: ignore[arg-type]


# PostgreSQL -----------------------------------------------------------------------------


@pytest.mark.postgres
@pytest.mark.parametrize("fmt", PG_FORMATS)
def test_backup_then_restore_replace_brings_back_tables_and_rows(
    target: str, backup_dir: Path, fmt: str
) -> None:
    at_backup = seed(target)
    lines = Lines()
    backup = take(target, backup_dir, fmt, on_line=lines)

    assert backup.path == backup_dir / backup.file_name
    assert backup.format == fmt
    assert backup.size_bytes == backup.path.stat().st_size > 0
    assert len(backup.sha256) == 64
    assert backup.database_name == make_url(target).database
    assert backup.server_version and backup.server_version.startswith("15")
    assert backup.tool_version.startswith("15")
    assert mode_of(backup.path) == 0o600
    assert mode_of(backup_dir) == 0o700
    assert dir_listing(backup_dir) == [backup.file_name]
    assert any(line.startswith("pg_dump: dumping contents of table") for line in lines)

    verification = backups.verify(
        backup.path, fmt, pg_bin_dir=None, on_line=Lines(), expected_sha256=backup.sha256
    )
    assert verification.sha256 == backup.sha256
    assert verification.server_version == backup.server_version

    mutate(target)
    execute(target, "CREATE TABLE added_later (id int)")
    assert counts(target) != at_backup

    result = backups.restore(
        backup.path,
        fmt,
        target,
        mode="replace",
        new_database=None,
        pg_bin_dir=None,
        on_line=Lines(),
        expected_sha256=backup.sha256,
    )
    assert result.mode == "replace" and not result.created
    assert result.database_name == make_url(target).database
    # pg_restore --clean drops only what the backup has: a later table stays, and is named.
    assert result.leftover_tables == ("public.added_later",)
    assert counts(target) == {**at_backup, "added_later": 0}


@pytest.mark.postgres
@pytest.mark.parametrize("fmt", PG_FORMATS)
def test_restore_into_new_database_leaves_target_untouched(
    target: str, backup_dir: Path, fmt: str, track_database: Callable[[str], None]
) -> None:
    at_backup = seed(target)
    backup = take(target, backup_dir, fmt)
    mutate(target)
    after_change = counts(target)

    result = backups.restore(
        backup.path, None, target, mode="new", new_database=None, pg_bin_dir=None, on_line=Lines()
    )
    track_database(result.database_name)

    assert result.created
    assert result.database_name.startswith(f"{make_url(target).database}_restored_")
    assert result.target_display.endswith(f"/{result.database_name}")
    restored_url = make_url(target).set(database=result.database_name)
    assert counts(restored_url.render_as_string(hide_password=False)) == at_backup
    assert counts(target) == after_change

    with pytest.raises(Conflict, match="already exists"):
        backups.restore(
            backup.path,
            fmt,
            target,
            mode="new",
            new_database=result.database_name,
            pg_bin_dir=None,
            on_line=Lines(),
        )


@pytest.mark.postgres
@pytest.mark.parametrize("fmt", PG_FORMATS)
def test_dump_truncated_by_1kb_fails_verification(target: str, backup_dir: Path, fmt: str) -> None:
    seed(target)
    backup = take(target, backup_dir, fmt)
    data = backup.path.read_bytes()
    backup.path.write_bytes(data[:-1024])

    with pytest.raises(VerificationFailed, match="truncated"):
        backups.verify(backup.path, fmt, pg_bin_dir=None, on_line=Lines())
    with pytest.raises(VerificationFailed, match="changed since it was taken"):
        backups.verify(
            backup.path, fmt, pg_bin_dir=None, on_line=Lines(), expected_sha256=backup.sha256
        )


@pytest.mark.postgres
def test_truncated_plain_dump_never_commits_a_partial_restore(
    target: str, backup_dir: Path
) -> None:
    seed(target)
    # Several MiB of SQL: psql runs the first statements (DROP TABLE...) before the end is read.
    execute(
        target,
        "CREATE TABLE bulk AS SELECT i, md5(i::text) || md5((-i)::text) AS h "
        "FROM generate_series(1, 60000) AS i",
    )
    backup = take(target, backup_dir, "plain")
    backup.path.write_bytes(backup.path.read_bytes()[:-1024])
    mutate(target)
    before = counts(target)

    with pytest.raises(RestoreFailed, match="nothing was committed"):
        backups.restore(
            backup.path,
            "plain",
            target,
            mode="replace",
            new_database=None,
            pg_bin_dir=None,
            on_line=Lines(),
        )
    assert counts(target) == before


@pytest.mark.postgres
def test_failed_restore_into_new_database_drops_it(
    target: str, backup_dir: Path, track_database: Callable[[str], None]
) -> None:
    seed(target)
    backup = take(target, backup_dir, "custom")
    backup.path.write_bytes(backup.path.read_bytes()[:-1024])
    name = f"apex_bk_new_{uuid.uuid4().hex[:8]}"
    track_database(name)

    with pytest.raises(RestoreFailed, match="the new database was dropped"):
        backups.restore(
            backup.path,
            "custom",
            target,
            mode="new",
            new_database=name,
            pg_bin_dir=None,
            on_line=Lines(),
        )
    engine = create_engine(target)
    try:
        with engine.connect() as connection:
            found = connection.execute(
                text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name}
            ).first()
    finally:
        engine.dispose()
    assert found is None


@pytest.mark.postgres
def test_bad_credentials_fail_with_pg_dumps_message_and_leave_no_file(
    target: str, backup_dir: Path
) -> None:
    """A role that does not exist, with a password in the URL.

    The test server trusts every connection from 127.0.0.1 (pg_hba.conf: trust), so a wrong
    password for a real role would be accepted; a role that does not exist is refused under
    trust and password authentication alike, and still puts a password through PGPASSWORD.
    """
    password = "s3cret-" + uuid.uuid4().hex
    url = (
        make_url(target)
        .set(username=f"apex_nobody_{uuid.uuid4().hex[:8]}", password=password)
        .render_as_string(hide_password=False)
    )
    lines = Lines()

    with pytest.raises(BackupFailed) as caught:
        take(url, backup_dir, "custom", on_line=lines)

    message = str(caught.value)
    assert "pg_dump: error: connection to server" in message
    assert "does not exist" in message or "authentication failed" in message
    assert "***" in message
    assert password not in message
    assert not any(password in line for line in lines)
    assert dir_listing(backup_dir) == []


@contextlib.contextmanager
def holding_lock(url: str) -> Iterator[None]:
    """Another session holds an ACCESS EXCLUSIVE lock on items inside the block.

    Nothing in the block may read items through another connection: it would wait on the
    lock inside libpq, where no test timeout can interrupt it.
    """
    engine = create_engine(url)
    connection = engine.connect()
    try:
        connection.execute(text("LOCK TABLE items IN ACCESS EXCLUSIVE MODE"))
        yield
    finally:
        connection.rollback()
        connection.close()
        engine.dispose()


@pytest.mark.postgres
@pytest.mark.timeout(60)
def test_held_lock_fails_the_backup_within_the_lock_wait_timeout(
    target: str, backup_dir: Path
) -> None:
    seed(target)

    with (
        holding_lock(target),
        pytest.raises(BackupFailed, match="BACKUP_LOCK_WAIT_TIMEOUT=1s") as caught,
    ):
        take(target, backup_dir, "custom", lock_wait_timeout="1s")
    assert "LOCK TABLE" in str(caught.value)
    assert dir_listing(backup_dir) == []


@pytest.mark.postgres
@pytest.mark.timeout(60)
def test_stop_request_kills_pg_dump_and_leaves_no_file(target: str, backup_dir: Path) -> None:
    seed(target)
    lines = Lines()
    asked = time.monotonic()

    def should_stop() -> bool:
        # Long enough for at least one progress line; not a timing assertion.
        return time.monotonic() - asked > 1.5

    # pg_dump waits on the lock: it is still running when the stop comes.
    with holding_lock(target), pytest.raises(BackupCancelled, match="cancelled"):
        take(
            target,
            backup_dir,
            "custom",
            lock_wait_timeout="0",
            on_line=lines,
            should_stop=should_stop,
        )
    assert dir_listing(backup_dir) == []
    assert any(line.startswith("progress: ") for line in lines)
    assert _pg_dump_pids(backup_dir) == []


@pytest.mark.postgres
@pytest.mark.timeout(60)
def test_replace_restore_with_a_held_lock_fails_and_changes_nothing(
    target: str, backup_dir: Path
) -> None:
    seed(target)
    backup = take(target, backup_dir, "custom")
    execute(target, "INSERT INTO notes SELECT i, 1, 'later' FROM generate_series(1000, 1009) i")
    before = counts(target)

    with (
        holding_lock(target),
        pytest.raises(RestoreFailed, match=r"lock timeout \(1s\).*pid \d+.*rolled back"),
    ):
        backups.restore(
            backup.path,
            "custom",
            target,
            mode="replace",
            new_database=None,
            pg_bin_dir=None,
            on_line=Lines(),
            lock_timeout="1s",
        )
    assert counts(target) == before  # only once the lock is released: count(*) would wait


def _pg_dump_pids(backup_dir: Path) -> list[int]:
    """pg_dump processes writing into ``backup_dir``, found through /proc."""
    target = f"--file={backup_dir}".encode()
    return [
        pid
        for pid, argv, _ in processes()
        if argv[0].endswith(b"pg_dump") and any(arg.startswith(target) for arg in argv)
    ]


@pytest.mark.postgres
@pytest.mark.timeout(60)
def test_pg_dump_killed_from_outside_fails_and_leaves_no_file(
    target: str, backup_dir: Path
) -> None:
    seed(target)

    def kill_it() -> bool:
        for pid in _pg_dump_pids(backup_dir):
            os.kill(pid, signal.SIGKILL)
        return False

    with holding_lock(target), pytest.raises(BackupFailed, match="killed by SIGKILL"):
        take(target, backup_dir, "custom", lock_wait_timeout="0", should_stop=kill_it)
    assert dir_listing(backup_dir) == []


@pytest.mark.postgres
def test_missing_pg_dump_names_what_to_install(target: str, tmp_path: Path) -> None:
    empty = tmp_path / "bin"
    empty.mkdir()
    with pytest.raises(ToolMissing, match=r"PG_BIN_DIR=.*has no executable pg_dump.*install"):
        take(target, tmp_path / "backups", "custom", pg_bin_dir=empty)
    assert dir_listing(tmp_path / "backups") == []


FAKE_OLD_PG_DUMP = """#!/bin/sh
# pg_dump 15 as it answers a PostgreSQL 16 server (its real words, exit code 1).
if [ "$1" = "--version" ]; then echo "pg_dump (PostgreSQL) 15.20"; exit 0; fi
echo "pg_dump: error: aborting because of server version mismatch" >&2
echo "pg_dump: detail: server version: 16.1; pg_dump version: 15.20" >&2
exit 1
"""


@pytest.mark.postgres
def test_pg_dump_older_than_server_names_both_versions(target: str, tmp_path: Path) -> None:
    """A PostgreSQL 16 server is not available here: a stand-in pg_dump says what 15 says."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "pg_dump"
    fake.write_text(FAKE_OLD_PG_DUMP)
    fake.chmod(0o755)
    backup_dir = tmp_path / "backups"

    with pytest.raises(ToolMissing) as caught:
        take(target, backup_dir, "custom", pg_bin_dir=bin_dir)
    message = str(caught.value)
    assert "15.20" in message and "16.1" in message
    assert "16 or newer" in message and "PG_BIN_DIR" in message
    assert dir_listing(backup_dir) == []


@pytest.mark.postgres
@pytest.mark.parametrize("fmt", PG_FORMATS)
def test_full_disk_fails_the_backup_and_leaves_no_file(
    target: str, tiny_disk: Path, fmt: str
) -> None:
    seed(target)
    execute(
        target, "CREATE TABLE bulk AS SELECT i, md5(i::text) AS h FROM generate_series(1, 20000) i"
    )
    with pytest.raises(BackupFailed, match="No space left on device"):
        take(target, tiny_disk / "backups", fmt)
    assert dir_listing(tiny_disk / "backups") == []


@pytest.mark.postgres
def test_backup_dir_that_is_a_file_is_refused(target: str, tmp_path: Path) -> None:
    a_file = tmp_path / "backups"
    a_file.write_text("")
    with pytest.raises(BackupFailed, match="not a directory"):
        take(target, a_file, "custom")


# SQLite --------------------------------------------------------------------------------


def sqlite_counts(path: Path) -> dict[str, int]:
    connection = sqlite3.connect(path)
    try:
        tables = [
            row[0]
            for row in connection.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name"
            )
        ]
        return {t: connection.execute(f'SELECT count(*) FROM "{t}"').fetchone()[0] for t in tables}
    finally:
        connection.close()


@pytest.fixture
def sqlite_target(tmp_path: Path) -> Path:
    path = tmp_path / "data" / "demo.sqlite3"
    path.parent.mkdir()
    connection = sqlite3.connect(path)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT)")
    connection.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)")
    connection.executemany("INSERT INTO items (name) VALUES (?)", [(f"i{i}",) for i in range(500)])
    connection.executemany("INSERT INTO notes (body) VALUES (?)", [("n" * 40,)] * 80)
    connection.commit()
    connection.close()
    return path


def test_sqlite_backup_and_restore_round_trip(sqlite_target: Path, backup_dir: Path) -> None:
    url = f"sqlite:///{sqlite_target}"
    at_backup = sqlite_counts(sqlite_target)
    # A connection stays open through the restore, like the CRM's would.
    app = sqlite3.connect(sqlite_target)

    backup = take(url, backup_dir, "custom")
    assert backup.format == "sqlite"
    assert backup.file_name.endswith(".sqlite3")
    assert mode_of(backup.path) == 0o600
    assert dir_listing(backup_dir) == [backup.file_name]
    verification = backups.verify(
        backup.path, None, pg_bin_dir=None, on_line=Lines(), expected_sha256=backup.sha256
    )
    assert "integrity_check ok" in verification.detail

    app.execute("DROP TABLE notes")
    app.execute("INSERT INTO items (name) VALUES ('later')")
    app.commit()

    result = backups.restore(
        backup.path, None, url, mode="replace", new_database=None, pg_bin_dir=None, on_line=Lines()
    )
    assert not result.created
    assert sqlite_counts(sqlite_target) == at_backup
    assert app.execute("SELECT count(*) FROM items").fetchone()[0] == at_backup["items"]
    app.close()

    new = backups.restore(
        backup.path, "sqlite", url, mode="new", new_database=None, pg_bin_dir=None, on_line=Lines()
    )
    assert new.created
    assert Path(new.database_name).parent == sqlite_target.parent
    assert sqlite_counts(Path(new.database_name)) == at_backup
    with pytest.raises(Conflict):
        backups.restore(
            backup.path,
            "sqlite",
            url,
            mode="new",
            new_database=Path(new.database_name).name,
            pg_bin_dir=None,
            on_line=Lines(),
        )


def test_sqlite_backup_truncated_by_1kb_fails_verification(
    sqlite_target: Path, backup_dir: Path
) -> None:
    backup = take(f"sqlite:///{sqlite_target}", backup_dir)
    backup.path.write_bytes(backup.path.read_bytes()[:-1024])
    with pytest.raises(VerificationFailed, match="truncated"):
        backups.verify(backup.path, None, pg_bin_dir=None, on_line=Lines())


def test_sqlite_backup_of_a_missing_file_fails(tmp_path: Path, backup_dir: Path) -> None:
    with pytest.raises(BackupFailed, match="does not exist"):
        take(f"sqlite:///{tmp_path / 'nope.sqlite3'}", backup_dir)
    assert not (tmp_path / "nope.sqlite3").exists()


def test_sqlite_stop_request_leaves_no_file(sqlite_target: Path, backup_dir: Path) -> None:
    with pytest.raises(BackupCancelled):
        take(f"sqlite:///{sqlite_target}", backup_dir, should_stop=lambda: True)
    assert dir_listing(backup_dir) == []


# Files and directories ------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "../x",
        "a/b",
        "/etc/passwd",
        "..",
        "",
        "x.dump",
        "demo-20240101T000000Z-0123abcd.dump/../../x",
        ".partial-demo-20240101T000000Z-0123abcd.dump",
        "demo-20240101T000000Z-0123abcd.exe",
    ],
)
def test_safe_path_refuses_names_it_did_not_make(tmp_path: Path, name: str) -> None:
    with pytest.raises(NotFound):
        backups.safe_path(tmp_path, name)


def test_safe_path_accepts_its_own_names_only_when_present(tmp_path: Path) -> None:
    name = "demo-20240101T000000Z-0123abcd.dump"
    with pytest.raises(NotFound):
        backups.safe_path(tmp_path, name)
    (tmp_path / name).write_bytes(b"x")
    assert backups.safe_path(tmp_path, name) == tmp_path / name
    assert backups.format_of(name) == "custom"


def test_safe_path_refuses_a_symlink_out_of_the_directory(tmp_path: Path) -> None:
    outside = tmp_path / "secret.txt"
    outside.write_text("secret")
    inside = tmp_path / "backups"
    inside.mkdir()
    (inside / "demo-20240101T000000Z-0123abcd.dump").symlink_to(outside)
    with pytest.raises(NotFound):
        backups.safe_path(inside, "demo-20240101T000000Z-0123abcd.dump")


def test_check_backup_dir(tmp_path: Path) -> None:
    assert backups.check_backup_dir(tmp_path) is None
    assert backups.check_backup_dir(tmp_path / "not" / "yet") is None
    assert not (tmp_path / "not").exists()
    a_file = tmp_path / "file"
    a_file.write_text("")
    reason = backups.check_backup_dir(a_file)
    assert reason is not None and "not a directory" in reason
    reason = backups.check_backup_dir(a_file / "below")
    assert reason is not None and "not a directory" in reason
    assert dir_listing(tmp_path) == ["file"]
