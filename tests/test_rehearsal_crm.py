"""A rehearsal of the CRM's plan (the merge up to head) on real PostgreSQL, with thousands
of rows in deals and clients: the backfill's rows, the index built concurrently, the locks
each step holds, and the irreversible revision stopping the round trip."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from projects import REPO_ROOT
from rehearsal_support import databases, execute, rehearse, state, upgrade
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from admin import audit, migrations
from admin.config import Settings
from admin.runtime import Runtime
from admin.store.models import Source

MERGE = "b5f2c8d91e03"
IRREVERSIBLE = "e47a90b3d6f1"
BACKFILL = "5d0c7be2a918"
CONCURRENT = "f19b3a6c4e85"
CLIENTS, DEALS = 3000, 6000

pytestmark = pytest.mark.postgres


def seed(url: str) -> None:
    execute(
        url,
        "INSERT INTO users (id, email, password_hash, full_name, role) SELECT i, "
        "'agent' || i || '@apex.asia', 'x', 'Agent ' || i, 'agent' FROM generate_series(1, 20) i",
        "INSERT INTO agents (id, user_id, commission_rate) "
        "SELECT i, i, 1 + (i % 4) * 0.5 FROM generate_series(1, 20) i",
        "INSERT INTO clients (id, full_name, phone, passport_number, agent_id) SELECT i, "
        "'Client ' || i, '+66 81 ' || i, 'P' || i, 1 + i % 20 "
        f"FROM generate_series(1, {CLIENTS}) i",
        "INSERT INTO properties (id, title, property_type, price, currency, city, district, "
        "latitude, longitude, agent_id) SELECT i, 'Condo ' || i, 'condo', 100000 + i, 'USD', "
        "'Phuket', 'Kata', 7.82, 98.29, 1 + i % 20 FROM generate_series(1, 200) i",
        # Every 10th deal has no agent and every 7th no amount: neither is backfilled.
        "INSERT INTO deals (id, property_id, client_id, agent_id, stage, amount, currency) "
        "SELECT i, 1 + i % 200, 1 + i % " + str(CLIENTS) + ", "
        "CASE WHEN i % 10 = 0 THEN NULL ELSE 1 + i % 20 END, 'lead', "
        "CASE WHEN i % 7 = 0 THEN NULL ELSE 1000 + i END, 'USD' "
        f"FROM generate_series(1, {DEALS}) i",
        "INSERT INTO activities (client_id, deal_id, agent_id, kind, subject, occurred_at) "
        "SELECT 1 + i % " + str(CLIENTS) + ", 1 + i % " + str(DEALS) + ", 1 + i % 20, "
        "'viewing', 'Viewing ' || i, now() - i * interval '1 hour' "
        "FROM generate_series(1, 4000) i",
    )


@pytest.fixture
def crm(make_settings: Any, pg_databases: Any) -> Iterator[Runtime]:
    settings: Settings = make_settings(
        database_url=pg_databases.create("crm"),
        alembic_config=REPO_ROOT / "alembic.ini",
        backup_lock_wait_timeout="10s",
        rehearsal_lock_warning=30.0,
    )
    rt = Runtime.open(settings)
    rt.upgrade_store(audit.Actor("test", None, Source.CLI))
    upgrade(rt, MERGE)
    seed(settings.database_url)
    yield rt
    rt.close()
    migrations.dispose_engines()


def expected_backfill(url: str) -> int:
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            return int(
                connection.execute(
                    text(
                        "SELECT count(*) FROM deals "
                        "WHERE agent_id IS NOT NULL AND amount IS NOT NULL"
                    )
                ).scalar_one()
            )
    finally:
        engine.dispose()


def test_the_crm_plan_rehearsed_on_its_data(crm: Runtime) -> None:
    url = crm.settings.database_url
    before = state(url, crm.settings.alembic_config)
    backfilled = expected_backfill(url)
    assert 4000 < backfilled < DEALS

    job, row = rehearse(crm)

    assert job.status == "succeeded", job.error
    report = row.report or {}
    steps = {step["revision"]: step for step in report["upgrade"]["steps"]}
    assert list(steps) == [IRREVERSIBLE, BACKFILL, CONCURRENT]
    # The lock each step holds.
    assert ["public.clients", "AccessExclusiveLock"] in steps[IRREVERSIBLE]["locks"]
    assert [h["relation"] for h in steps[IRREVERSIBLE]["access_exclusive"]] == ["public.clients"]
    assert steps[IRREVERSIBLE]["access_exclusive"][0]["rows"] == CLIENTS
    assert ["public.deals", "AccessExclusiveLock"] in steps[BACKFILL]["locks"]
    # The backfill's rows.
    updates = [s for s in steps[BACKFILL]["statements"] if s["sql"].startswith("UPDATE deals")]
    assert [s["rows"] for s in updates] == [backfilled]
    assert steps[BACKFILL]["rows"] == backfilled
    # The index built concurrently: outside a transaction, so no lock is left held after it.
    creates = [
        s for s in steps[CONCURRENT]["statements"] if "CREATE INDEX CONCURRENTLY" in s["sql"]
    ]
    assert len(creates) == 1 and creates[0]["locks"] == []
    assert "public.ix_activities_client_id_occurred_at" in steps[CONCURRENT]["indexes_built"]
    assert steps[CONCURRENT]["access_exclusive"] == []
    assert all(step["rewrites"] == [] for step in steps.values())
    # The irreversible revision stops the way back, with its reason.
    trip = report["round_trip"]
    assert trip["result"] == "stopped"
    assert trip["stopped_at"] == IRREVERSIBLE
    assert "cannot be downgraded" in trip["reason"]
    assert trip["upgrade_again"]["ok"] is True
    assert report["summary"]["round_trip_text"].startswith(f"stopped at {IRREVERSIBLE}")
    # The scratch database is gone; the target was never touched.
    server = make_url(url).set(database="postgres").render_as_string(hide_password=False)
    assert row.scratch_database not in databases(server)
    assert state(url, crm.settings.alembic_config) == before
