"""The reading JSON API: /api/v1/status, /revisions, /revisions/{id}, /sql, and its schema."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from reading_support import (
    CRM_HEAD,
    CRM_INI,
    CRM_ORDER,
    IRREVERSIBLE,
    Apps,
    Panel,
    Rev,
    audit_events,
    make_project,
    stamp,
)

from admin import audit, migrations
from admin.auth import tokens
from admin.migrations import Direction
from admin.store.models import Source

MERGE = "b5f2c8d91e03"


@pytest.fixture(scope="module")
def panel(tmp_path_factory: pytest.TempPathFactory) -> Panel:
    return Panel(tmp_path_factory.mktemp("api"))


@pytest.fixture(scope="module")
def crm(panel: Panel) -> Iterator[Apps]:
    url = f"sqlite:///{panel.root / 'crm.sqlite3'}"
    stamp(url, (MERGE,))
    with panel.open(database_url=url) as apps:
        yield apps


def _token(apps: Apps, username: str) -> str:
    with apps.runtime.transaction() as session:
        created = tokens.create(
            session,
            apps.runtime.settings,
            audit.Actor("tests", None, Source.CLI),
            name=f"api test {username}",
            username=username,
        )
    return created.secret


def test_status(crm: Apps) -> None:
    response = crm["viewer"].get("/api/v1/status")
    assert response.status_code == 200
    body = response.json()
    url = crm.runtime.settings.database_url
    status = migrations.read_status(migrations.open_project(CRM_INI), url)
    assert body["state"] == "behind" == status.state.value
    assert body["message"] == status.message
    assert body["current"] == [MERGE] and body["heads"] == [CRM_HEAD]
    assert [r["id"] for r in body["pending"]] == [r.id for r in status.pending]
    assert body["pending"][0] == {
        "id": IRREVERSIBLE,
        "message": "Drop clients passport number",
        "down_revisions": [MERGE],
        "branch_labels": [],
        "create_date": body["pending"][0]["create_date"],
        "is_head": False,
        "is_base": False,
        "is_branch_point": False,
        "is_merge_point": False,
    }
    assert body["exit_code"] == 3 and body["environment"] == "development"
    assert body["dialect"] == "sqlite" and body["target"].startswith("sqlite:///")
    assert body["unknown"] == []


def test_status_of_an_unreachable_target_is_a_state(panel: Panel) -> None:
    with panel.open(database_url="postgresql://u:hunter2@127.0.0.1:1/db") as apps:
        response = apps["viewer"].get("/api/v1/status")
    assert response.status_code == 200
    body = response.json()
    assert body["state"] == "unreachable" and body["exit_code"] == 1
    assert "hunter2" not in response.text and body["current"] == []


def test_revisions_paginated_and_filtered(crm: Apps) -> None:
    client = crm["viewer"]
    body = client.get("/api/v1/revisions", params={"per_page": 3}).json()
    graph = migrations.open_project(CRM_INI).graph()
    assert [item["id"] for item in body["items"]] == [r.id for r in graph.revisions[:3]]
    assert (body["page"], body["pages"], body["per_page"]) == (1, 3, 3)
    assert (body["total"], body["matching"]) == (8, 8)
    assert body["current"] == [MERGE] and body["heads"] == [CRM_HEAD]
    last = client.get("/api/v1/revisions", params={"per_page": 3, "page": 3}).json()
    assert [item["id"] for item in last["items"]] == [r.id for r in graph.revisions[6:]]
    assert last["items"][-1]["is_base"] and last["items"][-1]["state"] == "applied"
    states = {i["id"]: (i["state"], i["is_current"]) for i in body["items"]}
    assert states[CRM_HEAD] == ("pending", False)
    merge = client.get("/api/v1/revisions", params={"q": "merge"}).json()
    assert [i["id"] for i in merge["items"]] == [MERGE] and merge["matching"] == 1
    assert merge["items"][0]["is_current"] and merge["items"][0]["is_merge_point"]
    assert merge["query"] == "merge"


def test_revisions_errors_are_json(crm: Apps) -> None:
    client = crm["viewer"]
    beyond = client.get("/api/v1/revisions", params={"page": 9})
    assert beyond.status_code == 404
    assert beyond.json()["status"] == 404 and "page 9" in beyond.json()["detail"]
    for params in ({"page": 0}, {"per_page": 501}, {"q": "x" * 101}):
        bad = client.get("/api/v1/revisions", params=params)
        assert bad.status_code == 400 and bad.json()["title"] == "Invalid input", params


def test_one_revision(crm: Apps) -> None:
    response = crm["viewer"].get("/api/v1/revisions/3c9e")
    assert response.status_code == 200
    body = response.json()
    rev = migrations.open_project(CRM_INI).graph().get("3c9e1f7a2b4d")
    assert body["id"] == rev.id and body["sha256"] == rev.sha256
    assert body["down_revisions"] == ["20240101000000"] and body["children"] == [MERGE]
    assert body["path"] == f"alembic/versions/{rev.path.name}"
    assert body["source"] == rev.path.read_text()
    assert body["state"] == "applied" and body["is_current"] is False
    assert body["dialect"] == "sqlite"
    assert "CREATE TABLE property_photos" in body["upgrade"]["sql"]
    assert body["upgrade"]["start"] == ["20240101000000"]
    assert body["downgrade"]["destination"] == "20240101000000"
    assert body["downgrade"]["error"] is None
    irreversible = crm["viewer"].get(f"/api/v1/revisions/{IRREVERSIBLE}").json()
    assert irreversible["downgrade"]["sql"] is None
    assert "cannot be downgraded" in irreversible["downgrade"]["error"]
    assert "batch mode" in irreversible["upgrade"]["error"]


def test_one_revision_errors(crm: Apps, panel: Panel, tmp_path_factory: Any) -> None:
    unknown = crm["viewer"].get("/api/v1/revisions/ffffffff")
    assert unknown.status_code == 404 and unknown.json()["title"] == "Unknown revision"
    malformed = crm["viewer"].get("/api/v1/revisions/a-b")
    assert malformed.status_code == 400 and "not a revision id" in malformed.json()["detail"]
    ini = make_project(
        tmp_path_factory.mktemp("ambiguous"),
        [Rev("abcd11111111", None), Rev("abcd22222222", "abcd11111111")],
    )
    with panel.open(alembic_config=ini) as apps:
        ambiguous = apps["viewer"].get("/api/v1/revisions/abcd")
    assert ambiguous.status_code == 400 and "ambiguous" in ambiguous.json()["detail"]


def test_sql_for_reviewers_audited_as_a_preview(crm: Apps) -> None:
    denied = crm["viewer"].get("/api/v1/sql", params={"target": "head"})
    assert denied.status_code == 403 and denied.json()["title"] == "Not allowed for your role"
    params = {"direction": "upgrade", "target": "5d0c", "from": MERGE}
    response = crm["reviewer"].get("/api/v1/sql", params=params)
    assert response.status_code == 200
    body = response.json()
    project = migrations.open_project(CRM_INI)
    plan = migrations.make_plan(project, Direction.UPGRADE, "5d0c7be2a918", (MERGE,))
    script = migrations.render(project, plan, crm.runtime.settings.database_url, "sqlite")
    assert body["target"] == "5d0c" and body["from_revisions"] == [MERGE]
    assert body["from_database"] is False and body["to_revisions"] == ["5d0c7be2a918"]
    assert [s["revision"] for s in body["steps"]] == plan.revision_ids
    assert body["plan_fingerprint"] == plan.fingerprint
    assert body["sql"] == script.text and body["sql_fingerprint"] == script.fingerprint
    # On SQLite the passport drop needs a live connection (batch mode): said per step.
    assert body["renderable"] is False
    assert body["steps"][0]["sql"] is None and "batch mode" in body["steps"][0]["error"]
    assert "ALTER TABLE deals ADD COLUMN commission_amount" in body["steps"][1]["sql"]
    [event] = audit_events(crm.runtime, "sql-previewed")[-1:]
    assert event.actor == "reviewer-user" and event.details["revisions"] == plan.revision_ids


def test_sql_errors_are_json_4xx(crm: Apps) -> None:
    client = crm["reviewer"]
    cases = [
        ({"target": "ffffffffffff"}, 404),
        ({"target": "a b"}, 400),
        ({"target": "head", "direction": "sideways"}, 400),
        ({"target": CRM_ORDER[0]}, 400),
        ({}, 400),
    ]
    for params, status in cases:
        response = client.get("/api/v1/sql", params=params)
        assert response.status_code == status, params
        body = response.json()
        assert body["status"] == status and body["detail"], params


def test_bearer_token_and_signed_out(crm: Apps) -> None:
    secret = _token(crm, "reviewer-user")
    with TestClient(crm.app) as program:
        headers = {"Authorization": f"Bearer {secret}"}
        assert program.get("/api/v1/status", headers=headers).status_code == 200
        sql = program.get("/api/v1/sql", params={"target": "head"}, headers=headers)
        assert sql.status_code == 200 and sql.json()["steps"]
        [event] = audit_events(crm.runtime, "sql-previewed")[-1:]
        assert event.source == "api" and event.actor == "reviewer-user"
        signed_out = program.get("/api/v1/revisions")
        assert signed_out.status_code == 401 and signed_out.json()["status"] == 401


def test_openapi_documents_the_endpoints(crm: Apps) -> None:
    schema = crm.anonymous.get("/api/v1/openapi.json").json()
    paths = schema["paths"]
    expected = {
        "/api/v1/status": "StatusOut",
        "/api/v1/revisions": "HistoryOut",
        "/api/v1/revisions/{revision_id}": "RevisionOut",
        "/api/v1/sql": "SqlOut",
    }
    for path, model in expected.items():
        answer = paths[path]["get"]["responses"]["200"]["content"]["application/json"]
        assert answer["schema"]["$ref"] == f"#/components/schemas/{model}"
    parameters = {p["name"] for p in paths["/api/v1/sql"]["get"]["parameters"]}
    assert parameters == {"target", "direction", "from"}
    states = schema["components"]["schemas"]["StatusOut"]["properties"]["state"]["enum"]
    assert set(states) == {s.value for s in migrations.State}
    # Pages are not part of the API.
    assert "/revisions" not in paths and "/preview" not in paths
