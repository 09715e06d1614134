"""Errors: an HTML page, an htmx fragment, or JSON under /api; never a traceback."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
from fastapi import APIRouter
from fastapi.testclient import TestClient
from helpers import login, page_soup

from admin.config import Settings
from admin.errors import Conflict
from admin.web.app import create_app


@pytest.fixture
def viewer(client: TestClient, role_users: dict[str, str]) -> TestClient:
    assert login(client, role_users["viewer"]).status_code == 303
    return client


def test_404_page_fragment_and_json(viewer: TestClient) -> None:
    page = viewer.get("/no/such/page")
    assert page.status_code == 404
    doc = page_soup(page)
    assert doc.select_one("main .error-title").text == "Not found"  # type: ignore[union-attr]
    # The signed-in layout is around it.
    assert doc.select_one("nav.main-nav") is not None

    fragment = viewer.get("/no/such/page", headers={"HX-Request": "true"})
    assert fragment.status_code == 404
    part = page_soup(fragment)
    assert part.select_one("html") is None and part.select_one(".error-title") is not None
    assert fragment.headers["HX-Retarget"] == "#messages"
    assert fragment.headers["HX-Reswap"] == "innerHTML"
    assert fragment.headers["vary"] == "HX-Request"

    api = viewer.get("/api/v1/nothing")
    assert api.status_code == 404
    assert api.json() == {"status": 404, "title": "Not found", "detail": api.json()["detail"]}


def test_403_fragment_for_htmx(viewer: TestClient) -> None:
    response = viewer.get("/users", headers={"HX-Request": "true"})
    assert response.status_code == 403
    assert page_soup(response).select_one(".error-title").text == "Not allowed for your role"  # type: ignore[union-attr]
    api = viewer.post("/api/v1/me")
    assert api.status_code == 405 and api.json()["title"] == "Method Not Allowed"


def test_405_and_400(viewer: TestClient) -> None:
    wrong_method = viewer.get("/logout")
    assert wrong_method.status_code == 405
    assert "does not accept GET" in page_soup(wrong_method).select_one(".error-message").text  # type: ignore[union-attr]
    assert viewer.get("/tokens/abc/revoke").status_code == 405


def test_validation_error_is_a_400_page(client: TestClient, role_users: dict[str, str]) -> None:
    login(client, role_users["admin"])
    page = client.get("/users")
    token = str(page_soup(page).select_one("input[name=csrf_token]")["value"])  # type: ignore[index]
    response = client.post("/tokens/not-a-number/revoke", data={"csrf_token": token})
    assert response.status_code == 400
    doc = page_soup(response)
    assert doc.select_one(".error-title").text == "Invalid input"  # type: ignore[union-attr]
    assert "token_id" in doc.select_one(".error-message").text  # type: ignore[union-attr]
    api = client.get("/api/v1/me", params={"x": "y"})
    assert api.status_code == 200


@pytest.fixture
def broken_app(settings: Settings) -> Iterator[TestClient]:
    """The app with two extra routes: one failing unexpectedly, one with a Conflict."""
    app = create_app(settings)
    router = APIRouter()

    @router.get("/boom")
    def boom() -> None:
        raise RuntimeError("secret detail /etc/passwd")

    @router.get("/api/v1/boom")
    def api_boom() -> None:
        raise RuntimeError("secret detail")

    @router.get("/conflict")
    def conflict() -> None:
        raise Conflict("another job is running; wait for it to finish", title="Busy")

    app.include_router(router)
    with TestClient(app) as client:
        yield client


def test_unexpected_error_is_an_apology_without_details(
    broken_app: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR, logger="admin.web.errors"):
        response = broken_app.get("/boom")
    assert response.status_code == 500
    assert "secret detail" not in response.text and "Traceback" not in response.text
    doc = page_soup(response)
    assert "went wrong" in doc.select_one(".error-message").text  # type: ignore[union-attr]
    assert response.headers["x-frame-options"] == "DENY"
    assert any("secret detail" in (r.exc_text or "") for r in caplog.records)
    api = broken_app.get("/api/v1/boom")
    assert api.status_code == 500 and "secret" not in api.text
    assert api.json()["title"] == "Internal error"


def test_admin_error_carries_status_title_and_message(broken_app: TestClient) -> None:
    response = broken_app.get("/conflict")
    assert response.status_code == 409
    doc = page_soup(response)
    assert doc.select_one(".error-title").text == "Busy"  # type: ignore[union-attr]
    assert doc.select_one(".error-message").text == "another job is running; wait for it to finish"  # type: ignore[union-attr]
