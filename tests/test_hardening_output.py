"""What the panel shows and prints: masked URLs (M2), neutralised control characters in the
terminal and the CSV export, the OpenAPI document, and the audit of a revision's SQL.
"""

from __future__ import annotations

import csv
import io
import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from helpers import LiveServer, login, page_soup
from jobs_support import write_project
from projects import Rev
from sqlalchemy import select

from admin import audit
from admin.config import Settings, mask_url
from admin.store.models import AuditEvent, Source
from admin.web.app import create_app

SECRET_URL = (
    "postgresql://crm:userinfo-pw@127.0.0.1:1/crmdb"
    "?password=query-pw&sslpassword=key-pw&sslkey=/etc/keys/crm.key&application_name=crm"
)
SECRETS = ("userinfo-pw", "query-pw", "key-pw", "/etc/keys/crm.key")


def _clean_env(**extra: str) -> dict[str, str]:
    names = {name.upper() for name in Settings.model_fields}
    env = {k: v for k, v in os.environ.items() if k.upper() not in names}
    env.update(extra)
    return env


# M2: one masking function.


def test_mask_url_hides_the_password_wherever_libpq_accepts_it() -> None:
    shown = mask_url(SECRET_URL)
    assert not any(secret in shown for secret in SECRETS), shown
    assert shown.startswith("postgresql://crm:***@127.0.0.1:1/crmdb?")
    assert "password=***" in shown and "sslpassword=***" in shown
    assert "application_name=crm" in shown
    assert mask_url("postgresql://u@h/db?PASSWORD=x") == "postgresql://u@h/db?PASSWORD=***"
    assert mask_url("not a url: secret") == "(a database URL that cannot be read)"


def test_sign_in_page_shows_no_target_and_the_start_up_log_no_secret(
    make_live_server: Any,
) -> None:
    server: LiveServer = make_live_server(DATABASE_URL=SECRET_URL)
    with _http(server) as http:
        page = http.get("/login").text
    assert not any(part in page for part in ("crmdb", "127.0.0.1:1", *SECRETS)), page
    log = server.log_path.read_text()
    assert "crm:***@127.0.0.1:1/crmdb" in log, log[-2000:]
    assert not any(secret in log for secret in SECRETS), log[-2000:]


def _http(server: LiveServer) -> Any:
    import httpx

    return httpx.Client(base_url=server.url, timeout=30)


def test_status_names_the_unreachable_target_without_its_password(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "admin", "status"],
        env=_clean_env(DATABASE_URL=SECRET_URL),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert "crmdb" in result.stderr
    assert not any(secret in result.stderr + result.stdout for secret in SECRETS), result.stderr


# Control characters in the terminal and in the CSV export.

ESCAPES = "\x1b]0;pwned\x07\x1b[31mred\x1b[0m\x9b"


def test_migrate_echoes_escape_sequences_as_text(tmp_path: Path) -> None:
    ini = write_project(
        tmp_path / "project",
        [Rev("f1f1f1f1f1f1", None, "prints escapes", f"print({ESCAPES!r}, flush=True)")],
    )
    sqlite3.connect(tmp_path / "target.sqlite3").close()
    result = subprocess.run(
        [sys.executable, "-m", "admin", "migrate", "--verbose"],
        env=_clean_env(
            ALEMBIC_CONFIG=str(ini), DATABASE_URL=f"sqlite:///{tmp_path / 'target.sqlite3'}"
        ),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    out = result.stdout + result.stderr
    assert "\\x1b]0;pwned\\x07\\x1b[31mred" in out, out[-2000:]
    assert not any(char in out for char in "\x1b\x07\x9b"), repr(out[-500:])


def test_the_csv_export_writes_escape_sequences_as_text(
    client: Any, role_users: dict[str, str]
) -> None:
    runtime = client.app.state.runtime
    with runtime.transaction() as session:
        audit.record(
            session,
            audit.LoginFailed(username=f"x{ESCAPES}", reason="wrong password"),
            audit.Actor(f"x{ESCAPES}", None, Source.WEB, "192.0.2.5"),
        )
    assert login(client, role_users["admin"]).status_code == 303
    answer = client.get("/audit/export?format=csv&action=login-failed")
    assert answer.status_code == 200
    assert not any(char in answer.text for char in "\x1b\x07\x9b"), repr(answer.text[-300:])
    rows = list(csv.DictReader(io.StringIO(answer.text)))
    assert rows[-1]["actor"] == "x\\x1b]0;pwned\\x07\\x1b[31mred\\x1b[0m\\x9b"


# The OpenAPI document.


def test_openapi_declares_security_every_4xx_and_aware_timestamps(settings: Settings) -> None:
    with TestClient(create_app(settings)) as client:
        schema = client.get("/api/v1/openapi.json").json()
    assert set(schema["components"]["securitySchemes"]) == {"bearer", "session"}
    assert schema["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            responses = operation["responses"]
            assert operation["security"] == [{"bearer": []}, {"session": []}], path
            assert {"400", "401", "403"} <= set(responses), (method, path)
            assert "422" not in responses, (method, path)
            if "{" in path:
                assert "404" in responses, (method, path)
    date = schema["components"]["schemas"]["HistoryItem"]["properties"]["create_date"]
    assert {"type": "string", "format": "date-time"} in date["anyOf"]


def test_api_timestamps_carry_their_zone(client: Any, role_users: dict[str, str]) -> None:
    assert login(client, role_users["viewer"]).status_code == 303
    items = client.get("/api/v1/revisions").json()["items"]
    assert items and all(
        item["create_date"].endswith("Z") or "+" in item["create_date"] for item in items
    )


# A revision's SQL, read by a viewer, is audited.


def test_reading_a_revisions_sql_is_audited(client: Any, role_users: dict[str, str]) -> None:
    assert login(client, role_users["viewer"]).status_code == 303
    runtime = client.app.state.runtime
    revision = client.get("/api/v1/revisions").json()["items"][-1]["id"]
    page = client.get(f"/revisions/{revision}")
    assert page.status_code == 200 and page_soup(page).select_one("h1") is not None
    assert client.get(f"/api/v1/revisions/{revision[:8]}").status_code == 200
    with runtime.reads() as session:
        events = list(
            session.scalars(select(AuditEvent).where(AuditEvent.action == "revision-sql-viewed"))
        )
    assert [(e.actor, e.revision, e.source) for e in events] == [
        ("viewer-user", revision, "web"),
        ("viewer-user", revision, "web"),
    ]
    assert events[0].details["dialect"] == "sqlite"
