"""Backups, verifications and restores as jobs; the backup gate before migrations; retention.

Real PostgreSQL databases (a fresh one per test) and real SQLite files, run through the
jobs (run_in_foreground, or a Runner where a job is cancelled or killed).
"""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import stat
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from projects import Rev
from sqlalchemy import create_engine, select, text
from sqlalchemy.engine import make_url

from admin import audit, migrations
from admin.backups import actions, records, retention
from admin.backups.files import backup_name, sha256_of
from admin.backups.results import BackupFormat
from admin.config import Settings
from admin.errors import InvalidInput
from admin.jobs import JobRequest, Runner, queue, run_in_foreground
from admin.jobs.protocol import heads_text
from admin.runtime import Runtime
from admin.store.models import AuditEvent, Backup, Job, JobKind, JobLine, Source, utcnow

ALICE = audit.Actor("alice", "operator", Source.WEB, "10.1.1.1")
PROJECT = [
    Rev(
        "aaa111",
        None,
        "create a",
        "op.create_table('a', sa.Column('id', sa.Integer, primary_key=True), "
        "sa.Column('name', sa.String(50)))",
        "op.drop_table('a')",
    ),
    Rev(
        "bbb222",
        "aaa111",
        "create b",
        "op.create_table('b', sa.Column('id', sa.Integer, primary_key=True), "
        "sa.Column('body', sa.Text))",
        "op.drop_table('b')",
    ),
    Rev(
        "ccc333",
        "bbb222",
        "create c",
        "op.create_table('c', sa.Column('id', sa.Integer, primary_key=True))",
        "op.drop_table('c')",
    ),
]


def quiet(_: str) -> None:
    return None


@pytest.fixture
def make_runtime(
    make_settings: Callable[..., Settings], alembic_project: Callable[..., Path], pg_databases: Any
) -> Iterator[Callable[..., Runtime]]:
    opened: list[Runtime] = []

    def make(*, target: str | None = None, **values: Any) -> Runtime:
        settings: dict[str, Any] = {
            "database_url": target or pg_databases.create("bj"),
            "alembic_config": alembic_project(PROJECT, name=f"p{len(opened)}"),
            "job_heartbeat": 0.2,
            "job_cancel_grace": 3.0,
            "backup_lock_wait_timeout": "10s",
            **values,
        }
        rt = Runtime.open(make_settings(**settings))
        rt.upgrade_store(audit.Actor("test", None, Source.CLI))
        opened.append(rt)
        return rt

    yield make
    for rt in opened:
        rt.close()
    migrations.dispose_engines()


def run(rt: Runtime, request: JobRequest, actor: audit.Actor = ALICE) -> Job:
    return run_in_foreground(rt, request, actor, echo=quiet)


def backup_job(rt: Runtime, fmt: str | None = None, reason: str = "manual") -> Job:
    return run(rt, actions.backup_request(rt.settings, fmt=fmt, reason=reason))


def restore_job(rt: Runtime, backup_id: int, mode: str, **kwargs: Any) -> Job:
    ask = actions.RestoreAsk(
        backup_id, mode, confirm=actions.confirmation_name(rt.settings), **kwargs
    )
    return run(rt, actions.restore_request(rt, ask, ALICE))


def execute(url: str, *statements: str) -> None:
    engine = create_engine(url)
    try:
        with engine.begin() as connection:
            for statement in statements:
                connection.execute(text(statement))
    finally:
        engine.dispose()


def counts(url: str) -> dict[str, int]:
    """Row count of every table (public schema, or the SQLite file)."""
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            if engine.dialect.name == "sqlite":
                query = "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY 1"
            else:
                query = "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1"
            tables = list(connection.execute(text(query)).scalars())
            return {
                table: connection.execute(text(f'SELECT count(*) FROM "{table}"')).scalar_one()
                for table in tables
            }
    finally:
        engine.dispose()


# 1..200 on both dialects (SQLite has no generate_series).
_NUMBERS = "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 200)"


def seed(rt: Runtime) -> dict[str, int]:
    """The target at bbb222 (migrated in this process) with rows in a, b and a table of its own."""
    url = rt.settings.database_url
    project = migrations.open_project(rt.settings.alembic_config)
    engine = migrations.new_engine(url)
    try:
        with engine.connect() as connection:
            migrations.run(
                project, connection, migrations.Command.UPGRADE, "bbb222", on_event=lambda e: None
            )
    finally:
        engine.dispose()
    execute(
        url,
        "CREATE TABLE items (id integer PRIMARY KEY, name varchar(40))",
        f"{_NUMBERS} INSERT INTO items SELECT i, 'item ' || i FROM n",
        f"{_NUMBERS} INSERT INTO a (id, name) SELECT i, 'a' || i FROM n WHERE i <= 40",
        f"{_NUMBERS} INSERT INTO b (id, body) SELECT i, 'b' || i FROM n WHERE i <= 30",
    )
    return counts(url)


def lines(rt: Runtime, job_id: int) -> list[JobLine]:
    with rt.reads() as session:
        return queue.lines(session, job_id, 0, 100_000)


def texts(rt: Runtime, job_id: int) -> list[str]:
    return [line.text for line in lines(rt, job_id)]


def job_row(rt: Runtime, job_id: int) -> Job:
    with rt.reads() as session:
        return queue.get(session, job_id)


def backup_row(rt: Runtime, backup_id: int | None) -> Backup:
    assert backup_id is not None
    with rt.reads() as session:
        return records.get(session, backup_id)


def actions_of(rt: Runtime, **where: Any) -> list[str]:
    query = select(AuditEvent.action).order_by(AuditEvent.id)
    for column, value in where.items():
        query = query.where(getattr(AuditEvent, column) == value)
    with rt.reads() as session:
        return list(session.scalars(query))


def listing(path: Path) -> list[str]:
    """Everything in a directory, hidden in-progress files included."""
    return sorted(os.listdir(path)) if path.exists() else []


def revision_of(rt: Runtime, url: str | None = None) -> str:
    project = migrations.open_project(rt.settings.alembic_config)
    return heads_text(migrations.read_current(project, url or rt.settings.database_url)[1])


@contextlib.contextmanager
def holding_lock(url: str, table: str) -> Iterator[None]:
    """Another session holds an ACCESS EXCLUSIVE lock on ``table`` inside the block."""
    engine = create_engine(url)
    connection = engine.connect()
    try:
        connection.execute(text(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE"))
        yield
    finally:
        connection.rollback()
        connection.close()
        engine.dispose()


def wait_for_line(rt: Runtime, job_id: int, needle: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(needle in t for t in texts(rt, job_id)):
            return
        time.sleep(0.05)
    raise AssertionError(f"no line with {needle!r}: {texts(rt, job_id)}")


# PostgreSQL ------------------------------------------------------------------------------


@pytest.mark.postgres
def test_backup_job_records_a_verified_backup(make_runtime: Callable[..., Runtime]) -> None:
    rt = make_runtime()
    seed(rt)

    job = backup_job(rt)

    assert job.status == "succeeded", job.error
    assert job.kind == "backup" and job.revision_after == "bbb222"
    backup = backup_row(rt, job.backup_id)
    assert backup.job_id == job.id
    assert backup.status == "verified" and backup.error is None
    assert backup.format == "custom" and backup.dialect == "postgresql"
    assert backup.revision == "bbb222"
    assert backup.reason == "manual" and backup.created_by == "alice"
    assert backup.database_name == make_url(rt.settings.database_url).database
    assert backup.server_version and backup.server_version.startswith("15")
    assert backup.tool_version and backup.tool_version.startswith("15")
    assert backup.duration_ms is not None and backup.verify_ms is not None
    assert backup.verified_at is not None
    path = rt.settings.backup_dir / (backup.file_name or "")
    assert backup.size_bytes == path.stat().st_size > 0
    assert backup.sha256 == sha256_of(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert listing(rt.settings.backup_dir) == [backup.file_name]
    log = texts(rt, job.id)
    assert any(t.startswith("pg_dump: dumping contents of table") for t in log)
    assert any(f"backup {backup.id} verified" in t for t in log)
    assert not any(line.level == "sql" for line in lines(rt, job.id))
    assert actions_of(rt, job_id=job.id) == [
        "job-queued",
        "job-started",
        "backup-started",
        "backup-verified",
        "job-finished",
    ]
    with rt.reads() as session:
        finished = session.scalars(
            select(AuditEvent).where(AuditEvent.action == "job-finished")
        ).all()[-1]
    assert finished.backup_id == backup.id and finished.actor == "alice"


@pytest.mark.postgres
@pytest.mark.parametrize("fmt", ["custom", "plain"])
def test_restore_replace_brings_back_tables_rows_and_revision(
    make_runtime: Callable[..., Runtime], fmt: str
) -> None:
    rt = make_runtime()
    url = rt.settings.database_url
    at_backup = seed(rt)
    taken = backup_job(rt, fmt)
    assert taken.status == "succeeded", taken.error
    # Drop a table (a downgrade drops b) and insert rows.
    down = run(rt, JobRequest(JobKind.DOWNGRADE, "aaa111"))
    assert down.status == "succeeded", down.error
    execute(url, "INSERT INTO items VALUES (1000, 'later')", "DELETE FROM a WHERE id < 5")
    assert counts(url) != at_backup and revision_of(rt) == "aaa111"

    job = restore_job(rt, taken.backup_id or 0, "replace")

    assert job.status == "succeeded", job.error
    assert counts(url) == at_backup
    assert revision_of(rt) == "bbb222"
    assert job.revision_after == "bbb222" and job.backup_id == taken.backup_id
    log = texts(rt, job.id)
    assert any("is at revision bbb222" in t for t in log)
    assert actions_of(rt, job_id=job.id)[-2:] == ["restore-finished", "job-finished"]
    with rt.reads() as session:
        event = session.scalars(
            select(AuditEvent).where(AuditEvent.action == "restore-finished")
        ).one()
    assert event.details["mode"] == "replace"
    assert event.details["revision_before"] == "aaa111"
    assert event.details["revision_after"] == "bbb222"
    assert event.outcome == "success" and event.backup_id == taken.backup_id


@pytest.mark.postgres
def test_restore_into_a_new_database_leaves_the_target_untouched(
    make_runtime: Callable[..., Runtime], pg_databases: Any
) -> None:
    rt = make_runtime()
    url = rt.settings.database_url
    at_backup = seed(rt)
    taken = backup_job(rt)
    execute(url, "DROP TABLE items", "INSERT INTO a (id, name) VALUES (999, 'x')")
    after_change = counts(url)
    name = f"apex_restored_{uuid.uuid4().hex[:10]}"
    pg_databases.created.append(name)

    job = restore_job(rt, taken.backup_id or 0, "new", new_database=name)

    assert job.status == "succeeded", job.error
    restored = make_url(url).set(database=name).render_as_string(hide_password=False)
    assert counts(restored) == at_backup
    assert revision_of(rt, restored) == "bbb222"
    assert counts(url) == after_change
    assert job.revision_after == "bbb222"  # the target's, unchanged
    assert any(f"the new database {name}" in t for t in texts(rt, job.id))


@pytest.mark.postgres
def test_a_dump_truncated_by_1kb_fails_verify_again_and_stops_counting(
    make_runtime: Callable[..., Runtime],
) -> None:
    rt = make_runtime()
    seed(rt)
    taken = backup_job(rt)
    backup = backup_row(rt, taken.backup_id)
    again = run(rt, actions.verify_request(rt, backup.id))
    assert again.status == "succeeded", again.error
    assert backup_row(rt, backup.id).verified_at != backup.verified_at

    path = rt.settings.backup_dir / (backup.file_name or "")
    path.write_bytes(path.read_bytes()[:-1024])
    job = run(rt, actions.verify_request(rt, backup.id))

    assert job.status == "failed"
    assert "changed since it was taken" in (job.error or "")
    failed = backup_row(rt, backup.id)
    assert failed.status == "failed" and "changed since it was taken" in (failed.error or "")
    with rt.reads() as session:
        assert records.last_verified(session, rt.settings) is None
    assert actions_of(rt, backup_id=backup.id)[-2:] == ["backup-failed", "job-finished"]
    # A failed backup is not restored.
    with pytest.raises(InvalidInput, match="not verified"):
        actions.restore_request(
            rt,
            actions.RestoreAsk(
                backup.id, "replace", confirm=actions.confirmation_name(rt.settings)
            ),
            ALICE,
        )
    assert actions_of(rt)[-1] == "restore-refused"


@pytest.fixture
def limited_role(pg_databases: Any) -> Iterator[Callable[[str], str]]:
    """A login role that may migrate a database but not dump it all: a real pg_dump failure.

    The test server trusts 127.0.0.1, so a wrong password is accepted; and a role that does
    not exist cannot reach the gate at all (the plan, then the migration lock, need a
    connection first). This role connects and may create tables, but one table is not
    readable to it, so pg_dump fails with "permission denied" after connecting.
    """
    made: list[tuple[str, str]] = []

    def make(url: str) -> str:
        role = f"apex_limited_{uuid.uuid4().hex[:8]}"
        execute(
            url,
            f"CREATE ROLE {role} LOGIN",
            f"GRANT USAGE, CREATE ON SCHEMA public TO {role}",
            "CREATE TABLE payroll (id int PRIMARY KEY, amount int)",
            "INSERT INTO payroll VALUES (1, 100)",
        )
        made.append((url, role))
        return make_url(url).set(username=role).render_as_string(hide_password=False)

    yield make
    for url, role in made:
        with contextlib.suppress(Exception):
            execute(url, f"DROP OWNED BY {role}", f"DROP ROLE {role}")


@pytest.mark.postgres
def test_a_production_upgrade_whose_backup_fails_runs_no_sql(
    make_runtime: Callable[..., Runtime], pg_databases: Any, limited_role: Callable[[str], str]
) -> None:
    owner_url = pg_databases.create("gate")
    # Production requires a rehearsal by default; this test is about the backup gate.
    rt = make_runtime(
        target=limited_role(owner_url), environment="production", require_rehearsal=False
    )
    assert rt.settings.backups_gate_migrations
    before = counts(owner_url)

    job = run(rt, JobRequest(JobKind.UPGRADE, "head"))

    assert job.status == "failed"
    assert (job.error or "").startswith("backup failed: ")
    assert "permission denied for table payroll" in (job.error or "")
    assert "no SQL was run" in (job.error or "")
    assert counts(owner_url) == before  # no alembic_version, no a, b or c
    assert not any(line.level in ("sql", "step") for line in lines(rt, job.id))
    backup = backup_row(rt, job.backup_id)
    assert backup.status == "failed" and backup.reason == "before-migrate"
    assert backup.job_id == job.id
    assert listing(rt.settings.backup_dir) == []
    assert "job failed" in texts(rt, job.id)[-1] and "backup failed" in texts(rt, job.id)[-1]
    with rt.reads() as session:
        finished = session.scalars(
            select(AuditEvent).where(
                AuditEvent.action == "job-finished", AuditEvent.job_id == job.id
            )
        ).one()
    assert finished.backup_id == backup.id and finished.outcome == "failure"


@pytest.mark.postgres
def test_a_gated_upgrade_takes_a_verified_backup_before_its_first_sql(
    make_runtime: Callable[..., Runtime],
) -> None:
    rt = make_runtime(backup_before_migrate=True, backup_format="plain")
    seed(rt)
    job = run(rt, JobRequest(JobKind.UPGRADE, "head"))

    assert job.status == "succeeded", job.error
    backup = backup_row(rt, job.backup_id)
    assert backup.status == "verified" and backup.reason == "before-migrate"
    assert backup.revision == job.revision_before == "bbb222"
    assert backup.format == "plain" and (backup.file_name or "").endswith(".sql.gz")
    log = lines(rt, job.id)
    verified_at = next(i for i, x in enumerate(log) if f"backup {backup.id} verified" in x.text)
    first_sql = next(i for i, x in enumerate(log) if x.level == "sql")
    assert verified_at < first_sql
    assert actions_of(rt, job_id=job.id) == [
        "job-queued",
        "job-started",
        "backup-started",
        "backup-verified",
        "job-finished",
    ]


@pytest.mark.postgres
@pytest.mark.timeout(60)
def test_a_held_lock_fails_the_backup_job_within_the_lock_wait_timeout(
    make_runtime: Callable[..., Runtime],
) -> None:
    rt = make_runtime(backup_lock_wait_timeout="1s")
    seed(rt)
    started = time.monotonic()
    with holding_lock(rt.settings.database_url, "items"):
        job = backup_job(rt)
    assert time.monotonic() - started < 20
    assert job.status == "failed"
    assert "BACKUP_LOCK_WAIT_TIMEOUT=1s" in (job.error or "")
    backup = backup_row(rt, job.backup_id)
    assert backup.status == "failed" and "LOCK TABLE" in (backup.error or "")
    assert listing(rt.settings.backup_dir) == []


@pytest.mark.postgres
@pytest.mark.timeout(90)
def test_a_cancelled_backup_leaves_no_file_and_a_killed_one_is_cleaned_at_start(
    make_runtime: Callable[..., Runtime],
) -> None:
    rt = make_runtime(backup_lock_wait_timeout="60s")
    seed(rt)
    runner = Runner(rt)
    runner.start()
    try:
        with holding_lock(rt.settings.database_url, "items"):
            # Cancelled while pg_dump waits for the lock: pg_dump is stopped, nothing kept.
            job = runner.submit(actions.backup_request(rt.settings, fmt=None), ALICE)
            wait_for_line(rt, job.id, "pg_dump: reading")
            assert any(n.startswith(".partial-") for n in listing(rt.settings.backup_dir))
            runner.cancel(job.id, ALICE)
            assert runner.wait(job.id, timeout=30)
            cancelled = job_row(rt, job.id)
            assert cancelled.status == "cancelled"
            assert listing(rt.settings.backup_dir) == []
            row = backup_row(rt, cancelled.backup_id)
            assert row.status == "failed" and "cancelled" in (row.error or "")

            # SIGKILLed with pg_dump (its process group): a partial file stays behind.
            killed = runner.submit(actions.backup_request(rt.settings, fmt=None), ALICE)
            wait_for_line(rt, killed.id, "pg_dump: reading")
            pid = job_row(rt, killed.id).worker_pid or 0
            os.killpg(pid, signal.SIGKILL)
            assert runner.wait(killed.id, timeout=30)
    finally:
        runner.stop()
    assert job_row(rt, killed.id).status == "interrupted"
    assert any(n.startswith(".partial-") for n in listing(rt.settings.backup_dir))
    abandoned = job_row(rt, killed.id).backup_id
    assert backup_row(rt, abandoned).status == "running"

    problem = actions.prepare(rt, audit.Actor("system", None, Source.WEB))

    assert problem is None
    assert listing(rt.settings.backup_dir) == []
    row = backup_row(rt, abandoned)
    assert row.status == "failed" and "interrupted" in (row.error or "")


# SQLite ----------------------------------------------------------------------------------


def sqlite_runtime(make_runtime: Callable[..., Runtime], tmp_path: Path, **values: Any) -> Runtime:
    url = f"sqlite:///{tmp_path / 'crm.sqlite3'}"
    migrations.create_database(url)
    return make_runtime(target=url, **values)


def test_sqlite_backup_and_restore_round_trip_as_jobs(
    make_runtime: Callable[..., Runtime], tmp_path: Path
) -> None:
    rt = sqlite_runtime(make_runtime, tmp_path)
    url = rt.settings.database_url
    at_backup = seed(rt)
    taken = backup_job(rt)
    assert taken.status == "succeeded", taken.error
    backup = backup_row(rt, taken.backup_id)
    assert backup.format == "sqlite" and backup.dialect == "sqlite"
    assert backup.database_name == "crm.sqlite3" and backup.revision == "bbb222"
    assert backup.status == "verified"
    path = rt.settings.backup_dir / (backup.file_name or "")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600

    assert run(rt, JobRequest(JobKind.DOWNGRADE, "aaa111")).status == "succeeded"
    execute(url, "INSERT INTO items VALUES (5000, 'later')")
    app = sqlite3.connect(tmp_path / "crm.sqlite3")  # the CRM keeps its file open
    try:
        job = restore_job(rt, backup.id, "replace")
        assert job.status == "succeeded", job.error
        assert app.execute("SELECT count(*) FROM b").fetchone()[0] == 30
    finally:
        app.close()
    assert counts(url) == at_backup
    assert revision_of(rt) == "bbb222" == job.revision_after

    into = restore_job(rt, backup.id, "new", new_database="copy.sqlite3")
    assert into.status == "succeeded", into.error
    assert counts(f"sqlite:///{tmp_path / 'copy.sqlite3'}") == at_backup


def test_restore_needs_the_database_name_typed(
    make_runtime: Callable[..., Runtime], tmp_path: Path
) -> None:
    rt = sqlite_runtime(make_runtime, tmp_path)
    seed(rt)
    backup_id = backup_job(rt).backup_id or 0
    for typed in ("", "crm", "CRM.sqlite3"):
        with pytest.raises(InvalidInput, match="crm.sqlite3"):
            actions.restore_request(
                rt, actions.RestoreAsk(backup_id, "replace", confirm=typed), ALICE
            )
    with pytest.raises(InvalidInput, match="cannot name a new database file"):
        actions.restore_request(
            rt,
            actions.RestoreAsk(backup_id, "new", new_database="../x", confirm="crm.sqlite3"),
            ALICE,
        )
    refused = actions_of(rt, action="restore-refused")
    assert len(refused) == 4
    with rt.reads() as session:
        assert session.scalars(select(Job).where(Job.kind == "restore")).all() == []


# Retention -------------------------------------------------------------------------------


def fake_backup(
    rt: Runtime, *, days_old: float, status: str = "verified", job_id: int | None = None
) -> Backup:
    """A backup row and its file, as if taken ``days_old`` days ago."""
    settings = rt.settings
    when = utcnow() - timedelta(days=days_old)
    name = backup_name("crm", BackupFormat.CUSTOM, when)
    settings.backup_dir.mkdir(parents=True, exist_ok=True)
    (settings.backup_dir / name).write_bytes(b"dump")
    with rt.transaction() as session:
        row = Backup(
            job_id=job_id,
            target_key=migrations.target_key(settings.database_url),
            target_display=settings.target_url_masked,
            dialect="postgresql",
            database_name="crm",
            format="custom",
            file_name=name,
            size_bytes=4,
            reason="manual",
            status=status,
            created_by="tests",
            created_at=when,
        )
        session.add(row)
    return row


def test_retention_keeps_the_last_n_the_last_d_days_and_protecting_backups(
    make_runtime: Callable[..., Runtime], tmp_path: Path
) -> None:
    rt = sqlite_runtime(make_runtime, tmp_path, backup_keep_last=2, backup_keep_days=7)
    ancient = fake_backup(rt, days_old=40)
    protecting = fake_backup(rt, days_old=30)
    old_failed = fake_backup(rt, days_old=20, status="failed")
    old = fake_backup(rt, days_old=10)
    older_kept = [fake_backup(rt, days_old=9), fake_backup(rt, days_old=8)]
    recent_failed = fake_backup(rt, days_old=1, status="failed")
    # A downgrade two days ago was protected by the 30-day-old backup (evidence: kept).
    with rt.transaction() as session:
        session.add(
            Job(
                kind="downgrade",
                status="succeeded",
                target_key="x",
                target_display="x",
                requested_by="bob",
                source="web",
                created_at=utcnow() - timedelta(days=2),
                backup_id=protecting.id,
            )
        )

    with rt.reads() as session:
        planned = {b.id for b in retention.doomed(session, rt.settings)}
    dry = retention.prune(rt, ALICE, dry_run=True)
    assert set(dry.backup_ids) == planned == {ancient.id, old_failed.id, old.id}
    assert all((rt.settings.backup_dir / n).exists() for n in dry.file_names)

    pruned = retention.prune(rt, ALICE)

    assert set(pruned.backup_ids) == {ancient.id, old_failed.id, old.id}
    kept = {protecting.id, recent_failed.id, *(b.id for b in older_kept)}
    with rt.reads() as session:
        status = {b.id: b.status for b in session.scalars(select(Backup))}
    assert {i for i, s in status.items() if s == "deleted"} == set(pruned.backup_ids)
    assert all(status[i] != "deleted" for i in kept)
    left = set(listing(rt.settings.backup_dir))
    assert left == {b.file_name for b in (protecting, recent_failed, *older_kept)}
    event = actions_of(rt, action="backups-pruned")
    assert event == ["backups-pruned"]
    assert not retention.prune(rt, ALICE)  # nothing more to do, nothing audited
    assert actions_of(rt, action="backups-pruned") == ["backups-pruned"]


def test_a_successful_backup_job_prunes(
    make_runtime: Callable[..., Runtime], tmp_path: Path
) -> None:
    rt = sqlite_runtime(make_runtime, tmp_path, backup_keep_last=1, backup_keep_days=0)
    seed(rt)
    first = backup_job(rt)
    second = backup_job(rt)
    assert second.status == "succeeded", second.error
    assert backup_row(rt, first.backup_id).status == "deleted"
    assert listing(rt.settings.backup_dir) == [backup_row(rt, second.backup_id).file_name]
    assert any("retention: pruned 1 old backup" in t for t in texts(rt, second.id))
    with rt.reads() as session:
        event = session.scalars(
            select(AuditEvent).where(AuditEvent.action == "backups-pruned")
        ).one()
    assert event.job_id == second.id and event.details["backup_ids"] == [first.backup_id]


@pytest.mark.postgres
def test_a_restore_into_a_new_database_by_a_role_without_createdb_says_so(
    make_runtime: Callable[..., Runtime], limited_role: Callable[[str], str]
) -> None:
    owner = make_runtime()
    seed(owner)
    taken = backup_job(owner)
    limited = make_runtime(
        target=limited_role(owner.settings.database_url),
        admin_database_url=owner.settings.admin_database_url,
        backup_dir=owner.settings.backup_dir,
    )

    job = restore_job(limited, taken.backup_id or 0, "new")

    assert job.status == "failed"
    assert "permission denied to create database" in (job.error or "")
    assert "CREATEDB" in (job.error or "")
    event = actions_of(limited, job_id=job.id)
    assert event[-2:] == ["restore-finished", "job-finished"]


@pytest.mark.postgres
def test_a_full_disk_fails_the_backup_job_and_leaves_no_file(
    make_runtime: Callable[..., Runtime], tiny_disk: Path
) -> None:
    rt = make_runtime(backup_dir=tiny_disk / "backups")
    seed(rt)
    execute(
        rt.settings.database_url,
        "CREATE TABLE bulk AS SELECT i, md5(i::text) AS h FROM generate_series(1, 20000) i",
    )

    job = backup_job(rt)

    assert job.status == "failed"
    assert "No space left on device" in (job.error or "")
    assert backup_row(rt, job.backup_id).status == "failed"
    assert listing(tiny_disk / "backups") == []
