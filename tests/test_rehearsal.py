"""Rehearsals on real PostgreSQL, on a project made for the test: a downgrade that forgets
an index, an upgrade that rewrites a table (ALTER COLUMN TYPE); the scratch database is gone
afterwards and the target was never touched."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from projects import Rev
from rehearsal_support import (
    databases,
    drop_database,
    execute,
    execute_autocommit,
    rehearse,
    state,
    upgrade,
)
from sqlalchemy import select
from sqlalchemy.engine import make_url

from admin import audit, migrations
from admin.config import Settings
from admin.jobs import queue
from admin.runtime import Runtime
from admin.store.models import AuditEvent, Rehearsal, Source

BASE, RETYPE, FORGETFUL = "aa0000000001", "bb0000000002", "cc0000000003"
PROJECT = [
    Rev(
        BASE,
        None,
        "items",
        "op.create_table('items', sa.Column('id', sa.Integer, primary_key=True), "
        "sa.Column('name', sa.String(40)), sa.Column('qty', sa.Integer))",
        "op.drop_table('items')",
    ),
    Rev(
        RETYPE,
        BASE,
        "qty becomes bigint (a rewrite)",
        "op.alter_column('items', 'qty', type_=sa.BigInteger())",
        "op.alter_column('items', 'qty', type_=sa.Integer())",
    ),
    Rev(
        FORGETFUL,
        RETYPE,
        "index by name, whose downgrade forgets it",
        "op.create_index('ix_items_name', 'items', ['name'])\n"
        'op.execute("UPDATE items SET name = upper(name) WHERE id <= 1500")',
        "pass",
    ),
]
ROWS = 3000


@pytest.fixture
def make_runtime(
    make_settings: Callable[..., Settings], alembic_project: Callable[..., Path], pg_databases: Any
) -> Iterator[Callable[..., Runtime]]:
    opened: list[Runtime] = []

    def make(revisions: list[Rev] = PROJECT, **values: Any) -> Runtime:
        settings: dict[str, Any] = {
            "database_url": pg_databases.create("rh"),
            "alembic_config": alembic_project(revisions, name=f"p{len(opened)}"),
            "job_heartbeat": 0.2,
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


def seeded(rt: Runtime) -> Runtime:
    upgrade(rt, BASE)
    execute(
        rt.settings.database_url,
        f"INSERT INTO items SELECT i, 'item ' || i, i FROM generate_series(1, {ROWS}) i",
    )
    return rt


def server_of(url: str) -> str:
    return make_url(url).set(database="postgres").render_as_string(hide_password=False)


def test_a_rehearsal_measures_the_plan_proves_the_way_back_and_leaves_the_target_alone(
    make_runtime: Callable[..., Runtime],
) -> None:
    rt = seeded(make_runtime())
    url = rt.settings.database_url
    before = state(url, rt.settings.alembic_config)
    job, row = rehearse(rt)

    assert job.status == "succeeded", job.error
    assert row.status == "succeeded"
    assert row.plan_fingerprint == job.plan_fingerprint and row.sql_fingerprint
    assert row.backup_revision == BASE and row.backup_id is not None
    report = row.report or {}
    steps = {step["revision"]: step for step in report["upgrade"]["steps"]}
    assert list(steps) == [RETYPE, FORGETFUL]
    # ALTER COLUMN TYPE rewrites the table, under ACCESS EXCLUSIVE.
    assert steps[RETYPE]["rewrites"] == ["public.items"]
    assert steps[FORGETFUL]["rewrites"] == []
    holds = {hold["relation"]: hold for hold in steps[RETYPE]["access_exclusive"]}
    assert holds["public.items"]["seconds"] > 0
    assert holds["public.items"]["rows"] == ROWS
    assert ["public.items", "AccessExclusiveLock"] in steps[RETYPE]["locks"]
    # The index is built, and the backfill's rows are counted.
    assert "public.ix_items_name" in steps[FORGETFUL]["indexes_built"]
    update = [s for s in steps[FORGETFUL]["statements"] if s["sql"].startswith("UPDATE items")]
    assert update and update[0]["rows"] == 1500
    assert steps[FORGETFUL]["rows"] >= 1500
    assert all(step["wal_bytes"] and step["wal_bytes"] > 0 for step in steps.values())
    # The way back forgets the index: the difference names it.
    trip = report["round_trip"]
    assert trip["result"] == "different"
    assert len(trip["differences"]) == 1
    assert trip["differences"][0].startswith("index public.ix_items_name: left behind")
    # ...so the upgrade does not repeat cleanly either: the index is already there.
    assert trip["upgrade_again"]["ok"] is False
    assert "ix_items_name" in trip["upgrade_again"]["error"]
    summary = report["summary"]
    assert summary["rewrites"] == ["public.items"]
    assert summary["longest_access_exclusive"]["relation"] == "public.items"
    assert summary["round_trip"] == "different"
    assert summary["size_before"] and summary["size_after"]
    # The scratch database is gone, and the target is as it was.
    assert row.scratch_database and not row.scratch_kept
    assert row.scratch_database not in databases(server_of(url))
    assert state(url, rt.settings.alembic_config) == before
    with rt.reads() as session:
        assert queue.get(session, job.id).revision_after == BASE
        finished = session.scalars(
            select(AuditEvent).where(AuditEvent.action == "rehearsal-finished")
        ).all()
    assert [event.details["rehearsal_id"] for event in finished] == [row.id]


def test_a_reversible_plan_round_trips_identical_and_a_lock_warning_is_given(
    make_runtime: Callable[..., Runtime],
) -> None:
    reversible = [*PROJECT[:2]]
    rt = seeded(make_runtime(reversible, rehearsal_lock_warning=0.0))
    job, row = rehearse(rt)
    assert job.status == "succeeded", job.error
    summary = (row.report or {})["summary"]
    assert summary["round_trip"] == "identical"
    assert (row.report or {})["round_trip"]["upgrade_again"]["ok"] is True
    assert any("ACCESS EXCLUSIVE on public.items" in w for w in summary["warnings"])


def test_a_failing_plan_fails_the_rehearsal_and_keep_failed_keeps_the_scratch_database(
    make_runtime: Callable[..., Runtime],
) -> None:
    broken = [*PROJECT[:1], Rev(RETYPE, BASE, "broken", "op.execute('SELECT * FROM nowhere')")]
    rt = seeded(make_runtime(broken, rehearsal_keep_failed=True))
    url = rt.settings.database_url
    before = state(url, rt.settings.alembic_config)
    job, row = rehearse(rt)
    assert job.status == "failed"
    assert "nowhere" in (row.error or "")
    assert row.status == "failed" and row.scratch_kept
    assert row.scratch_database in databases(server_of(url))
    assert state(url, rt.settings.alembic_config) == before
    drop_database(server_of(url), row.scratch_database or "")


def test_no_backup_at_the_current_revision_means_one_is_taken_first(
    make_runtime: Callable[..., Runtime],
) -> None:
    rt = seeded(make_runtime(PROJECT[:2]))
    job, first = rehearse(rt)
    job2, second = rehearse(rt)
    assert first.backup_id == second.backup_id  # the newest verified backup is reused
    assert job2.status == "succeeded"


def test_rehearsal_database_url_puts_the_scratch_database_on_that_server(
    make_runtime: Callable[..., Runtime], tcp_proxy: Any, pg_server_url: str
) -> None:
    # The same cluster through another address: the scratch database is made through it.
    elsewhere = tcp_proxy.url(pg_server_url)
    rt = seeded(make_runtime(PROJECT[:2], rehearsal_database_url=elsewhere))
    job, row = rehearse(rt)
    assert job.status == "succeeded", job.error
    with rt.reads() as session:
        lines = [line.text for line in queue.lines(session, job.id, 0, 10_000)]
    port = f":{make_url(elsewhere).port}/{row.scratch_database}"
    assert any(port in line and "restored in" in line for line in lines), lines[-20:]
    assert row.scratch_database not in databases(pg_server_url)


def test_a_sqlite_target_is_rehearsed_on_a_copy_of_its_file(
    make_runtime: Callable[..., Runtime], tmp_path: Path
) -> None:
    target = f"sqlite:///{tmp_path / 'crm.sqlite3'}"
    sqlite_project = [
        Rev(BASE, None, "items", PROJECT[0].upgrade, PROJECT[0].downgrade),
        Rev(
            RETYPE,
            BASE,
            "index",
            "op.create_index('ix_items_qty', 'items', ['qty'])",
            "op.drop_index('ix_items_qty', 'items')",
        ),
    ]
    migrations.create_database(target)
    rt = make_runtime(sqlite_project, database_url=target)
    upgrade(rt, BASE)
    before = state(target, rt.settings.alembic_config)
    job, row = rehearse(rt)
    assert job.status == "succeeded", job.error
    report = row.report or {}
    assert report["round_trip"]["result"] == "identical"
    assert [step["revision"] for step in report["upgrade"]["steps"]] == [RETYPE]
    assert not (tmp_path / (row.scratch_database or "missing")).exists()
    assert sorted(p.name for p in tmp_path.glob("*rehearsal*")) == []
    assert state(target, rt.settings.alembic_config) == before


def test_too_little_free_disk_refuses_the_rehearsal_before_any_copy(
    make_runtime: Callable[..., Runtime], tiny_disk: Path
) -> None:
    target = f"sqlite:///{tiny_disk / 'small.sqlite3'}"
    migrations.create_database(target)
    rt = make_runtime(PROJECT[:2], database_url=target)  # empty: the plan starts at base
    job, row = rehearse(rt)
    assert job.status == "failed"
    assert row.status == "failed" and "not enough free disk" in (row.error or "")
    assert row.scratch_database is None
    assert [p.name for p in tiny_disk.iterdir() if "rehearsal" in p.name] == []


def test_a_killed_rehearsals_scratch_database_is_dropped_by_the_next_one(
    make_runtime: Callable[..., Runtime], pg_server_url: str
) -> None:
    rt = seeded(make_runtime(PROJECT[:2]))
    first, row = rehearse(rt)
    # As a worker killed with SIGKILL leaves it: the row running, its database still there.
    leftover = f"{row.scratch_database}_left"
    execute_autocommit(pg_server_url, f'CREATE DATABASE "{leftover}"')
    with rt.transaction() as session:
        killed = session.get(Rehearsal, row.id)
        assert killed is not None
        killed.status, killed.scratch_database = "running", leftover
    second, _ = rehearse(rt)
    assert second.status == "succeeded", second.error
    assert leftover not in databases(pg_server_url)
    with rt.reads() as session:
        cleaned = session.get(Rehearsal, row.id)
        assert cleaned is not None
        assert cleaned.status == "interrupted"
        assert f"dropped by job {second.id}" in (cleaned.error or "")
