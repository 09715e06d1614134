"""Operations endpoints (/healthz, /readyz, /metrics) and the log formats."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Callable, Iterator
from datetime import timedelta
from types import SimpleNamespace
from typing import Any

import pytest
from fastapi.testclient import TestClient
from helpers import login
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import text

from admin import audit, entrypoint, logs, migrations
from admin.config import Settings
from admin.jobs import JobRequest, Published, run_in_foreground
from admin.store.models import Backup, JobKind, Source, utcnow
from admin.web.app import create_app

OPERATOR = audit.Actor("olga", "operator", Source.CLI)


@pytest.fixture
def ready_settings(make_settings: Callable[..., Settings]) -> Settings:
    """A SQLite target that exists (empty: every CRM revision pending)."""
    settings = make_settings()
    migrations.create_database(settings.database_url)
    return settings


@pytest.fixture
def app_client(ready_settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(ready_settings)) as client:
        yield client
    migrations.dispose_engines()


def scrape(client: TestClient) -> dict[str, list[Any]]:
    """/metrics as {sample name: [(labels, value), ...]}, parsed by prometheus-client."""
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    samples: dict[str, list[Any]] = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append((sample.labels, sample.value))
    return samples


def value(samples: dict[str, list[Any]], name: str, **labels: str) -> float:
    found = [v for got, v in samples[name] if all(got.get(k) == w for k, w in labels.items())]
    assert len(found) == 1, (name, labels, samples.get(name))
    return float(found[0])


def test_healthz_touches_no_database(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings(database_url="postgresql://nobody@127.0.0.1:1/none")
    with TestClient(create_app(settings)) as client:
        response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_readyz_is_200_with_what_it_checked(app_client: TestClient) -> None:
    response = app_client.get("/readyz")
    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"
    assert response.json() == {
        "status": "ready",
        "store": "ok",
        "target": "empty",
        "pending": len(
            migrations.open_project(app_client.app.state.settings.alembic_config).graph(0).by_id
        ),
        "degraded": None,
    }


def test_readyz_is_503_when_the_target_does_not_answer(
    make_settings: Callable[..., Settings],
) -> None:
    settings = make_settings(database_url="postgresql://asia:s3cret@127.0.0.1:1/asia_crm")
    with TestClient(create_app(settings)) as client:
        response = client.get("/readyz")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unavailable"
    assert body["target"] == "unreachable"
    assert "cannot reach the target" in body["reason"]
    assert "127.0.0.1:1" in body["reason"] and "s3cret" not in response.text


def test_readyz_is_503_when_the_target_database_is_missing(
    make_settings: Callable[..., Settings],
) -> None:
    with TestClient(create_app(make_settings())) as client:
        response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["target"] == "missing"
    assert "init-db" in response.json()["reason"]


def test_readyz_is_503_when_the_store_schema_is_not_current(app_client: TestClient) -> None:
    runtime = app_client.app.state.runtime
    with runtime.store_engine.begin() as connection:
        connection.execute(text("UPDATE admin_alembic_version SET version_num = 'older'"))
    response = app_client.get("/readyz")
    assert response.status_code == 503
    body = response.json()
    assert body["store"] == "behind"
    assert "older" in body["reason"] and "schema-admin store upgrade" in body["reason"]


def test_ops_endpoints_need_no_sign_in(app_client: TestClient) -> None:
    for path in ("/healthz", "/readyz", "/metrics"):
        response = app_client.get(path, follow_redirects=False)
        assert response.status_code == 200, path


def test_metrics_parse_and_move_after_a_job(app_client: TestClient) -> None:
    before = scrape(app_client)
    assert value(before, "schema_admin_store_up") == 1
    assert value(before, "schema_admin_target_up") == 1
    assert value(before, "schema_admin_jobs", kind="upgrade", status="succeeded") == 0
    assert value(before, "schema_admin_job_duration_seconds_count", kind="upgrade") == 0
    pending = value(before, "schema_admin_pending_revisions")
    assert pending > 0
    assert value(before, "schema_admin_target_state", state="empty") == 1
    assert value(before, "schema_admin_target_at_head") == 0
    assert value(before, "schema_admin_info", environment="development") == 1

    runtime = app_client.app.state.runtime
    job = run_in_foreground(
        runtime, JobRequest(JobKind.UPGRADE, "heads"), OPERATOR, echo=lambda _: None
    )
    assert job.status == "succeeded"

    after = scrape(app_client)
    assert value(after, "schema_admin_jobs", kind="upgrade", status="succeeded") == 1
    assert value(after, "schema_admin_job_duration_seconds_count", kind="upgrade") == 1
    assert value(after, "schema_admin_job_duration_seconds_bucket", kind="upgrade", le="+Inf") == 1
    assert value(after, "schema_admin_job_duration_seconds_sum", kind="upgrade") > 0
    assert value(after, "schema_admin_pending_revisions") == 0
    assert value(after, "schema_admin_target_state", state="up-to-date") == 1
    assert value(after, "schema_admin_target_at_head") == 1


def test_metrics_backup_age_sign_in_failures_streams_and_degraded(
    app_client: TestClient, ready_settings: Settings
) -> None:
    first = scrape(app_client)
    assert value(first, "schema_admin_last_verified_backup_age_seconds") == float("inf")
    assert value(first, "schema_admin_login_failures_total") == 0
    assert value(first, "schema_admin_sse_open_streams") == 0
    assert value(first, "schema_admin_degraded") == 0

    runtime = app_client.app.state.runtime
    with runtime.transaction() as session:
        session.add(
            Backup(
                target_key=migrations.target_key(ready_settings.database_url),
                target_display="demo",
                dialect="sqlite",
                database_name="target",
                format="sqlite",
                reason="manual",
                status="verified",
                created_by="olga",
                created_at=utcnow() - timedelta(minutes=3),
                verified_at=utcnow() - timedelta(minutes=2),
            )
        )
    assert login(app_client, "nobody", "wrong-password-123").status_code == 401
    app_client.app.state.hub = SimpleNamespace(open_streams=3)
    entrypoint._write_degraded(
        ready_settings, entrypoint.Degraded("the start-up migration (job 9) failed", 9, "now")
    )

    second = scrape(app_client)
    assert 110 <= value(second, "schema_admin_last_verified_backup_age_seconds") <= 600
    assert value(second, "schema_admin_login_failures_total") == 1
    assert value(second, "schema_admin_sse_open_streams") == 3
    assert value(second, "schema_admin_degraded") == 1
    degraded = app_client.get("/readyz").json()["degraded"]
    assert degraded == {
        "error": "the start-up migration (job 9) failed",
        "job_id": 9,
        "since": "now",
    }


def test_each_app_has_its_own_registry(
    make_settings: Callable[..., Settings], tmp_path: Any
) -> None:
    one = make_settings()
    other = make_settings(admin_database_url=f"sqlite:///{tmp_path / 'other-store.sqlite3'}")
    migrations.create_database(one.database_url)
    with TestClient(create_app(one)) as a, TestClient(create_app(other)) as b:
        run_in_foreground(
            a.app.state.runtime, JobRequest(JobKind.STAMP, "base"), OPERATOR, echo=lambda _: None
        )
        assert value(scrape(a), "schema_admin_jobs", kind="stamp", status="succeeded") == 1
        assert value(scrape(b), "schema_admin_jobs", kind="stamp", status="succeeded") == 0
        assert a.app.state.metrics_registry is not b.app.state.metrics_registry
    migrations.dispose_engines()


def test_metrics_say_when_the_store_does_not_answer(app_client: TestClient) -> None:
    runtime = app_client.app.state.runtime
    with runtime.store_engine.begin() as connection:
        connection.execute(text("ALTER TABLE jobs RENAME TO jobs_gone"))
    samples = scrape(app_client)
    assert value(samples, "schema_admin_store_up") == 0
    assert "schema_admin_jobs" not in samples
    assert value(samples, "schema_admin_target_up") == 1


# Logs.


@pytest.fixture
def log_stream(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[Settings], io.StringIO]]:
    """Configure the application log into a buffer; the previous logging is restored."""
    root = logging.getLogger()
    saved = root.handlers[:], root.level

    def configure(settings: Settings) -> io.StringIO:
        buffer = io.StringIO()
        monkeypatch.setattr("sys.stderr", buffer)
        logs.configure(settings)
        return buffer

    yield configure
    root.handlers[:], level = saved
    root.setLevel(level)


def _job_lines() -> list[Published]:
    return [
        Published(1, "step", "stdout", "[1/1] Running upgrade  -> aaa111"),
        Published(2, "warning", "stdout", "careful"),
    ]


def test_json_logs_carry_the_job_id(
    make_settings: Callable[..., Settings], log_stream: Callable[[Settings], io.StringIO]
) -> None:
    buffer = log_stream(make_settings(log_format="json"))
    forwarded: list[tuple[int, int, str | None]] = []
    tee = logs.job_lines_to_log(
        lambda job, lines, status: forwarded.append((job, len(lines), status))
    )
    tee(7, _job_lines(), None)
    tee(7, [], "succeeded")
    logging.getLogger("admin.entrypoint").info("plain message")
    records = [json.loads(line) for line in buffer.getvalue().splitlines()]
    assert [r["message"] for r in records] == [
        "[1/1] Running upgrade  -> aaa111",
        "careful",
        "job 7 succeeded",
        "plain message",
    ]
    assert [r.get("job_id") for r in records] == [7, 7, 7, None]
    assert records[1]["level"] == "warning"
    assert forwarded == [(7, 2, None), (7, 0, "succeeded")]


def test_plain_logs_name_the_job(
    make_settings: Callable[..., Settings], log_stream: Callable[[Settings], io.StringIO]
) -> None:
    buffer = log_stream(make_settings())
    logs.job_lines_to_log()(12, _job_lines(), None)
    logging.getLogger("alembic.runtime.migration").info("Context impl SQLiteImpl.")
    lines = buffer.getvalue().splitlines()
    assert len(lines) == 2
    assert "admin.jobs.log: [job 12] [1/1] Running upgrade  -> aaa111" in lines[0]
    assert " WARNING " in lines[1] and "[job 12] careful" in lines[1]
