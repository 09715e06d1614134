"""API tokens page and API authentication (/api/v1)."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from helpers import csrf_token, login, page_soup
from sqlalchemy import select

from admin.store.models import ApiToken, AuditEvent


def _create(admin: TestClient, name: str, username: str = "operator-user", days: str = "") -> str:
    response = admin.post(
        "/tokens",
        data={
            "csrf_token": csrf_token(admin),
            "name": name,
            "username": username,
            "expires_in_days": days,
        },
    )
    assert response.status_code == 200, response.text
    secret = page_soup(response).select_one("#secret")
    assert secret is not None
    return secret.text


@pytest.fixture
def admin(client: TestClient, role_users: dict[str, str]) -> TestClient:
    assert login(client, role_users["admin"]).status_code == 303
    return client


def test_token_is_shown_once_and_stored_hashed(admin: TestClient) -> None:
    secret = _create(admin, "deploy pipeline", days="30")
    with admin.app.state.runtime.sessions() as session:  # type: ignore[attr-defined]
        row = session.scalars(select(ApiToken)).one()
        assert secret not in (row.token_hash, row.prefix) and secret.startswith(row.prefix)
        assert row.expires_at is not None and row.created_by == "admin-user"
        [event] = session.scalars(
            select(AuditEvent).where(AuditEvent.action == "api-token-created")
        ).all()
        assert event.details["name"] == "deploy pipeline" and secret not in str(event.details)
    listing = page_soup(admin.get("/tokens"))
    row_html = listing.select_one(f"tr[data-token-id='{row.id}']")
    assert row_html is not None and secret not in str(listing)
    assert row_html.select_one(".token-state").text == "active"  # type: ignore[union-attr]


def test_bearer_token_authenticates_api_and_revocation_refuses_it(admin: TestClient) -> None:
    secret = _create(admin, "ci")
    with TestClient(admin.app) as program:  # type: ignore[arg-type]
        headers = {"Authorization": f"Bearer {secret}"}
        me = program.get("/api/v1/me", headers=headers)
        assert me.status_code == 200
        assert me.json() == {
            "username": "operator-user",
            "role": "operator",
            "authenticated_by": "token",
            "token_id": me.json()["token_id"],
        }
        # A bearer token opens the API only, not the pages.
        assert program.get("/", headers=headers, follow_redirects=False).status_code == 303

        token_id = me.json()["token_id"]
        revoked = admin.post(f"/tokens/{token_id}/revoke", data={"csrf_token": csrf_token(admin)})
        assert revoked.status_code == 200
        state = page_soup(revoked).select_one(f"tr[data-token-id='{token_id}'] .token-state")
        assert state is not None and state.text == "revoked"

        refused = program.get("/api/v1/me", headers=headers)
        assert refused.status_code == 401
        assert refused.headers["www-authenticate"].startswith("Bearer")
        assert refused.json()["status"] == 401 and "revoked" in refused.json()["detail"]
    with admin.app.state.runtime.sessions() as session:  # type: ignore[attr-defined]
        actions = session.scalars(
            select(AuditEvent.action).where(AuditEvent.action.like("api-token-%"))
        ).all()
        assert actions == ["api-token-created", "api-token-revoked"]


def test_api_with_session_cookie_and_without_credentials(admin: TestClient) -> None:
    me = admin.get("/api/v1/me")
    assert me.status_code == 200 and me.json()["authenticated_by"] == "session"
    with TestClient(admin.app) as anonymous:  # type: ignore[arg-type]
        response = anonymous.get("/api/v1/me")
        assert response.status_code == 401 and response.headers["content-type"].startswith(
            "application/json"
        )
        for header in ("Bearer sat_nope", "Basic YWRtaW46YWRtaW4=", "Bearer"):
            bad = anonymous.get("/api/v1/me", headers={"Authorization": header})
            assert bad.status_code == 401, header


def test_bad_token_form_says_why(admin: TestClient) -> None:
    token = csrf_token(admin)
    bad = admin.post("/tokens", data={"csrf_token": token, "name": "", "username": "admin-user"})
    assert bad.status_code == 400
    assert "token name" in page_soup(bad).select_one("#tokens-error").text  # type: ignore[union-attr]
    days = admin.post("/tokens", data={"csrf_token": token, "name": "x", "expires_in_days": "soon"})
    assert days.status_code == 400


def test_openapi_schema_lists_the_api_only(client: TestClient) -> None:
    schema = client.get("/api/v1/openapi.json").json()
    assert "/api/v1/me" in schema["paths"]
    assert all(path.startswith("/api/v1/") for path in schema["paths"])
