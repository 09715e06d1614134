"""Rehearsals over HTTP: started from the preview, the report page, the JSON API, roles and
bad ids; REQUIRE_REHEARSAL refuses an Apply without a matching rehearsal, accepts it with
one (recorded on the job and its audit event), and a changed revision file invalidates it.

The app runs its real lifespan and runner; rehearsal jobs run in worker processes against
a real PostgreSQL target.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from helpers import create_user, login, page_soup
from projects import Rev
from rehearsal_support import state, upgrade
from sqlalchemy import select

from admin import migrations
from admin.config import Settings
from admin.runtime import Runtime
from admin.store.models import AuditEvent, Job, Role
from admin.web.app import create_app
from tests.conftest import TEST_SECRET_KEY

PROJECT = [
    Rev(
        "aaa111",
        None,
        "create a",
        "op.create_table('a', sa.Column('id', sa.Integer, primary_key=True))",
        "op.drop_table('a')",
    ),
    Rev(
        "bbb222",
        "aaa111",
        "create b",
        "op.create_table('b', sa.Column('id', sa.Integer, primary_key=True))",
        "op.drop_table('b')",
    ),
]
PREVIEW = "/preview?direction=upgrade&target=head"

pytestmark = pytest.mark.postgres


class Panel:
    def __init__(self, client: TestClient, ini: Path) -> None:
        self.client = client
        self.ini = ini
        self.runtime: Runtime = client.app.state.runtime  # type: ignore[attr-defined]
        for role in Role:
            create_user(self.runtime, f"{role.value}-user", role)

    def sign_in(self, role: str) -> None:
        self.client.cookies.clear()
        assert login(self.client, f"{role}-user").status_code == 303

    def preview(self) -> Any:
        response = self.client.get(PREVIEW)
        assert response.status_code == 200, response.text
        return page_soup(response)

    def post(self, path: str, data: dict[str, str]) -> Any:
        token = self.preview().select_one("input[name=csrf_token]")
        assert token is not None
        return self.client.post(
            path, data={"csrf_token": str(token["value"]), **data}, follow_redirects=False
        )

    def job_from(self, response: Any) -> Job:
        assert response.status_code == 303, response.text
        match = re.fullmatch(r"/jobs/(\d+)", response.headers["location"])
        assert match, response.headers["location"]
        job_id = int(match.group(1))
        assert self.client.app.state.runner.wait(job_id, timeout=120)  # type: ignore[attr-defined]
        with self.runtime.reads() as session:
            job = session.get(Job, job_id)
        assert job is not None
        return job

    def rehearse(self) -> tuple[Job, int]:
        form = self.preview().select_one("#rehearse-form")
        assert form is not None
        data = {
            field["name"]: field["value"]
            for field in form.select("input[type=hidden]")
            if field["name"] != "csrf_token"
        }
        job = self.job_from(self.post("/rehearsals", data))
        assert job.kind == "rehearsal" and job.status == "succeeded", job.error
        found = self.client.get(f"/rehearsals/job/{job.id}", follow_redirects=False)
        assert found.status_code == 303
        match = re.fullmatch(r"/rehearsals/(\d+)", found.headers["location"])
        assert match, found.headers["location"]
        return job, int(match.group(1))

    def apply(self) -> Any:
        form = self.preview().select_one("#apply-form")
        assert form is not None
        data = {
            field["name"]: field["value"]
            for field in form.select("input[type=hidden]")
            if field["name"] != "csrf_token"
        }
        return self.post("/jobs", data)

    def queued(self, job_id: int) -> AuditEvent:
        with self.runtime.reads() as session:
            event = session.scalar(
                select(AuditEvent).where(
                    AuditEvent.action == "job-queued", AuditEvent.job_id == job_id
                )
            )
        assert event is not None
        return event


@pytest.fixture
def make_panel(
    make_settings: Callable[..., Settings], alembic_project: Callable[..., Path], pg_databases: Any
) -> Iterator[Callable[..., Panel]]:
    clients: list[TestClient] = []

    def make(**values: Any) -> Panel:
        ini = alembic_project(PROJECT, name=f"p{len(clients)}")
        settings = make_settings(
            database_url=pg_databases.create("rw"), alembic_config=ini, job_heartbeat=0.2, **values
        )
        client = TestClient(create_app(settings))
        client.__enter__()
        clients.append(client)
        panel = Panel(client, ini)
        upgrade(panel.runtime, "aaa111")
        return panel

    yield make
    for client in clients:
        client.__exit__(None, None, None)
    migrations.dispose_engines()


def test_rehearse_from_the_preview_read_the_report_and_its_json(
    make_panel: Callable[..., Panel],
) -> None:
    panel = make_panel()
    panel.sign_in("viewer")
    assert panel.client.get("/rehearsals/1").status_code == 404
    assert panel.client.get("/rehearsals/x1").status_code == 404
    assert panel.client.get("/api/v1/rehearsals/99").status_code == 404
    panel.sign_in("reviewer")
    page = panel.preview()
    assert page.select_one("#rehearsal-none") is not None
    assert page.select_one("#rehearse-form") is None  # reviewers read, operators rehearse
    forbidden = panel.post("/rehearsals", {"target": "head"})
    assert forbidden.status_code == 403

    panel.sign_in("operator")
    before = state(panel.runtime.settings.database_url, panel.ini)
    job, rehearsal_id = panel.rehearse()
    assert state(panel.runtime.settings.database_url, panel.ini) == before
    job_page = page_soup(panel.client.get(f"/jobs/{job.id}"))
    assert job_page.select_one("#job-rehearsal-report a") is not None

    report = page_soup(panel.client.get(f"/rehearsals/{rehearsal_id}"))
    assert report.select_one("#rehearsal-status").get_text(strip=True) == "succeeded"
    assert report.select_one("#rehearsal-summary")["data-round-trip"] == "identical"
    assert report.select_one("#rehearsal-plan-fingerprint").get_text() == job.plan_fingerprint
    rows = report.select("#rehearsal-step-table tbody tr")
    assert [row["data-revision"] for row in rows] == ["bbb222"]

    data = panel.client.get(f"/api/v1/rehearsals/{rehearsal_id}").json()
    assert data["status"] == "succeeded" and data["job_id"] == job.id
    assert data["report"]["round_trip"]["result"] == "identical"
    assert data["sql_fingerprint"] and data["backup_id"]
    assert panel.client.get(f"/api/v1/jobs/{job.id}/rehearsal").json()["id"] == rehearsal_id
    assert panel.client.get(f"/api/v1/jobs/{job.id}").json()["kind"] == "rehearsal"

    shown = panel.preview().select_one("#rehearsal-newest")
    assert shown is not None and shown["data-rehearsal-id"] == str(rehearsal_id)
    assert shown["data-clears"] == "yes"


def test_require_rehearsal_refuses_then_accepts_and_a_changed_file_invalidates(
    make_panel: Callable[..., Panel],
) -> None:
    panel = make_panel(require_rehearsal=True)
    panel.sign_in("operator")
    refused = panel.apply()
    assert refused.status_code == 409
    assert "REQUIRE_REHEARSAL" in refused.text
    assert "Not rehearsed" in panel.preview().select_one("#apply-rehearsal").get_text()

    _, rehearsal_id = panel.rehearse()
    revision_file = next((panel.ini.parent / "migrations" / "versions").glob("bbb222*.py"))
    original = revision_file.read_text()
    revision_file.write_text(original + "\n# edited after the rehearsal\n")
    changed = panel.apply()
    assert changed.status_code == 409 and "REQUIRE_REHEARSAL" in changed.text
    revision_file.write_text(original)

    job = panel.job_from(panel.apply())
    assert job.kind == "upgrade" and job.status == "succeeded", job.error
    assert (job.options or {})["rehearsal_id"] == rehearsal_id
    assert panel.queued(job.id).details["rehearsal_id"] == rehearsal_id
    job_page = page_soup(panel.client.get(f"/jobs/{job.id}"))
    assert job_page.select_one("#job-cleared-by a")["href"] == f"/rehearsals/{rehearsal_id}"


def test_require_rehearsal_is_on_by_default_in_production_only(
    make_settings: Callable[..., Settings],
) -> None:
    assert make_settings().rehearsal_required is False
    production = {"environment": "production", "secret_key": TEST_SECRET_KEY}
    assert make_settings(**production).rehearsal_required is True
    assert make_settings(**production, require_rehearsal=False).rehearsal_required is False
    assert make_settings(require_rehearsal="true").rehearsal_required is True
