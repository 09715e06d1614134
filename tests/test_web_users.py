"""The user page (admins only) and the layout around it."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from helpers import PASSWORD, csrf_token, login, page_soup
from sqlalchemy import select

from admin.auth import users
from admin.config import Settings
from admin.store.models import AuditEvent
from admin.web.app import create_app


def _audit(client: Any, action: str) -> list[AuditEvent]:
    with client.app.state.runtime.sessions() as session:
        return list(session.scalars(select(AuditEvent).where(AuditEvent.action == action)))


@pytest.fixture
def admin(client: TestClient, role_users: dict[str, str]) -> TestClient:
    assert login(client, role_users["admin"]).status_code == 303
    return client


@pytest.mark.parametrize("role", ["viewer", "reviewer", "operator"])
def test_only_admins_reach_users_and_tokens(
    client: TestClient, role_users: dict[str, str], role: str
) -> None:
    login(client, role_users[role])
    for path in ("/users", "/tokens"):
        response = client.get(path)
        assert response.status_code == 403
        doc = page_soup(response)
        assert doc.select_one(".error-title").text == "Not allowed for your role"  # type: ignore[union-attr]
        assert "admin role" in doc.select_one(".error-message").text  # type: ignore[union-attr]
    token = csrf_token(client)
    post = client.post("/users", data={"csrf_token": token, "username": "x", "role": "admin"})
    assert post.status_code == 403
    denied = _audit(client, "access-denied")
    assert [(e.actor, e.details["path"]) for e in denied] == [
        (role_users[role], "/users"),
        (role_users[role], "/tokens"),
        (role_users[role], "/users"),
    ]
    assert all(e.actor_role == role and e.source == "web" for e in denied)
    # The navigation does not offer what the role cannot open.
    links = [a["href"] for a in page_soup(client.get("/")).select("nav.main-nav a")]
    assert "/users" not in links and "/tokens" not in links and "/" in links


def test_navigation_and_header(admin: TestClient, settings: Settings) -> None:
    doc = page_soup(admin.get("/"))
    links = {a.text: a["href"] for a in doc.select("nav.main-nav a")}
    assert links == {
        "Dashboard": "/",
        "History": "/revisions",
        "Preview": "/preview",
        "Jobs": "/jobs",
        "Backups": "/backups",
        "Audit": "/audit",
        "Users": "/users",
        "Tokens": "/tokens",
    }
    assert doc.select_one("nav.main-nav a[aria-current=page]")["href"] == "/"  # type: ignore[index]
    assert doc.select_one("header .env-badge.env-development").text == "development"  # type: ignore[union-attr]
    assert doc.select_one("header .target-url").text == settings.target_url_masked  # type: ignore[union-attr]
    menu = doc.select_one("details.account-menu")
    assert menu is not None and "admin-user" in menu.select_one("summary").text  # type: ignore[union-attr]
    sign_out = menu.select_one("form[action='/logout'][method=post]")
    assert sign_out is not None and sign_out.select_one("input[name=csrf_token]") is not None
    assert menu.select_one("a[href='/account/password']") is not None


def test_dashboard_shows_target_and_leaves_named_places(admin: TestClient) -> None:
    doc = page_soup(admin.get("/"))
    assert doc.select_one("#target .target-url") is not None
    for section in ("#migration-state", "#recent-jobs", "#last-backup"):
        assert doc.select_one(section) is not None, section


@pytest.mark.parametrize(
    ("environment", "badge"),
    [("production", "env-production"), ("staging", "env-staging")],
)
def test_environment_badge_stands_out(make_settings: Any, environment: str, badge: str) -> None:
    settings = make_settings(
        environment=environment, database_url="postgresql://crm:s3cret@db:5432/crm"
    )
    with TestClient(create_app(settings)) as client:
        doc = page_soup(client.get("/login"))
        assert doc.select_one(f"header .env-badge.{badge}").text == environment  # type: ignore[union-attr]
        assert badge in doc.body["class"]  # type: ignore[index]
        # The sign-in page is anonymous: it says nothing about the target database.
        assert doc.select_one(".target-url") is None
        assert "s3cret" not in client.get("/login").text


def test_admin_adds_a_user_who_must_change_the_password(admin: TestClient) -> None:
    page = page_soup(admin.get("/users"))
    names = [td.text.split()[0] for td in page.select("#users td.username")]
    assert "viewer-user" in names and "admin" in names
    response = admin.post(
        "/users",
        data={"csrf_token": csrf_token(admin), "username": "newbie", "role": "reviewer"},
    )
    assert response.status_code == 200
    one_time = page_soup(response).select_one("#secret").text  # type: ignore[union-attr]
    assert len(one_time) >= 16
    with admin.app.state.runtime.sessions() as session:  # type: ignore[attr-defined]
        user = users.get(session, "newbie")
        assert user.role == "reviewer" and user.must_change_password
    [event] = [e for e in _audit(admin, "user-created") if e.target == "user:newbie"]
    assert event.actor == "admin-user" and one_time not in str(event.details)
    # The new user signs in with it and is sent to change it.
    with TestClient(admin.app) as other:  # type: ignore[arg-type]
        assert login(other, "newbie", one_time).headers["location"] == "/account/password"


def test_adding_a_bad_or_existing_user_says_why(admin: TestClient) -> None:
    token = csrf_token(admin)
    bad = admin.post(
        "/users", data={"csrf_token": token, "username": "no spaces", "role": "viewer"}
    )
    assert bad.status_code == 400
    assert "user name" in page_soup(bad).select_one("#users-error").text  # type: ignore[union-attr]
    dup = admin.post("/users", data={"csrf_token": token, "username": "viewer-user"})
    assert dup.status_code == 409
    role = admin.post("/users", data={"csrf_token": token, "username": "ok", "role": "god"})
    assert role.status_code == 400 and "unknown role" in role.text


def test_change_role_disable_enable_reset(admin: TestClient) -> None:
    token = csrf_token(admin)
    response = admin.post("/users/viewer-user/role", data={"csrf_token": token, "role": "operator"})
    assert response.status_code == 200  # followed the 303 back to /users
    flash = page_soup(response).select_one("#messages .notice")
    assert flash is not None and "operator" in flash.text
    row = page_soup(response).select_one("tr[data-username=viewer-user]")
    assert row.select_one("option[selected]")["value"] == "operator"  # type: ignore[union-attr,index]

    admin.post("/users/viewer-user/disable", data={"csrf_token": token})
    row = page_soup(admin.get("/users")).select_one("tr[data-username=viewer-user] .status")
    assert row is not None and row.text.strip() == "disabled"
    admin.post("/users/viewer-user/enable", data={"csrf_token": token})

    reset = admin.post("/users/viewer-user/reset-password", data={"csrf_token": token})
    new = page_soup(reset).select_one("#secret").text  # type: ignore[union-attr]
    with TestClient(admin.app) as other:  # type: ignore[arg-type]
        assert login(other, "viewer-user", PASSWORD).status_code == 401
        assert login(other, "viewer-user", new).headers["location"] == "/account/password"
    actions = [
        e.action
        for e in _audit(admin, "role-changed")
        + _audit(admin, "user-disabled")
        + _audit(admin, "user-enabled")
        + _audit(admin, "password-reset")
    ]
    assert sorted(actions) == ["password-reset", "role-changed", "user-disabled", "user-enabled"]


def test_last_admin_cannot_be_demoted(admin: TestClient) -> None:
    token = csrf_token(admin)
    admin.post("/users/admin/disable", data={"csrf_token": token})
    response = admin.post("/users/admin-user/role", data={"csrf_token": token, "role": "viewer"})
    assert response.status_code == 409
    assert "last active admin" in page_soup(response).select_one(".error-message").text  # type: ignore[union-attr]


def test_unknown_user_is_404(admin: TestClient) -> None:
    response = admin.post("/users/ghost/disable", data={"csrf_token": csrf_token(admin)})
    assert response.status_code == 404
    assert "no user" in page_soup(response).select_one(".error-message").text  # type: ignore[union-attr]


def test_users_table_is_an_htmx_fragment(admin: TestClient) -> None:
    response = admin.get("/users", headers={"HX-Request": "true"})
    assert response.headers["vary"] == "HX-Request"
    doc = page_soup(response)
    assert doc.select_one("table#users") is not None
    assert doc.select_one("html") is None and doc.select_one("header") is None
    assert page_soup(admin.get("/users")).select_one("header") is not None


def test_every_user_changes_their_own_password(
    client: TestClient, role_users: dict[str, str]
) -> None:
    login(client, role_users["viewer"])
    token = csrf_token(client)
    wrong = client.post(
        "/account/password",
        data={
            "csrf_token": token,
            "current_password": "not-it-at-all",
            "new_password": "another-good-one-7",
            "confirm_password": "another-good-one-7",
        },
    )
    assert wrong.status_code == 400
    mismatch = client.post(
        "/account/password",
        data={
            "csrf_token": token,
            "current_password": PASSWORD,
            "new_password": "another-good-one-7",
            "confirm_password": "another-good-one-8",
        },
    )
    assert "differ" in page_soup(mismatch).select_one("#password-error").text  # type: ignore[union-attr]
    with TestClient(client.app) as elsewhere:  # type: ignore[arg-type]
        login(elsewhere, role_users["viewer"])
        ok = client.post(
            "/account/password",
            data={
                "csrf_token": token,
                "current_password": PASSWORD,
                "new_password": "another-good-one-7",
                "confirm_password": "another-good-one-7",
            },
            follow_redirects=False,
        )
        assert ok.status_code == 303
        # This browser stays signed in; the other one is signed out.
        assert client.get("/", follow_redirects=False).status_code == 200
        assert elsewhere.get("/", follow_redirects=False).status_code == 303
