"""Control characters in requests (L1) and the audit of refused requests (L2), on a
PostgreSQL store (which cannot store a NUL: before, each of these was a 500).

- Every route the review listed answers a NUL with a 400 and one line; the routes that are
  audited record the refusal (access-denied, status 400).
- A 401 on a mutating route, or with a bad or revoked token, is audited; an anonymous
  flood from one address adds one event, and the rest are counted in it (``repeated``).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from helpers import create_user, csrf_token, login
from sqlalchemy import select

from admin import audit
from admin.auth import tokens
from admin.config import Settings
from admin.runtime import Runtime
from admin.store.models import AuditEvent, Role, Source
from admin.web.app import create_app
from admin.web.refusals import RefusalLog

pytestmark = pytest.mark.postgres


@pytest.fixture(scope="module")
def pg_app(
    pg_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[TestClient, dict[str, str]]]:
    from helpers import TEST_SECRET_KEY
    from projects import REPO_ROOT

    root = tmp_path_factory.mktemp("pg-input")
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None,
        admin_database_url=pg_url,
        database_url=f"sqlite:///{root / 'target.sqlite3'}",
        var_dir=root / "var",
        backup_dir=root / "backups",
        secret_key=TEST_SECRET_KEY,
        alembic_config=REPO_ROOT / "alembic.ini",
    )
    with TestClient(create_app(settings), follow_redirects=False) as client:
        runtime: Runtime = client.app.state.runtime  # type: ignore[attr-defined]
        for role in Role:
            create_user(runtime, f"pg-{role.value}", role)
        actor = audit.Actor("tests", None, Source.CLI)
        with runtime.transaction() as session:
            admin_token = tokens.create(
                session, settings, actor, name="admin api", username="pg-admin"
            ).secret
            revoked = tokens.create(session, settings, actor, name="old", username="pg-admin")
            tokens.revoke(session, actor, revoked.row.id)
        yield client, {"admin": admin_token, "revoked": revoked.secret}


def _runtime(client: TestClient) -> Runtime:
    runtime: Runtime = client.app.state.runtime  # type: ignore[attr-defined]
    return runtime


def _mark(client: TestClient) -> int:
    with _runtime(client).reads() as session:
        return session.scalar(select(AuditEvent.id).order_by(AuditEvent.id.desc()).limit(1)) or 0


def _denied_since(client: TestClient, mark: int) -> list[AuditEvent]:
    with _runtime(client).reads() as session:
        return list(
            session.scalars(
                select(AuditEvent)
                .where(AuditEvent.id > mark, AuditEvent.action == "access-denied")
                .order_by(AuditEvent.id)
            )
        )


def _one_line_400(answer: Any) -> str:
    assert answer.status_code == 400, (answer.status_code, answer.text[:500])
    if answer.headers["content-type"].startswith("application/json"):
        detail = str(answer.json()["detail"])
    else:
        from helpers import page_soup

        found = page_soup(answer).select_one(".error-message")
        assert found is not None, answer.text[:500]
        detail = found.text.strip()
    assert "\n" not in detail and "control character" in detail, detail
    return detail


def _session(client: TestClient, username: str) -> TestClient:
    fresh = TestClient(client.app, follow_redirects=False)
    assert login(fresh, username).status_code == 303
    return fresh


def test_nul_on_login_is_a_400_and_audited(pg_app: tuple[TestClient, dict[str, str]]) -> None:
    client, _ = pg_app
    mark = _mark(client)
    anonymous = TestClient(client.app, follow_redirects=False)
    answer = anonymous.post("/login", data={"username": "a\x00b", "password": "whatever-1"})
    _one_line_400(answer)
    [event] = _denied_since(client, mark)
    assert (event.details["status"], event.details["path"]) == (400, "/login")


def test_nul_in_a_job_form_and_in_api_json_is_a_400_and_audited(
    pg_app: tuple[TestClient, dict[str, str]],
) -> None:
    client, secrets_ = pg_app
    operator = _session(client, "pg-operator")
    mark = _mark(client)
    answer = operator.post(
        "/jobs",
        data={"csrf_token": csrf_token(operator), "kind": "upgrade", "target": "a\x00b"},
        headers={"Origin": "http://testserver"},
    )
    _one_line_400(answer)
    answer = operator.post(
        "/api/v1/jobs",
        json={"kind": "upgrade", "target": "a\u0000b"},
        headers={"Authorization": f"Bearer {secrets_['admin']}"},
    )
    assert "'target'" in _one_line_400(answer)
    events = _denied_since(client, mark)
    assert [(e.details["path"], e.details["status"]) for e in events] == [
        ("/jobs", 400),
        ("/api/v1/jobs", 400),
    ]
    assert [e.actor for e in events] == ["pg-operator", "pg-admin"]


@pytest.mark.parametrize(
    "url",
    [
        "/jobs?user=%00",
        "/api/v1/jobs?user=%00",
        "/audit?actor=%00",
        "/audit?revision=%00",
        "/audit/export?actor=%00",
        "/revisions/%00",
        "/api/v1/revisions?q=a%00",
    ],
)
def test_nul_in_a_query_or_path_is_a_400(
    pg_app: tuple[TestClient, dict[str, str]], url: str
) -> None:
    client, _ = pg_app
    admin = _session(client, "pg-admin")
    mark = _mark(client)
    _one_line_400(admin.get(url))
    events = _denied_since(client, mark)
    # Only the export (a route that hands out data) is audited among these.
    assert len(events) == (1 if url.startswith("/audit/export") else 0)


def test_control_characters_in_headers_are_a_400(
    pg_app: tuple[TestClient, dict[str, str]],
) -> None:
    client, secrets_ = pg_app
    answer = client.get(
        "/api/v1/me",
        headers={"Authorization": f"Bearer {secrets_['admin']}", "X-Note": "a\x1b[31mb"},
    )
    _one_line_400(answer)


def test_401_on_mutating_routes_and_bad_tokens_is_audited(
    pg_app: tuple[TestClient, dict[str, str]],
) -> None:
    client, secrets_ = pg_app
    mark = _mark(client)
    anonymous = TestClient(client.app, client=("192.0.2.41", 1234), follow_redirects=False)
    assert anonymous.post("/jobs", data={"kind": "upgrade", "target": "head"}).status_code in (
        303,
        401,
    )
    assert anonymous.post("/users", data={"username": "mallory"}).status_code in (303, 401)
    assert (
        anonymous.post("/api/v1/jobs", json={"kind": "upgrade", "target": "head"}).status_code
        == 401
    )
    bogus = {"Authorization": "Bearer sat_not-a-real-token"}
    assert anonymous.get("/api/v1/me", headers=bogus).status_code == 401
    revoked = {"Authorization": f"Bearer {secrets_['revoked']}"}
    assert anonymous.get("/api/v1/status", headers=revoked).status_code == 401
    # A plain page read without a session is not a refusal worth a record.
    assert anonymous.get("/jobs").status_code in (303, 401)
    events = _denied_since(client, mark)
    assert sorted((e.details["path"], e.details["status"]) for e in events) == [
        ("/api/v1/jobs", 401),
        ("/api/v1/me", 401),
        ("/api/v1/status", 401),
        ("/jobs", 401),
        ("/users", 401),
    ]
    assert {e.actor for e in events} == {"anonymous"}
    assert {e.client_addr for e in events} == {"192.0.2.41"}


def test_an_anonymous_flood_adds_one_event_with_the_rest_counted(
    pg_url: str, tmp_path: Any
) -> None:
    from helpers import TEST_SECRET_KEY
    from projects import REPO_ROOT

    settings = Settings(  # type: ignore[call-arg]
        _env_file=None,
        admin_database_url=pg_url,
        database_url=f"sqlite:///{tmp_path / 'target.sqlite3'}",
        var_dir=tmp_path / "var",
        secret_key=TEST_SECRET_KEY,
        alembic_config=REPO_ROOT / "alembic.ini",
    )
    with TestClient(create_app(settings), client=("198.51.100.77", 999)) as client:
        mark = _mark(client)
        for _ in range(50):
            answer = client.post("/api/v1/jobs", json={"kind": "upgrade", "target": "head"})
            assert answer.status_code == 401
        flood = [e for e in _denied_since(client, mark) if e.client_addr == "198.51.100.77"]
        assert len(flood) == 1 and "repeated" not in flood[0].details
    # At shutdown what was held back is recorded, in one event that counts them.
    with Runtime.open(settings).reads() as session:
        rows = list(
            session.scalars(
                select(AuditEvent).where(
                    AuditEvent.id > mark, AuditEvent.client_addr == "198.51.100.77"
                )
            )
        )
    assert len(rows) == 2
    assert sum(1 + row.details.get("repeated", 0) for row in rows) == 50


def test_the_refusal_log_records_again_after_its_window_and_bounds_its_keys() -> None:
    log = RefusalLog(window=60, max_keys=2)
    actor = audit.Actor("anonymous", None, Source.WEB, "192.0.2.1")
    event = audit.AccessDenied(method="POST", path="/jobs", status=401, reason="sign in")
    key = ("192.0.2.1", "POST", "/jobs", 401)
    assert log.admit(key, actor, event, now=0) == 0
    assert [log.admit(key, actor, event, now=t) for t in range(1, 11)] == [None] * 10
    # After the window: recorded, with the ten held back.
    assert log.admit(key, actor, event, now=61) == 10
    # Beyond max_keys every new address shares one bucket.
    assert log.admit(("192.0.2.2", "POST", "/jobs", 401), actor, event, now=61) == 0
    assert log.admit(("192.0.2.3", "POST", "/jobs", 401), actor, event, now=61) == 0
    assert log.admit(("192.0.2.4", "POST", "/jobs", 401), actor, event, now=61) is None
    drained = log.drain()
    assert [e.repeated for _, e in drained] == [0]
