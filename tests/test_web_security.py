"""CSRF, same-origin, security headers, static files, request size."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from fastapi.testclient import TestClient
from helpers import body_csrf_header, csrf_token, login, page_soup
from sqlalchemy import select

from admin.store.models import AuditEvent
from admin.web import assets


def _denials(client: Any) -> list[AuditEvent]:
    with client.app.state.runtime.sessions() as session:
        query = select(AuditEvent).where(AuditEvent.action == "access-denied")
        return list(session.scalars(query))


@pytest.fixture
def viewer(client: TestClient, role_users: dict[str, str]) -> TestClient:
    assert login(client, role_users["viewer"]).status_code == 303
    return client


def test_post_without_csrf_token_is_refused_and_audited(viewer: TestClient) -> None:
    response = viewer.post("/logout", follow_redirects=False)
    assert response.status_code == 403
    assert page_soup(response).select_one(".error-title").text == "Form expired"  # type: ignore[union-attr]
    wrong = viewer.post("/logout", data={"csrf_token": "forged"}, follow_redirects=False)
    assert wrong.status_code == 403
    # Still signed in: nothing happened.
    assert viewer.get("/", follow_redirects=False).status_code == 200
    [first, second] = _denials(viewer)
    assert (first.actor, first.details["method"], first.details["path"]) == (
        "viewer-user",
        "POST",
        "/logout",
    )
    assert first.outcome == "denied" and second.details["status"] == 403


def test_csrf_token_in_form_or_htmx_header(viewer: TestClient) -> None:
    page = viewer.get("/account/password")
    header = body_csrf_header(page)
    field = page_soup(page).select_one("input[name=csrf_token]")
    assert header and field is not None and field["value"] == header
    # <body hx-headers> is JSON in an attribute, not a script.
    assert json.loads(str(page_soup(page).body["hx-headers"])) == {"X-CSRF-Token": header}  # type: ignore[index]
    response = viewer.post(
        "/logout", headers={"X-CSRF-Token": header, "HX-Request": "true"}, follow_redirects=False
    )
    assert response.status_code == 200 and response.headers["HX-Redirect"] == "/login"


def test_cross_origin_post_is_refused(viewer: TestClient) -> None:
    token = csrf_token(viewer)
    for headers in (
        {"Origin": "https://evil.example"},
        {"Origin": "null"},
        {"Referer": "https://evil.example/page"},
    ):
        response = viewer.post(
            "/logout", data={"csrf_token": token}, headers=headers, follow_redirects=False
        )
        assert response.status_code == 403, headers
        assert "another" in page_soup(response).select_one(".error-message").text  # type: ignore[union-attr]
    same = viewer.post(
        "/logout",
        data={"csrf_token": token},
        headers={"Origin": "http://testserver"},
        follow_redirects=False,
    )
    assert same.status_code == 303


def test_cross_origin_sign_in_is_refused(client: TestClient, role_users: dict[str, str]) -> None:
    response = client.post(
        "/login",
        data={"username": "viewer-user", "password": "whatever-1"},
        headers={"Origin": "https://evil.example"},
    )
    assert response.status_code == 403


def test_security_headers_on_pages_errors_and_static(client: TestClient) -> None:
    for response in (client.get("/login"), client.get("/nowhere"), client.get("/healthz")):
        headers = response.headers
        csp = headers["content-security-policy"]
        assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp
        assert "base-uri 'self'" in csp and "form-action 'self'" in csp
        assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
        assert headers["x-content-type-options"] == "nosniff"
        assert headers["referrer-policy"] == "same-origin"
        assert headers["x-frame-options"] == "DENY"
        assert "strict-transport-security" not in headers
    assert client.get("/login").headers["cache-control"] == "no-store"


def test_no_inline_script_or_style_in_pages(viewer: TestClient) -> None:
    for path in ("/", "/account/password", "/login", "/nowhere"):
        doc = page_soup(viewer.get(path))
        for script in doc.select("script"):
            assert script.get("src"), f"inline script on {path}"
            assert not script.string
        assert not doc.select("style") and not doc.select("[style]")
        assert not [el for el in doc.find_all(True) if any(a.startswith("on") for a in el.attrs)]


def test_static_files_are_versioned_and_cached(client: TestClient) -> None:
    doc = page_soup(client.get("/login"))
    sources = [s["src"] for s in doc.select("script[src]")] + [
        link["href"] for link in doc.select("link[rel=stylesheet]")
    ]
    version = assets.static_version()
    assert sources and all(str(s).startswith(f"/static/{version}/") for s in sources)
    assert any(re.search(r"vendor/htmx-2\.\d+\.\d+/htmx\.min\.js$", str(s)) for s in sources)
    assert any(str(s).endswith("vendor/htmx-ext-sse-2.2.4/sse.min.js") for s in sources)
    for url in sources:
        response = client.get(str(url))
        assert response.status_code == 200, url
        assert "immutable" in response.headers["cache-control"]
        assert "max-age=31536000" in response.headers["cache-control"]
    assert client.get(f"/static/{version}/no-such-file.js").status_code == 404


def test_vendored_htmx_is_version_2(client: TestClient) -> None:
    text = (assets.static_dir() / "vendor" / "htmx-2.0.11" / "htmx.min.js").read_text()
    assert 'version:"2.' in text
    assert (assets.static_dir() / "vendor" / "htmx-2.0.11" / "LICENSE").is_file()
    assert (assets.static_dir() / "vendor" / "htmx-ext-sse-2.2.4" / "LICENSE").is_file()


def test_oversized_form_is_refused(viewer: TestClient) -> None:
    token = csrf_token(viewer)
    big = viewer.post(
        "/account/password",
        data={"csrf_token": token, "current_password": "x" * (2 * 1024 * 1024)},
    )
    assert big.status_code == 413
    assert page_soup(big).select_one(".error-title").text == "Too large"  # type: ignore[union-attr]
    long_field = viewer.post(
        "/account/password",
        data={"csrf_token": token, "current_password": "x" * 9000},
    )
    assert long_field.status_code == 400
