"""Signing in and out over HTTP: redirects, the first admin, cookies, sessions ending."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from fastapi.testclient import TestClient
from helpers import PASSWORD, create_user, csrf_token, login, page_soup
from sqlalchemy import select, update

from admin.config import Settings
from admin.store.models import AuditEvent, Role, UserSession, utcnow
from admin.web.app import create_app


def _audit(client: Any, action: str) -> list[AuditEvent]:
    with client.app.state.runtime.sessions() as session:
        return list(session.scalars(select(AuditEvent).where(AuditEvent.action == action)))


def test_signed_out_page_redirects_to_login(client: TestClient) -> None:
    response = client.get("/users?x=1", follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == "/login?next=/users%3Fx%3D1"
    assert client.get("/", follow_redirects=False).headers["location"] == "/login"
    # htmx is sent there too, without following a redirect inside a fragment.
    hx = client.get("/users", headers={"HX-Request": "true"}, follow_redirects=False)
    assert hx.headers["HX-Redirect"].startswith("/login")


def test_login_page_renders_a_form(client: TestClient) -> None:
    doc = page_soup(client.get("/login?next=/tokens"))
    form = doc.select_one("form#login-form")
    assert form is not None and form["method"] == "post" and form["action"] == "/login"
    assert doc.select_one("input[name=next]")["value"] == "/tokens"  # type: ignore[index]
    assert doc.select_one("input[name=password][type=password]") is not None
    # Signed out: no navigation, no account menu.
    assert doc.select_one("nav.main-nav") is None and doc.select_one(".account-menu") is None


def test_next_never_leaves_the_site(client: TestClient, role_users: dict[str, str]) -> None:
    response = login(client, role_users["viewer"], next="//evil.example/x")
    assert response.headers["location"] == "/"


def test_first_admin_must_choose_a_new_password(client: TestClient, settings: Settings) -> None:
    path = settings.var_dir / "initial-admin-password"
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    name, one_time = path.read_text().split()
    response = login(client, name, one_time, next="/users")
    assert response.status_code == 303 and response.headers["location"] == "/account/password"
    # Every page sends them to the form until the password is changed.
    for page in ("/", "/users", "/tokens"):
        assert client.get(page, follow_redirects=False).headers["location"] == "/account/password"
    assert client.get("/api/v1/me").status_code == 403
    doc = page_soup(client.get("/account/password"))
    assert doc.select_one("#password-required") is not None
    token = str(doc.select_one("input[name=csrf_token]")["value"])  # type: ignore[index]

    new = "a-much-better-password-42"
    weak = client.post(
        "/account/password",
        data={
            "csrf_token": token,
            "current_password": one_time,
            "new_password": "short",
            "confirm_password": "short",
        },
    )
    assert weak.status_code == 400
    assert "at least 10" in page_soup(weak).select_one("#password-error").text  # type: ignore[union-attr]
    changed = client.post(
        "/account/password",
        data={
            "csrf_token": token,
            "current_password": one_time,
            "new_password": new,
            "confirm_password": new,
        },
        follow_redirects=False,
    )
    assert changed.status_code == 303 and changed.headers["location"] == "/"
    dashboard = page_soup(client.get("/"))
    assert dashboard.select_one("h1").text == "Dashboard"  # type: ignore[union-attr]
    flashes = [p.text for p in dashboard.select("#messages .notice")]
    assert flashes == ["Your password has been changed."]
    assert len(_audit(client, "password-changed")) == 1


def test_session_cookie_attributes_over_http(
    client: TestClient, role_users: dict[str, str]
) -> None:
    response = login(client, role_users["viewer"])
    cookie = next(c for c in response.headers.get_list("set-cookie") if "apex_session=" in c)
    assert cookie.startswith("apex_session=")
    lowered = cookie.lower()
    assert "httponly" in lowered and "samesite=lax" in lowered and "path=/" in lowered
    assert "secure" not in lowered
    assert "strict-transport-security" not in response.headers


def test_https_gets_host_prefixed_secure_cookie_and_hsts(settings: Settings) -> None:
    with TestClient(create_app(settings), base_url="https://testserver") as client:
        create_user(client.app.state.runtime, "sam", Role.VIEWER)  # type: ignore[attr-defined]
        response = login(client, "sam")
        cookie = next(c for c in response.headers.get_list("set-cookie") if "session=" in c)
        assert cookie.startswith("__Host-apex_session=")
        assert "secure" in cookie.lower()
        assert response.headers["strict-transport-security"].startswith("max-age=")
        assert client.get("/", follow_redirects=False).status_code == 200


def test_each_sign_in_gets_a_new_token(client: TestClient, role_users: dict[str, str]) -> None:
    login(client, role_users["viewer"])
    first = client.cookies.get("apex_session")
    # Signing in again from a signed-in browser (its form carries the session's token).
    data = {"username": "viewer-user", "password": PASSWORD, "csrf_token": csrf_token(client)}
    assert client.post("/login", data=data, follow_redirects=False).status_code == 303
    second = client.cookies.get("apex_session")
    assert first and second and first != second
    # The session the browser had before ended: one row left.
    with client.app.state.runtime.sessions() as session:  # type: ignore[attr-defined]
        assert len(session.scalars(select(UserSession)).all()) == 1


def test_wrong_password_is_audited_and_shown(
    client: TestClient, role_users: dict[str, str]
) -> None:
    response = client.post("/login", data={"username": "viewer-user", "password": "nope-nope-1"})
    assert response.status_code == 401
    error = page_soup(response).select_one("#login-error")
    assert error is not None and "not correct" in error.text
    [event] = _audit(client, "login-failed")
    assert event.details == {"username": "viewer-user", "reason": "wrong password"}
    assert event.client_addr == "testclient"


def test_ten_wrong_passwords_throttle_the_account(
    client: TestClient, role_users: dict[str, str]
) -> None:
    statuses = [
        client.post("/login", data={"username": "viewer-user", "password": f"wrong-{i}-xxxx"})
        for i in range(10)
    ]
    assert [r.status_code for r in statuses[:5]] == [401] * 5
    assert {r.status_code for r in statuses[5:]} == {429}
    message = page_soup(statuses[-1]).select_one("#login-error")
    assert message is not None and "Too many failed sign-ins for this account" in message.text
    # Even the right password waits now.
    assert login(client, "viewer-user").status_code == 429
    reasons = [e.details["reason"] for e in _audit(client, "login-failed")]
    assert reasons.count("wrong password") == 5
    assert reasons.count("throttled (account)") == 6
    # Another account from elsewhere is not affected.
    assert login(client, role_users["operator"]).status_code == 303


def test_over_one_kilobyte_password_is_refused(client: TestClient) -> None:
    response = client.post("/login", data={"username": "admin", "password": "p" * 1500})
    assert response.status_code == 400
    assert "at most 1024 bytes" in page_soup(response).select_one("#login-error").text  # type: ignore[union-attr]
    huge = client.post("/login", data={"username": "admin", "password": "p" * 20000})
    assert huge.status_code == 400


def test_sign_out_ends_the_session_and_a_replayed_cookie_is_refused(
    client: TestClient, role_users: dict[str, str]
) -> None:
    login(client, role_users["viewer"])
    stolen = client.cookies.get("apex_session")
    token = csrf_token(client)
    response = client.post("/logout", data={"csrf_token": token}, follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"] == "/login"
    assert "apex_session=" in response.headers["set-cookie"]
    assert client.get("/", follow_redirects=False).status_code == 303
    client.cookies.set("apex_session", stolen or "")
    replay = client.get("/", follow_redirects=False)
    assert replay.status_code == 303 and replay.headers["location"] == "/login"
    assert client.get("/api/v1/me").status_code == 401
    assert len(_audit(client, "logout")) == 1
    # The sign-out notice shows on the sign-in page.
    notices = page_soup(client.get("/login")).select("#messages .notice")
    assert [n.text for n in notices] == ["You are signed out."]


def test_disabled_users_open_session_stops_working(
    settings: Settings, role_users: dict[str, str], client: TestClient
) -> None:
    login(client, role_users["viewer"])
    assert client.get("/", follow_redirects=False).status_code == 200
    with TestClient(client.app) as admin:  # type: ignore[arg-type]
        login(admin, role_users["admin"])
        response = admin.post(
            "/users/viewer-user/disable",
            data={"csrf_token": csrf_token(admin)},
            follow_redirects=False,
        )
        assert response.status_code == 303
    assert client.get("/", follow_redirects=False).headers["location"] == "/login"
    assert login(client, role_users["viewer"]).status_code == 401


def _age_session(client: Any, **values: Any) -> None:
    with client.app.state.runtime.transaction() as session:
        session.execute(update(UserSession).values(**values))


def test_idle_session_expires(
    client: TestClient, role_users: dict[str, str], settings: Settings
) -> None:
    login(client, role_users["viewer"])
    _age_session(
        client, last_seen_at=utcnow() - timedelta(minutes=settings.session_idle_minutes + 1)
    )
    assert client.get("/", follow_redirects=False).headers["location"] == "/login"


def test_absolute_session_lifetime(client: TestClient, role_users: dict[str, str]) -> None:
    login(client, role_users["viewer"])
    # Busy all along (seen just now), but past its absolute end.
    _age_session(client, expires_at=utcnow() - timedelta(seconds=1))
    assert client.get("/", follow_redirects=False).headers["location"] == "/login"


def test_recent_activity_keeps_a_session(client: TestClient, role_users: dict[str, str]) -> None:
    login(client, role_users["viewer"])
    _age_session(client, last_seen_at=utcnow() - timedelta(minutes=5))
    assert client.get("/", follow_redirects=False).status_code == 200
    with client.app.state.runtime.sessions() as session:  # type: ignore[attr-defined]
        row = session.scalars(select(UserSession)).one()
        assert utcnow() - row.last_seen_at < timedelta(minutes=1)
