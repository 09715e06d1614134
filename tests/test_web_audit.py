"""The audit page, its exports and the chain check, on SQLite and PostgreSQL stores.

A scripted session (sign in, apply, failed apply, sign out) must come back from the page
and from both exports exactly, in order, with the right actors, sources and revisions.
"""

from __future__ import annotations

import csv
import io
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from audit_support import InProcessCli, events_after, last_id
from fastapi.testclient import TestClient
from helpers import create_user, csrf_token, login, page_soup
from projects import PROJECT_ENV, REPO_ROOT, Rev, write_revision
from sqlalchemy import select, text

from admin import audit, audit_query, logs, migrations
from admin.config import Settings
from admin.runtime import Runtime
from admin.store.models import AuditEvent, Source
from admin.web.app import create_app
from tests.conftest import TEST_SECRET_KEY

R1 = "a1a1a1a1a1a1"
R2 = "b2b2b2b2b2b2"
PROJECT = [
    Rev(
        R1,
        None,
        "create a",
        "op.create_table('a', sa.Column('id', sa.Integer, primary_key=True))",
        "op.drop_table('a')",
    ),
    Rev(
        R2,
        R1,
        "broken",
        "op.create_table('b', sa.Column('id', sa.Integer, primary_key=True))\n"
        "op.execute('SELECT * FROM no_such_table')",
        "op.drop_table('b')",
    ),
]


@dataclass
class World:
    """An app with an admin signed in, a test project as its target, the CLI, and the
    scripted session's events (from ``mark`` on)."""

    client: TestClient
    settings: Settings
    cli: InProcessCli
    mark: int = 0
    events: list[AuditEvent] = field(default_factory=list)

    @property
    def runtime(self) -> Runtime:
        runtime: Runtime = self.client.app.state.runtime  # type: ignore[attr-defined]
        return runtime

    def other_client(self) -> TestClient:
        return TestClient(self.client.app)  # type: ignore[arg-type]


def _apply_from_preview(world: World, client: TestClient, target: str) -> int:
    """Preview an upgrade to ``target`` and press its Apply button; the job's id when done."""
    page = client.get("/preview", params={"direction": "upgrade", "target": target})
    assert page.status_code == 200, page.text[:300]
    form = page_soup(page).select_one("form#apply-form")
    assert form is not None and form["action"] == "/jobs"
    data = {
        str(i["name"]): str(i.get("value", ""))
        for i in form.select("input[name]")
        # As a browser sends it: an unticked box is not sent.
        if i.get("type") != "checkbox" or i.has_attr("checked")
    }
    answer = client.post("/jobs", data=data, follow_redirects=False)
    assert answer.status_code == 303, answer.text[:300]
    job_id = int(answer.headers["location"].rsplit("/", 1)[1])
    assert world.client.app.state.runner.wait(job_id, timeout=60)  # type: ignore[attr-defined]
    return job_id


def _scripted_session(world: World) -> None:
    """Sign in, preview, apply, a failed apply, sign out: alice, in the browser."""
    world.mark = last_id(world.runtime)
    alice = world.other_client()
    assert login(alice, "alice").status_code == 303
    _apply_from_preview(world, alice, R1)
    backup = alice.post("/backups", data={"csrf_token": csrf_token(alice)}, follow_redirects=False)
    assert backup.status_code == 303, backup.text[:300]
    backup_job = int(backup.headers["location"].rsplit("/", 1)[1])
    assert world.client.app.state.runner.wait(backup_job, timeout=60)  # type: ignore[attr-defined]
    _apply_from_preview(world, alice, R2)  # its migration fails
    signed_out = alice.post(
        "/logout", data={"csrf_token": csrf_token(alice)}, follow_redirects=False
    )
    assert signed_out.status_code == 303
    world.events = events_after(world.runtime, world.mark)


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def world(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[World]:
    """One scripted session per store dialect, read by the tests below (which only read,
    or add events of the admin ``auditor`` that they filter out)."""
    root = tmp_path_factory.mktemp("audit-world")
    versions = root / "project" / "migrations" / "versions"
    versions.mkdir(parents=True)
    (versions.parent / "env.py").write_text(PROJECT_ENV)
    for rev in PROJECT:
        write_revision(versions, rev)
    ini = root / "project" / "alembic.ini"
    ini.write_text("[alembic]\nscript_location = %(here)s/migrations\n")
    store = f"sqlite:///{root / 'store.sqlite3'}"
    if request.param == "postgresql":
        store = request.getfixturevalue("pg_databases").create("audit")
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        database_url=f"sqlite:///{root / 'target.sqlite3'}",
        admin_database_url=store,
        var_dir=root / "var",
        backup_dir=root / "backups",
        secret_key=TEST_SECRET_KEY,
        alembic_config=ini,
    )
    migrations.create_database(settings.database_url)
    with TestClient(create_app(settings)) as client:
        runtime = client.app.state.runtime  # type: ignore[attr-defined]
        create_user(runtime, "auditor", "admin")
        create_user(runtime, "alice", "operator")
        assert login(client, "auditor").status_code == 303
        world = World(client, settings, InProcessCli(settings, root))
        _scripted_session(world)
        yield world


def _rows(response: Any) -> list[dict[str, str]]:
    assert response.status_code == 200, response.text[:500]
    return [
        {
            "id": row["data-event-id"],
            "action": row["data-action"],
            "actor": row["data-actor"],
            "source": row["data-source"],
            "outcome": row["data-outcome"],
        }
        for row in page_soup(response).select("#audit-events tr.audit-event")
    ]


def _shape(event: AuditEvent) -> tuple[str, str, str, str, str | None]:
    return (event.action, event.actor, event.source, event.outcome, event.revision)


EXPECTED = [
    ("login-succeeded", "alice", "web", "success", None),
    ("sql-previewed", "alice", "web", "success", None),
    ("job-queued", "alice", "web", "success", R1),
    ("job-started", "alice", "web", "success", None),
    ("job-finished", "alice", "web", "success", R1),
    ("job-queued", "alice", "web", "success", None),  # the backup
    ("job-started", "alice", "web", "success", None),
    ("backup-started", "alice", "web", "success", R1),
    ("backup-verified", "alice", "web", "success", R1),
    ("job-finished", "alice", "web", "success", R1),
    ("sql-previewed", "alice", "web", "success", None),
    ("job-queued", "alice", "web", "success", R2),
    ("job-started", "alice", "web", "success", None),
    ("job-finished", "alice", "web", "failure", R1),
    ("logout", "alice", "web", "success", None),
]


def _session_rows(rows: list[dict[str, str]], mark: int) -> list[dict[str, str]]:
    """The scripted session's rows (the admin's own page views and exports left out)."""
    return [r for r in rows if int(r["id"]) > mark and r["actor"] != "auditor"]


def test_the_session_is_recorded_in_order(world: World) -> None:
    events = world.events
    assert [_shape(e) for e in events] == EXPECTED
    jobs = [e.job_id for e in events if e.action == "job-queued"]
    assert all(jobs) and len(set(jobs)) == 3
    finished = [e for e in events if e.action == "job-finished"]
    assert finished[0].details["revision_before"] == "base"
    assert finished[1].details["kind"] == "backup" and finished[1].backup_id == events[8].backup_id
    assert finished[2].details["revision_before"] == R1
    assert finished[2].details["error"]
    assert {e.client_addr for e in events} == {"testclient"}
    previews = [e for e in events if e.action == "sql-previewed"]
    assert [e.target for e in previews] == [f"revision:{R1}", f"revision:{R2}"]
    assert previews[0].details["plan_fingerprint"] == events[2].details["plan_fingerprint"]


def test_the_page_lists_the_session_newest_first_with_links(world: World) -> None:
    events = world.events
    page = world.client.get("/audit")
    assert "HX-Request" in page.headers["vary"]
    shown = _session_rows(_rows(page), world.mark)
    assert [(r["action"], r["actor"], r["source"], r["outcome"]) for r in shown] == [
        shape[:4] for shape in reversed(EXPECTED)
    ]
    doc = page_soup(page)
    queued = doc.select_one(f"#event-{events[2].id}")
    assert queued is not None
    assert queued.select_one("a.job-link")["href"] == f"/jobs/{events[2].job_id}"  # type: ignore[index]
    assert [a["href"] for a in queued.select("a.revision-link")] == [f"/revisions/{R1}"]
    verified = doc.select_one(f"#event-{events[8].id}")
    assert verified is not None and events[8].backup_id is not None
    assert verified.select_one("a.backup-link")["href"] == f"/backups/{events[8].backup_id}"  # type: ignore[index]
    assert verified.select_one("a.job-link")["href"] == f"/jobs/{events[5].job_id}"  # type: ignore[index]
    details = doc.select_one(f"#event-{events[13].id} pre.audit-details")
    assert details is not None and json.loads(details.text)["status"] == "failed"


def test_both_exports_list_the_session_oldest_first_and_are_audited(world: World) -> None:
    mark, events = world.mark, world.events
    before = last_id(world.runtime)
    csv_export = world.client.get("/audit/export", params={"format": "csv"})
    assert csv_export.status_code == 200
    assert csv_export.headers["content-type"].startswith("text/csv")
    disposition = csv_export.headers["content-disposition"]
    assert disposition.startswith('attachment; filename="audit-') and disposition.endswith('.csv"')
    rows = _session_rows(list(csv.DictReader(io.StringIO(csv_export.text))), mark)
    assert [
        (r["action"], r["actor"], r["source"], r["outcome"], r["revision"] or None) for r in rows
    ] == EXPECTED
    assert json.loads(rows[13]["details"])["revision_after"] == R1
    assert [r["hash"] for r in rows] == [e.hash for e in events]

    jsonl = world.client.get("/audit/export", params={"format": "jsonl"})
    assert jsonl.status_code == 200
    assert jsonl.headers["content-disposition"].endswith('.jsonl"')
    lines = [json.loads(line) for line in jsonl.text.splitlines()]
    assert [line["id"] for line in lines] == sorted(line["id"] for line in lines)
    ours = [line for line in lines if line["id"] > mark and line["actor"] != "auditor"]
    assert ours == [audit.as_dict(e) for e in events]  # exactly as stored, hashes included

    # Each export is audited with its filter; each ends where it was asked for.
    exported = events_after(world.runtime, before)
    assert [(e.action, e.actor, e.details["format"]) for e in exported] == [
        ("audit-exported", "auditor", "csv"),
        ("audit-exported", "auditor", "jsonl"),
    ]
    assert exported[1].details["upto_id"] == exported[0].id
    assert lines[-1]["id"] == exported[0].id


def test_the_revision_knows_who_applied_it(world: World) -> None:
    events = world.events
    with world.runtime.sessions() as session:
        applied = audit.last_applied(session, R1)
        assert audit.last_applied(session, R2) is None
    assert applied is not None
    assert (applied.actor, applied.source, applied.job_id) == ("alice", "web", events[2].job_id)
    assert applied.event_id == events[4].id
    # The revision page says so.
    shown = page_soup(world.client.get(f"/revisions/{R1}")).select_one("#revision-applied")
    assert shown is not None and shown.select_one(".applied-by").text == "alice"  # type: ignore[union-attr]
    assert shown.select_one("a.applied-job")["href"] == f"/jobs/{events[2].job_id}"  # type: ignore[index]
    assert applied.at.strftime("%Y-%m-%d %H:%M:%S") in shown.text
    never = page_soup(world.client.get(f"/revisions/{R2}")).select_one("#revision-applied")
    assert never is not None and never.select_one(".placeholder") is not None


def test_filters_combine(world: World) -> None:
    mark, events = world.mark, world.events
    client = world.client

    def shown(**params: str) -> list[tuple[str, str, str]]:
        rows = _session_rows(_rows(client.get("/audit", params=params)), mark)
        return [(r["action"], r["actor"], r["outcome"]) for r in rows]

    assert shown(action="logout") == [("logout", "alice", "success")]
    assert shown(actor="alice", action="job-*", outcome="failure") == [
        ("job-finished", "alice", "failure")
    ]
    assert len(shown(action="job-*", source="web")) == 9
    assert shown(action="backup-*") == [
        ("backup-verified", "alice", "success"),
        ("backup-started", "alice", "success"),
    ]
    assert shown(source="cli") == []
    assert shown(actor="nobody") == []
    # A revision by its id or a prefix: what previewed it, targeted it, or ended there.
    by_revision = shown(revision=R1[:6])
    assert by_revision == [
        ("job-finished", "alice", "failure"),
        ("job-finished", "alice", "success"),  # the backup's job, taken at R1
        ("backup-verified", "alice", "success"),
        ("backup-started", "alice", "success"),
        ("job-finished", "alice", "success"),
        ("job-queued", "alice", "success"),
        ("sql-previewed", "alice", "success"),
    ]
    assert shown(revision=R1[:6], outcome="failure") == by_revision[:1]
    assert shown(revision=R2, action="job-queued") == [("job-queued", "alice", "success")]
    assert shown(job=str(events[11].job_id)) == [
        ("job-finished", "alice", "failure"),
        ("job-started", "alice", "success"),
        ("job-queued", "alice", "success"),
    ]
    # Time: whole days, an exact moment (the until moment is included), an empty range.
    today = datetime.now(UTC).date()
    assert len(shown(since=today.isoformat(), until=today.isoformat())) == len(EXPECTED)
    yesterday = (today - timedelta(days=1)).isoformat()
    assert shown(until=yesterday) == []
    assert len(shown(since=events[11].created_at.isoformat(), actor="alice")) == 4
    assert shown(until=events[0].created_at.isoformat(), actor="alice") == [
        ("login-succeeded", "alice", "success")
    ]
    # The export honours the same filters.
    export = client.get("/audit/export", params={"format": "jsonl", "action": "sql-*"})
    assert [json.loads(line)["target"] for line in export.text.splitlines()] == [
        f"revision:{R1}",
        f"revision:{R2}",
    ]


def _ids(response: Any) -> list[int]:
    return [int(r["id"]) for r in _rows(response)]


@dataclass
class Panel:
    """One app (SQLite store) shared by the tests below, an admin signed in."""

    admin: TestClient
    settings: Settings

    @property
    def runtime(self) -> Runtime:
        runtime: Runtime = self.admin.app.state.runtime  # type: ignore[attr-defined]
        return runtime

    def new_client(self) -> TestClient:
        return TestClient(self.admin.app)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def panel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Panel]:
    root = tmp_path_factory.mktemp("audit-panel")
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        database_url=f"sqlite:///{root / 'target.sqlite3'}",
        admin_database_url=f"sqlite:///{root / 'store.sqlite3'}",
        var_dir=root / "var",
        backup_dir=root / "backups",
        secret_key=TEST_SECRET_KEY,
        alembic_config=REPO_ROOT / "alembic.ini",
    )
    with TestClient(create_app(settings)) as client:
        runtime = client.app.state.runtime  # type: ignore[attr-defined]
        create_user(runtime, "admin-user", "admin")
        create_user(runtime, "viewer-user", "viewer")
        assert login(client, "admin-user").status_code == 303
        yield Panel(client, settings)


BAD_FILTERS = [
    ({"action": "no-such-thing"}, "is not an audited action"),
    ({"outcome": "maybe"}, "is not an outcome"),
    ({"source": "fax"}, "is not a source"),
    ({"job": "x1"}, "is not a job number"),
    ({"since": "last tuesday"}, "is not a date or time"),
    ({"since": "2026-03-04", "until": "2026-03-03"}, "the time range is empty"),
]


def test_bad_filters_say_what_is_wrong(panel: Panel) -> None:
    for params, message in BAD_FILTERS:
        response = panel.admin.get("/audit", params=params)
        assert response.status_code == 400, params
        shown = page_soup(response).select_one(".error-message")
        assert shown is not None and message in shown.text, params
    for params in (
        {"until": "9999-12-31"},
        {"since": "0001-01-01T00:00+01:00"},
        {"before": "0"},
        {"before": str(2**64)},
        {"after": "-1"},
        {"job": "9" * 20},
    ):
        assert panel.admin.get("/audit", params=params).status_code == 400, params


def test_htmx_gets_the_results_fragment_and_a_clean_address(panel: Panel) -> None:
    full = panel.admin.get("/audit", params={"action": "login-*", "actor": ""})
    doc = page_soup(full)
    form = doc.select_one("form#audit-filters")
    assert form is not None and form["method"] == "get" and form["action"] == "/audit"
    assert form["hx-get"] == "/audit" and form["hx-target"] == "#audit-results"
    assert doc.select_one("#filter-action option[selected]")["value"] == "login-*"  # type: ignore[index]
    assert doc.select_one("#verify-form input[name=csrf_token]") is not None
    fragment = panel.admin.get(
        "/audit", params={"action": "login-*", "actor": ""}, headers={"HX-Request": "true"}
    )
    assert fragment.status_code == 200
    assert "HX-Request" in fragment.headers["vary"]
    assert fragment.headers["hx-push-url"] == "/audit?action=login-%2A"
    part = page_soup(fragment)
    assert part.select_one("html") is None and part.select_one("section#audit-results")
    actions = {r["action"] for r in _rows(fragment)}
    assert actions and all(a.startswith("login-") for a in actions)


def test_pages_go_by_id_with_before_and_after(panel: Panel) -> None:
    actor = audit.Actor("bulk", "operator", Source.CLI)
    with panel.runtime.transaction() as session:
        for i in range(120):
            audit.record(session, audit.Logout(username=f"u{i}"), actor)
    client = panel.admin
    seen: list[int] = []
    url: str | None = "/audit?actor=bulk"
    pages = 0
    while url:
        response = client.get(url)
        seen += _ids(response)
        older = page_soup(response).select_one("#page-older")
        url = str(older["href"]) if older else None
        pages += 1
    assert pages == 3
    assert len(seen) == 120 and seen == sorted(seen, reverse=True) and len(set(seen)) == 120
    # From the second page back: "newer" gives the rows just above it, never a repeat.
    second = client.get(f"/audit?actor=bulk&before={seen[49] + 1}")
    assert _ids(second) == seen[49:99]
    newer = page_soup(second).select_one("#page-newer")
    assert newer is not None and f"after={seen[49]}" in str(newer["href"])
    back = client.get(str(newer["href"]))
    assert _ids(back) == seen[:49]
    assert page_soup(back).select_one("#page-newer") is None
    older = page_soup(back).select_one("#page-older")
    assert older is not None and f"before={seen[48]}" in str(older["href"])
    assert page_soup(client.get("/audit?actor=bulk")).select_one("#page-newer") is None


def test_viewers_see_their_own_events_and_cannot_export_or_verify(panel: Panel) -> None:
    client = panel.new_client()
    login(client, "viewer-user")
    page = client.get("/audit")
    rows = _rows(page)
    assert rows and {r["actor"] for r in rows} == {"viewer-user"}
    doc = page_soup(page)
    assert doc.select_one("#audit-scope").text.strip().startswith("These are the events you")  # type: ignore[union-attr]
    assert doc.select_one("#filter-actor") is None
    assert doc.select_one("#export-csv") is None and doc.select_one("#verify-form") is None
    # Asking for another user's events shows nothing (the scope is always applied).
    assert _rows(client.get("/audit", params={"actor": "admin-user"})) == []

    assert client.get("/audit/export", params={"format": "csv"}).status_code == 403
    token = csrf_token(client)
    assert client.post("/audit/verify", data={"csrf_token": token}).status_code == 403
    only_refusals = audit_query.Filters(action="access-denied").conditions(scope="viewer-user")
    with panel.runtime.sessions() as session:
        denied = session.scalars(select(AuditEvent).where(*only_refusals)).all()
    assert [(e.details["path"], e.details["status"], e.outcome) for e in denied] == [
        ("/audit/export", 403, "denied"),
        ("/audit/verify", 403, "denied"),
    ]
    # The viewer sees their own refusals; the admin sees them too.
    assert [r["action"] for r in _rows(client.get("/audit"))][:2] == ["access-denied"] * 2
    seen_by_admin = _rows(panel.admin.get("/audit", params={"actor": "viewer-user"}))
    assert [r["action"] for r in seen_by_admin][:2] == ["access-denied"] * 2


def test_details_are_escaped_and_csv_cells_cannot_become_formulas(panel: Panel) -> None:
    hostile = '=HYPERLINK("http://x")<script>alert(1)</script>'
    anonymous = panel.new_client()
    assert anonymous.post("/login", data={"username": hostile, "password": "x"}).status_code == 401
    page = panel.admin.get("/audit", params={"action": "login-failed"})
    doc = page_soup(page)
    [row] = doc.select("#audit-events tr.audit-event")
    assert row.select("script") == []
    details = row.select_one("pre.audit-details")
    assert details is not None and json.loads(details.text)["username"] == hostile
    assert "&lt;script&gt;" in page.text
    export = panel.admin.get("/audit/export", params={"format": "csv", "action": "login-failed"})
    [record] = list(csv.DictReader(io.StringIO(export.text)))
    assert record["actor"] == "'" + hostile
    jsonl = panel.admin.get("/audit/export", params={"format": "jsonl", "action": "login-failed"})
    assert json.loads(jsonl.text)["actor"] == hostile


def test_backup_and_job_links(panel: Panel) -> None:
    with panel.runtime.transaction() as session:
        audit.record(
            session,
            audit.JobFinished(
                job_id=41,
                kind="upgrade",
                status="succeeded",
                revision_before="base",
                revision_after="abc123,def456",
                plan_fingerprint=None,
                sql_fingerprint=None,
                backup_id=7,
                error=None,
            ),
            audit.Actor("ops", "operator", Source.WEB),
            revision="abc123,def456",
        )
    response = panel.admin.get("/audit", params={"action": "job-finished", "actor": "ops"})
    row = page_soup(response).select_one("tr.audit-event")
    assert row is not None
    assert row.select_one("a.job-link")["href"] == "/jobs/41"  # type: ignore[index]
    assert row.select_one("a.backup-link")["href"] == "/backups/7"  # type: ignore[index]
    assert [a["href"] for a in row.select("a.revision-link")] == [
        "/revisions/abc123",
        "/revisions/def456",
    ]
    # A revision the project does not know is matched as written (several heads too).
    for value, found in (("abc123,def456", 1), ("abc123", 0), ("abc", 0)):
        rows = _rows(panel.admin.get("/audit", params={"revision": value}))
        assert len(rows) == found, value


def test_tampering_is_found_by_the_page_and_the_cli(
    client: TestClient, role_users: dict[str, str], settings: Settings, tmp_path: Path
) -> None:
    login(client, role_users["admin"])
    token = csrf_token(client)
    whole = client.post("/audit/verify", data={"csrf_token": token})
    doc = page_soup(whole)
    count = int(doc.select_one("#chain-count").text)  # type: ignore[union-attr]
    head = doc.select_one("#chain-head").text  # type: ignore[union-attr]
    assert doc.select_one(".chain-ok") is not None and len(head) == 64
    assert doc.select_one("button[data-copy-target='#chain-head']") is not None
    cli = InProcessCli(settings, tmp_path)
    ok = cli("audit", "verify")
    assert ok.code == 0
    assert f"{count + 1} events, head " in ok.stdout  # the page's check is an event too

    runtime = client.app.state.runtime  # type: ignore[attr-defined]
    with runtime.store_engine.begin() as connection:
        victim = connection.execute(
            text("SELECT id FROM audit_events WHERE action = 'login-succeeded' LIMIT 1")
        ).scalar_one()
        connection.execute(
            text("UPDATE audit_events SET actor = 'mallory' WHERE id = :id"), {"id": victim}
        )
    # htmx asks for the report only.
    broken = client.post(
        "/audit/verify", data={"csrf_token": token}, headers={"HX-Request": "true"}
    )
    part = page_soup(broken)
    assert part.select_one("html") is None
    link = part.select_one("#chain-report .chain-broken a#chain-broken")
    assert link is not None and link.text == str(victim)
    assert link["href"] == f"/audit?before={victim + 1}#event-{victim}"
    assert "content does not match its hash" in part.text
    bad = cli("audit", "verify")
    assert bad.code == 1
    assert f"broken at event {victim}" in bad.stdout
    with runtime.sessions() as session:
        checks = session.scalars(
            select(AuditEvent).where(AuditEvent.action == "audit-verified")
        ).all()
    assert [(e.source, e.outcome, e.details["broken_id"]) for e in checks] == [
        ("web", "success", None),
        ("cli", "success", None),
        ("web", "failure", victim),
        ("cli", "failure", victim),
    ]


def test_audit_log_json_writes_each_committed_event_once(settings: Settings) -> None:
    """AUDIT_LOG_JSON: one JSON line per event after commit, none for a rolled-back one."""
    lines: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(logs.JsonFormatter().format(record))

    events_logger = logging.getLogger("admin.audit.events")
    root = logging.getLogger()
    saved = (list(root.handlers), root.level, events_logger.disabled)
    runtime = Runtime.open(settings.model_copy(update={"audit_log_json": True}))
    try:
        logs.configure(runtime.settings)
        assert events_logger.disabled is False
        handler = Collect()
        events_logger.addHandler(handler)
        runtime.upgrade_store(audit.Actor("test", None, Source.CLI))
        lines.clear()
        with runtime.transaction() as session:
            row = audit.record(
                session, audit.Logout(username="bob"), audit.Actor("bob", "viewer", Source.WEB)
            )
            assert lines == []  # not before the commit
        with pytest.raises(RuntimeError), runtime.transaction() as session:
            audit.record(
                session, audit.Logout(username="eve"), audit.Actor("eve", None, Source.WEB)
            )
            raise RuntimeError("rolled back")
        assert len(lines) == 1
        payload = json.loads(lines[0])
        assert payload["logger"] == "admin.audit.events" and payload["level"] == "info"
        assert json.loads(payload["message"]) == audit.as_dict(row)
        logs.configure(settings)  # AUDIT_LOG_JSON off (the default): the logger is silent
        assert events_logger.disabled is True
        with runtime.transaction() as session:
            audit.record(
                session, audit.Logout(username="bob"), audit.Actor("bob", None, Source.WEB)
            )
        assert len(lines) == 1
        events_logger.removeHandler(handler)
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
        events_logger.disabled = saved[2]
        runtime.close()


def test_conflicts_are_audited_like_refusals(panel: Panel) -> None:
    """A 409, whether a route renders it itself or the error handler does, is audited once."""
    client = panel.admin
    token = csrf_token(client)
    mark = last_id(panel.runtime)
    taken = client.post("/users", data={"csrf_token": token, "username": "viewer-user"})
    assert taken.status_code == 409
    # The first admin is disabled; admin-user is then the last admin and may not step down.
    assert client.post("/users/admin/disable", data={"csrf_token": token}).status_code == 200
    last = client.post("/users/admin-user/role", data={"csrf_token": token, "role": "viewer"})
    assert last.status_code == 409
    events = [e for e in events_after(panel.runtime, mark) if e.action == "access-denied"]
    assert [(e.actor, e.details["path"], e.details["status"], e.outcome) for e in events] == [
        ("admin-user", "/users", 409, "denied"),
        ("admin-user", "/users/admin-user/role", 409, "denied"),
    ]
    assert "exists already" in events[0].details["reason"]
    assert "last active admin" in events[1].details["reason"]
