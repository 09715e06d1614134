"""The backups pages over HTTP: list, take, verify again, download, delete, restore; roles,
confirmations, bad ids and paths; the dashboard's last backup.

The app runs its real lifespan and runner (TestClient as a context manager); backup,
verify and restore jobs run in worker processes against a real SQLite or PostgreSQL target.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from helpers import create_user, login, page_soup
from projects import Rev
from sqlalchemy import create_engine, select, text

from admin import audit, migrations
from admin.config import Settings
from admin.jobs import JobRequest, run_in_foreground
from admin.runtime import Runtime
from admin.store.models import AuditEvent, Backup, Job, JobKind, Role, Source
from admin.web.app import create_app

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
TESTS = audit.Actor("tests", None, Source.CLI)


class Panel:
    """A signed-out TestClient on an app with one user per role and a target at bbb222."""

    def __init__(self, client: TestClient) -> None:
        self.client = client
        self.runtime: Runtime = client.app.state.runtime  # type: ignore[attr-defined]
        for role in Role:
            create_user(self.runtime, f"{role.value}-user", role)

    @property
    def settings(self) -> Settings:
        return self.runtime.settings

    def sign_in(self, role: str) -> None:
        self.client.cookies.clear()
        assert login(self.client, f"{role}-user").status_code == 303

    def csrf(self, path: str = "/backups") -> str:
        field = page_soup(self.client.get(path)).select_one("input[name=csrf_token]")
        assert field is not None, f"no form on {path}"
        return str(field["value"])

    def post(self, path: str, data: dict[str, str] | None = None, page: str = "/backups") -> Any:
        form = {"csrf_token": self.csrf(page), **(data or {})}
        return self.client.post(path, data=form, follow_redirects=False)

    def wait(self, job_id: int) -> Job:
        assert self.client.app.state.runner.wait(job_id, timeout=120)  # type: ignore[attr-defined]
        with self.runtime.reads() as session:
            job = session.get(Job, job_id)
        assert job is not None
        return job

    def job_from(self, response: Any) -> Job:
        assert response.status_code == 303, response.text
        match = re.fullmatch(r"/jobs/(\d+)", response.headers["location"])
        assert match, response.headers["location"]
        return self.wait(int(match.group(1)))

    def take_backup(self, **form: str) -> Backup:
        job = self.job_from(self.post("/backups", form))
        assert job.status == "succeeded", job.error
        return self.backup(job.backup_id)

    def backup(self, backup_id: int | None) -> Backup:
        with self.runtime.reads() as session:
            row = session.get(Backup, backup_id)
        assert row is not None
        return row

    def migrate(self, kind: JobKind, target: str) -> Job:
        job = run_in_foreground(self.runtime, JobRequest(kind, target), TESTS, echo=lambda _: None)
        assert job.status == "succeeded", job.error
        return job

    def actions(self) -> list[str]:
        with self.runtime.reads() as session:
            return list(session.scalars(select(AuditEvent.action).order_by(AuditEvent.id)))

    def events(self, action: str) -> list[AuditEvent]:
        with self.runtime.reads() as session:
            query = select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.id)
            return list(session.scalars(query))


def _move(settings: Settings, revision: str) -> None:
    """Put the target at ``revision`` in this process (quicker than a job for set-up)."""
    project = migrations.open_project(settings.alembic_config)
    engine = migrations.new_engine(settings.database_url)
    try:
        with engine.connect() as connection:
            migrations.run(
                project, connection, migrations.Command.UPGRADE, revision, on_event=lambda e: None
            )
    finally:
        engine.dispose()


@pytest.fixture
def make_panel(
    make_settings: Callable[..., Settings], alembic_project: Callable[..., Path], tmp_path: Path
) -> Iterator[Callable[..., Panel]]:
    clients: list[TestClient] = []

    def make(target: str | None = None, **values: Any) -> Panel:
        url = target or f"sqlite:///{tmp_path / 'crm.sqlite3'}"
        migrations.create_database(url)
        settings = make_settings(
            database_url=url,
            alembic_config=alembic_project(PROJECT, name=f"p{len(clients)}"),
            job_heartbeat=0.2,
            **values,
        )
        client = TestClient(create_app(settings))
        client.__enter__()
        clients.append(client)
        panel = Panel(client)
        _move(settings, "bbb222")
        return panel

    yield make
    for client in clients:
        client.__exit__(None, None, None)
    migrations.dispose_engines()


def test_an_operator_takes_a_backup_and_sees_it_verified(make_panel: Callable[..., Panel]) -> None:
    panel = make_panel()
    panel.sign_in("operator")
    page = page_soup(panel.client.get("/backups"))
    assert page.select_one("#no-backups") is not None
    assert page.select_one("#take-backup") is not None

    bad = panel.post("/backups", {"format": "tar", "reason": "manual"})
    assert bad.status_code == 400 and "unknown backup format" in bad.text
    assert panel.events("backup-refused")[-1].details["request"] == "backup"

    response = panel.post("/backups", {"format": "custom", "reason": "manual"})
    job = panel.job_from(response)

    assert job.kind == "backup" and job.status == "succeeded", job.error
    assert job.requested_by == "operator-user" and job.source == "web"
    backup = panel.backup(job.backup_id)
    page = page_soup(panel.client.get("/backups"))
    row = page.select_one(f"tr[data-backup-id='{backup.id}']")
    assert row is not None and row["data-state"] == "verified"
    assert row.select_one(".backup-revision").get_text(strip=True) == "bbb222"
    assert row.select_one(".backup-format").get_text(strip=True) == "sqlite"
    assert row.select_one(".backup-by").get_text(strip=True) == "operator-user"
    assert row.select_one(".backup-reason").get_text(strip=True) == "manual"
    assert "verified" in row.select_one(".backup-state").get_text()
    assert row.select_one(".download-link") is None  # admins only
    assert row.select_one(".verify-form") is not None
    assert page.select_one("#backup-list[hx-trigger]") is None  # nothing runs: no polling

    detail = page_soup(panel.client.get(f"/backups/{backup.id}"))
    assert detail.select_one("#backup-sha256").get_text() == backup.sha256
    assert detail.select_one("#backup-revision").get_text(strip=True) == "bbb222"
    assert detail.select_one(f"#backup-jobs li[data-job-id='{job.id}']") is not None
    assert detail.select_one("#restore-form") is not None
    assert detail.select_one("#confirm-name").get_text() == "crm.sqlite3"
    assert (
        detail.select_one("#download-backup") is None and detail.select_one("#delete-form") is None
    )

    again = panel.job_from(panel.post(f"/backups/{backup.id}/verify"))
    assert again.kind == "verify" and again.status == "succeeded", again.error
    assert panel.events("backup-verified")[-1].details["again"] is True


NOT_FOUND = [
    "/backups/999999",
    "/backups/abc",
    "/backups/99999999999999999999999",
    "/backups/999999/download",
    "/backups/abc/download",
    "/backups/..%2F..%2Fetc%2Fpasswd/download",
    "/backups/%2e%2e/download",
    "/backups/-1/download",
    "/backups/1/download/..%2F..%2Fvar%2Fsecret-key",
    "/backups/files/../../var/secret-key",
]


def test_roles_downloads_deletions_and_404s(make_panel: Callable[..., Panel]) -> None:
    """Viewers read; only admins download (streamed, named) and delete (confirmed); every
    refusal is audited; unknown ids and paths are 404s."""
    panel = make_panel()
    panel.sign_in("operator")
    backup = panel.take_backup()
    path = panel.settings.backup_dir / (backup.file_name or "")
    detail = f"/backups/{backup.id}"

    panel.sign_in("viewer")
    page = page_soup(panel.client.get("/backups"))
    assert page.select_one(f"tr[data-backup-id='{backup.id}']") is not None
    assert page.select_one("#take-backup") is None and page.select_one(".verify-form") is None
    assert page_soup(panel.client.get(detail)).select_one("#restore-form") is None
    token = panel.csrf("/account/password")
    for action in ("", f"/{backup.id}/verify", f"/{backup.id}/restore", f"/{backup.id}/delete"):
        response = panel.client.post(
            "/backups" + action, data={"csrf_token": token}, follow_redirects=False
        )
        assert response.status_code == 403, action

    for role in ("viewer", "operator"):
        panel.sign_in(role)
        assert panel.client.get(f"{detail}/download").status_code == 403
    denied = panel.events("access-denied")
    assert [e.actor for e in denied[-2:]] == ["viewer-user", "operator-user"]
    assert all(e.details["path"] == f"{detail}/download" for e in denied[-2:])
    token = panel.csrf()
    forbidden = panel.client.post(
        f"{detail}/delete", data={"csrf_token": token, "confirm": "yes"}, follow_redirects=False
    )
    assert forbidden.status_code == 403

    panel.sign_in("admin")
    page = page_soup(panel.client.get("/backups"))
    link = page.select_one(f"tr[data-backup-id='{backup.id}'] .download-link")
    assert link is not None and link["href"] == f"{detail}/download"
    response = panel.client.get(f"{detail}/download")
    assert response.status_code == 200
    assert response.content == path.read_bytes()
    assert response.headers["content-type"] == "application/octet-stream"
    assert f'filename="{backup.file_name}"' in response.headers["content-disposition"]
    assert response.headers["cache-control"] == "no-store"
    event = panel.events("backup-downloaded")[-1]
    assert event.actor == "admin-user" and event.backup_id == backup.id
    assert event.details["size_bytes"] == path.stat().st_size

    for url in [*NOT_FOUND, f"{detail}/download/{backup.file_name}"]:
        response = panel.client.get(url)
        assert response.status_code == 404, (url, response.status_code)
        assert response.headers["content-type"].startswith("text/html"), url

    assert page_soup(panel.client.get(detail)).select_one("#delete-form") is not None
    unconfirmed = panel.post(f"{detail}/delete", {}, detail)
    assert unconfirmed.status_code == 400 and path.is_file()
    assert "tick the box" in page_soup(unconfirmed).select_one(".error-message").get_text()
    refusal = panel.events("backup-refused")[-1]
    assert refusal.details["request"] == "delete" and refusal.backup_id == backup.id

    done = panel.post(f"{detail}/delete", {"confirm": "yes"}, detail)

    assert done.status_code == 303 and done.headers["location"] == "/backups"
    assert not path.exists()
    assert panel.backup(backup.id).status == "deleted"
    event = panel.events("backup-deleted")[-1]
    assert event.actor == "admin-user" and event.details["file_removed"] is True
    row = page_soup(panel.client.get("/backups")).select_one(f"tr[data-backup-id='{backup.id}']")
    assert row is not None and row["data-state"] == "deleted"
    assert panel.client.get(f"{detail}/download").status_code == 404
    again = panel.post(f"{detail}/delete", {"confirm": "yes"}, "/backups")
    assert again.status_code == 409


def test_restore_needs_the_database_name_typed_and_reports_the_new_database(
    make_panel: Callable[..., Panel], tmp_path: Path
) -> None:
    panel = make_panel()
    panel.sign_in("operator")
    backup = panel.take_backup()
    page = f"/backups/{backup.id}"

    wrong = panel.post(f"/backups/{backup.id}/restore", {"mode": "new", "confirm": "crm"}, page)

    assert wrong.status_code == 400
    error = page_soup(wrong).select_one("#restore-error")
    assert error is not None and "crm.sqlite3" in error.get_text()
    refused = panel.events("restore-refused")[-1]
    assert refused.outcome == "denied" and refused.actor == "operator-user"
    with panel.runtime.reads() as session:
        assert session.scalars(select(Job).where(Job.kind == "restore")).all() == []

    response = panel.post(
        f"/backups/{backup.id}/restore",
        {"mode": "new", "new_database": "copy.sqlite3", "confirm": "crm.sqlite3"},
        page,
    )
    job = panel.job_from(response)
    assert job.kind == "restore" and job.status == "succeeded", job.error
    assert (tmp_path / "copy.sqlite3").is_file()
    finished = panel.events("restore-finished")[-1]
    assert finished.details["database_name"].endswith("copy.sqlite3")
    assert finished.details["revision_after"] == "bbb222"


def test_in_production_only_admins_restore(make_panel: Callable[..., Panel]) -> None:
    panel = make_panel(environment="production", backup_before_migrate=False)
    panel.sign_in("operator")
    backup = panel.take_backup()
    page = f"/backups/{backup.id}"
    detail = page_soup(panel.client.get(page))
    assert detail.select_one("#restore-form") is None
    assert detail.select_one("#restore-admin-only") is not None
    token = panel.csrf("/backups")
    response = panel.client.post(
        f"/backups/{backup.id}/restore",
        data={"csrf_token": token, "mode": "new", "confirm": "crm.sqlite3"},
        follow_redirects=False,
    )
    assert response.status_code == 403
    assert panel.events("access-denied")[-1].details["path"] == f"/backups/{backup.id}/restore"

    panel.sign_in("admin")
    job = panel.job_from(
        panel.post(
            f"/backups/{backup.id}/restore",
            {"mode": "new", "new_database": "prod_copy.sqlite3", "confirm": "crm.sqlite3"},
            page,
        )
    )
    assert job.status == "succeeded", job.error


def test_an_unwritable_backup_dir_is_reported_at_start_and_on_the_page(
    make_panel: Callable[..., Panel], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    not_a_dir = tmp_path / "backups-file"
    not_a_dir.write_text("")
    with caplog.at_level(logging.WARNING, logger="admin.backups.actions"):
        panel = make_panel(backup_dir=not_a_dir)
    assert any("is not a directory" in r.getMessage() for r in caplog.records)
    panel.sign_in("operator")
    problem = page_soup(panel.client.get("/backups")).select_one("#backup-dir-problem")
    assert problem is not None and str(not_a_dir) in problem.get_text()

    job = panel.job_from(panel.post("/backups"))
    assert job.status == "failed" and "not a directory" in (job.error or "")


# PostgreSQL: restore over the target, and the dashboard shows the restored revision.


def _tables(url: str) -> set[str]:
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            return set(
                connection.execute(
                    text("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
                ).scalars()
            )
    finally:
        engine.dispose()


@pytest.mark.postgres
def test_restore_over_the_target_and_the_dashboard_shows_its_revision(
    make_panel: Callable[..., Panel], pg_databases: Any
) -> None:
    url = pg_databases.create("web")
    panel = make_panel(target=url)
    panel.sign_in("operator")
    backup = panel.take_backup(format="plain")
    assert backup.revision == "bbb222" and backup.format == "plain"
    panel.migrate(JobKind.DOWNGRADE, "aaa111")
    assert "b" not in _tables(url)

    job = panel.job_from(
        panel.post(
            f"/backups/{backup.id}/restore",
            {"mode": "replace", "confirm": migrations_name(url)},
            f"/backups/{backup.id}",
        )
    )

    assert job.status == "succeeded", job.error
    assert job.revision_after == "bbb222"
    assert {"a", "b", "alembic_version"} <= _tables(url)
    dashboard = page_soup(panel.client.get("/"))
    current = dashboard.select_one("#current-revisions")
    assert current is not None and "bbb222" in current.get_text()
    last = dashboard.select_one("#last-backup-link")
    # The newest verified backup is the safety copy the restore took of the state it
    # replaced (tests/test_safety_restore.py), the one after the restored backup.
    assert last is not None and last["href"] == f"/backups/{backup.id + 1}"


def migrations_name(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).database or ""
