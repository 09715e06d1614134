"""Jobs over HTTP (TestClient): Apply, confirmations, refusals, Cancel, the pages, the API."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from helpers import PASSWORD, create_user, csrf_token, login, page_soup
from jobs_support import INJECTED
from projects import Rev, write_revision
from sqlalchemy import select

from admin import audit, migrations
from admin.auth import tokens
from admin.config import Settings
from admin.jobs import queue
from admin.store.models import AuditEvent, Job, JobLine, Role, Source, utcnow
from admin.web.app import create_app
from admin.web.livelog import line_html, resume_after

pytestmark = pytest.mark.postgres

LINEAR = [
    Rev("aaa111", None, "create a", "op.create_table('a', sa.Column('id', sa.Integer))"),
    Rev("bbb222", "aaa111", "create b", "op.create_table('b', sa.Column('id', sa.Integer))",
        "op.drop_table('b')"),
    Rev("ccc333", "bbb222", "create c", "op.create_table('c', sa.Column('id', sa.Integer))",
        "op.drop_table('c')"),
]  # fmt: skip
SLEEPY = [
    LINEAR[0],
    Rev("bbb222", "aaa111", "slow", "op.execute('SELECT pg_sleep(30)')"),
    Rev("ccc333", "bbb222", "after", "op.execute('SELECT 1')"),
]


class Jobs:
    """An app on a PostgreSQL target with a small project, and one client per role."""

    def __init__(self, app: Any, ini: Path) -> None:
        self.app = app
        self.ini = ini
        self.runtime = app.state.runtime
        self.runner = app.state.runner
        self.clients: dict[str, TestClient] = {}

    @property
    def url(self) -> str:
        return str(self.runtime.settings.database_url)

    def as_role(self, role: str) -> TestClient:
        """A client signed in as ``ROLE-user`` (made on first use)."""
        if role not in self.clients:
            create_user(self.runtime, f"{role}-user", Role(role))
            client = TestClient(self.app)
            assert login(client, f"{role}-user").status_code == 303
            self.clients[role] = client
        return self.clients[role]

    def fingerprint(self, target: str = "head", direction: str = "upgrade") -> str:
        project = migrations.open_project(self.ini)
        _, current = migrations.read_current(project, self.url)
        plan = migrations.make_plan(
            project, migrations.Direction(direction), target, current, max_age=0
        )
        return plan.fingerprint

    def post(self, client: TestClient, path: str, **form: str) -> Any:
        return client.post(
            path, data={"csrf_token": csrf_token(client), **form}, follow_redirects=False
        )

    def apply(self, client: TestClient, target: str = "head", **form: str) -> Any:
        values = {"kind": "upgrade", "target": target, "plan_fingerprint": self.fingerprint(target)}
        return self.post(client, "/jobs", **{**values, **form})

    def job(self, job_id: int) -> Job:
        with self.runtime.reads() as session:
            return queue.get(session, job_id)

    def wait(self, job_id: int) -> Job:
        assert self.runner.wait(job_id, timeout=60)
        return self.job(job_id)

    def wait_for_line(self, job_id: int, needle: str) -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with self.runtime.reads() as session:
                if any(needle in line.text for line in queue.lines(session, job_id, 0, 1000)):
                    return
            time.sleep(0.05)
        raise AssertionError(f"no line with {needle!r}")

    def audit(self, action: str) -> list[AuditEvent]:
        with self.runtime.reads() as session:
            query = select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.id)
            return list(session.scalars(query))


@pytest.fixture
def make_jobs(
    make_settings: Callable[..., Settings], alembic_project: Callable[..., Path], pg_databases: Any
) -> Iterator[Callable[..., Jobs]]:
    opened: list[TestClient] = []

    def make(revisions: list[Rev] = LINEAR, **settings: Any) -> Jobs:
        ini = alembic_project(revisions)
        values = {
            "database_url": pg_databases.create("webjob"),
            "alembic_config": ini,
            "job_heartbeat": 0.2,
            "job_cancel_grace": 3.0,
            **settings,
        }
        client = TestClient(create_app(make_settings(**values)))
        client.__enter__()
        opened.append(client)
        return Jobs(client.app, ini)

    yield make
    for client in opened:
        client.__exit__(None, None, None)
    migrations.dispose_engines()


def _message(response: Any) -> str:
    found = page_soup(response).select_one(".error-message")
    assert found is not None, response.text[:500]
    return found.text


# Apply.


def test_operator_applies_and_the_job_page_shows_the_run(make_jobs: Callable[..., Jobs]) -> None:
    jobs = make_jobs()
    operator = jobs.as_role("operator")
    fingerprint = jobs.fingerprint()
    answer = jobs.apply(operator)
    assert answer.status_code == 303
    assert re.fullmatch(r"/jobs/\d+", answer.headers["location"])
    job_id = int(answer.headers["location"].rsplit("/", 1)[1])
    done = jobs.wait(job_id)
    assert done.status == "succeeded", done.error
    assert done.plan_fingerprint == fingerprint and done.source == "web"
    assert done.requested_by == "operator-user"

    page = operator.get(answer.headers["location"])
    assert page.status_code == 200
    soup = page_soup(page)
    assert "Job" in soup.select_one("#messages .notice").text  # type: ignore[union-attr]
    assert soup.select_one("#job-status .status-badge").text == "succeeded"  # type: ignore[union-attr]
    assert soup.select_one("#job-steps").text == "3 of 3"  # type: ignore[union-attr]
    progress = soup.select_one("#job-progress")
    assert progress is not None and progress["value"] == "3" and progress["max"] == "3"
    plan_links = [a["href"] for a in soup.select("#job-plan a")]
    assert plan_links == ["/revisions/aaa111", "/revisions/bbb222", "/revisions/ccc333"]
    assert [a.text for a in soup.select("#job-revision-after a")] == ["ccc333"]
    assert soup.select_one("#job-backup").text == "none"  # type: ignore[union-attr]
    assert "operator-user" in soup.select_one("#job-requested-by").text  # type: ignore[union-attr]
    # A finished job's page is complete as sent: no stream, every line rendered.
    assert soup.select_one("#job[sse-connect]") is None
    rendered = soup.select("#job-log .log-line")
    with jobs.runtime.reads() as session:
        stored = queue.lines(session, job_id, 0, 10_000)
    assert [int(div["data-seq"]) for div in rendered] == [line.seq for line in stored]
    assert any("CREATE TABLE c" in div.text for div in rendered)
    assert soup.select_one("#cancel-job") is None
    assert [e.job_id for e in jobs.audit("job-queued")] == [job_id]


def test_htmx_apply_gets_hx_redirect(make_jobs: Callable[..., Jobs]) -> None:
    jobs = make_jobs()
    operator = jobs.as_role("operator")
    answer = operator.post(
        "/jobs",
        data={
            "kind": "upgrade",
            "target": "aaa111",
            "plan_fingerprint": jobs.fingerprint("aaa111"),
        },
        headers={"HX-Request": "true", "X-CSRF-Token": csrf_token(operator)},
    )
    assert answer.status_code == 200
    assert re.fullmatch(r"/jobs/\d+", answer.headers["hx-redirect"])
    assert jobs.wait(int(answer.headers["hx-redirect"].rsplit("/", 1)[1])).status == "succeeded"


def test_viewer_sees_no_controls_and_is_refused(make_jobs: Callable[..., Jobs]) -> None:
    jobs = make_jobs(SLEEPY)
    operator = jobs.as_role("operator")
    job_id = int(jobs.apply(operator).headers["location"].rsplit("/", 1)[1])
    jobs.wait_for_line(job_id, "pg_sleep")
    viewer = jobs.as_role("viewer")
    try:
        page = page_soup(viewer.get(f"/jobs/{job_id}"))
        assert page.select_one("#job-status .status-badge").text == "running"  # type: ignore[union-attr]
        assert page.select_one("#cancel-job") is None
        assert page.select_one("form[action='/jobs']") is None
        # The operator's page has the Cancel button.
        assert page_soup(operator.get(f"/jobs/{job_id}")).select_one("#cancel-job") is not None

        denied = jobs.post(viewer, "/jobs", kind="upgrade", target="head", plan_fingerprint="x")
        assert denied.status_code == 403
        assert "operator role" in _message(denied)
        cancel = jobs.post(viewer, f"/jobs/{job_id}/cancel")
        assert cancel.status_code == 403
        refused = [e for e in jobs.audit("access-denied") if e.actor == "viewer-user"]
        assert {e.details["path"] for e in refused} == {"/jobs", f"/jobs/{job_id}/cancel"}
        assert all(e.outcome == "denied" and e.details["status"] == 403 for e in refused)
        assert jobs.job(job_id).cancel_requested_at is None
        # Without the CSRF token even an operator is refused (and that is audited too).
        forged = operator.post(
            "/jobs", data={"kind": "upgrade", "target": "head"}, follow_redirects=False
        )
        assert forged.status_code == 403
    finally:
        jobs.runner.cancel(job_id, audit.Actor("tests", None, Source.CLI))
        jobs.wait(job_id)


def test_a_second_job_is_refused_naming_the_first_then_cancel(
    make_jobs: Callable[..., Jobs],
) -> None:
    jobs = make_jobs(SLEEPY)
    operator = jobs.as_role("operator")
    first = jobs.apply(operator)
    job_id = int(first.headers["location"].rsplit("/", 1)[1])
    jobs.wait_for_line(job_id, "pg_sleep")
    page = page_soup(operator.get(f"/jobs/{job_id}"))
    live = page.select_one("#job")
    assert live is not None and live["hx-ext"] == "sse"
    last = page.select("#job-log .log-line")[-1]["data-seq"]
    assert live["sse-connect"] == f"/jobs/{job_id}/events?after={last}"
    assert page.select_one("#job-log")["sse-swap"] == "line"  # type: ignore[index]
    # The status block is fetched again at the end and when the stream says so.
    live = page.select_one("#job-live")
    assert live is not None and live["hx-get"] == f"/jobs/{job_id}"
    assert live.select_one("#job-status") is not None and live["hx-swap"] == "innerHTML"
    triggers = [t.strip() for t in str(live["hx-trigger"]).split(",")]
    assert triggers == ["sse:done", "sse:status", "job:settle"]
    # A trigger while a fetch is in flight is queued behind it (htmx would drop it).
    assert live["hx-sync"] == "this:queue last"

    admin = jobs.as_role("admin")
    second = admin.post(
        "/jobs",
        data={
            "csrf_token": csrf_token(admin),
            "kind": "upgrade",
            "target": "head",
            "plan_fingerprint": jobs.fingerprint(),
        },
        follow_redirects=False,
    )
    assert second.status_code == 409
    soup = page_soup(second)
    assert soup.select_one(".error-title").text == "Another job is running"  # type: ignore[union-attr]
    assert f"job {job_id}" in _message(second) and "operator-user" in _message(second)
    refused = jobs.audit("job-refused")
    assert refused[-1].actor == "admin-user" and f"job {job_id}" in refused[-1].details["reason"]

    cancelled = jobs.post(operator, f"/jobs/{job_id}/cancel")
    assert cancelled.status_code == 303
    assert cancelled.headers["location"] == f"/jobs/{job_id}"
    done = jobs.wait(job_id)
    assert done.status == "cancelled" and done.cancel_requested_by == "operator-user"
    assert done.revision_after == "aaa111"
    flashed = page_soup(operator.get(f"/jobs/{job_id}"))
    assert "being cancelled" in flashed.select_one("#messages").text  # type: ignore[union-attr]
    assert flashed.select_one("#job-status .status-badge").text == "cancelled"  # type: ignore[union-attr]

    # Cancelling again: 409, said and audited.
    again = jobs.post(operator, f"/jobs/{job_id}/cancel")
    assert again.status_code == 409
    assert "nothing to cancel" in _message(again)
    denied = jobs.audit("access-denied")[-1]
    assert denied.details["status"] == 409 and denied.actor == "operator-user"


def test_a_stale_plan_is_refused_with_409(make_jobs: Callable[..., Jobs]) -> None:
    jobs = make_jobs()
    operator = jobs.as_role("operator")
    shown = jobs.fingerprint()
    versions = jobs.ini.parent / "migrations" / "versions"
    write_revision(versions, Rev("ddd444", "ccc333", "deployed meanwhile"))
    answer = jobs.post(operator, "/jobs", kind="upgrade", target="head", plan_fingerprint=shown)
    assert answer.status_code == 409
    assert page_soup(answer).select_one(".error-title").text == "Plan changed"  # type: ignore[union-attr]
    assert "review the new plan" in _message(answer)
    assert "plan changed" in jobs.audit("job-refused")[-1].details["reason"]
    with jobs.runtime.reads() as session:
        assert session.scalars(select(Job)).all() == []


def test_bad_submissions_say_why(make_jobs: Callable[..., Jobs]) -> None:
    jobs = make_jobs()
    operator = jobs.as_role("operator")
    missing = jobs.post(operator, "/jobs", kind="upgrade", target="head")
    assert missing.status_code == 400 and "preview the upgrade" in _message(missing)
    kind = jobs.post(operator, "/jobs", kind="restore", target="head", plan_fingerprint="x")
    assert kind.status_code == 400 and "not started here" in _message(kind)
    unknown = jobs.post(operator, "/jobs", kind="upgrade", target="nope", plan_fingerprint="x")
    assert unknown.status_code == 404 and "nope" in _message(unknown)
    shell = jobs.post(operator, "/jobs", kind="upgrade", target="head; rm -rf /")
    assert shell.status_code == 400
    # An htmx form gets the message as a fragment for the page's message area.
    fragment = operator.post(
        "/jobs",
        data={"kind": "upgrade", "target": "head"},
        headers={"HX-Request": "true", "X-CSRF-Token": csrf_token(operator)},
    )
    assert fragment.status_code == 400 and fragment.headers["hx-retarget"] == "#messages"
    assert len(jobs.audit("job-refused")) == 5


# Downgrades: typed confirmation, and in production the password.


def test_downgrade_needs_the_target_typed_again(make_jobs: Callable[..., Jobs]) -> None:
    jobs = make_jobs()
    operator = jobs.as_role("operator")
    upgraded = int(jobs.apply(operator).headers["location"].rsplit("/", 1)[1])
    assert jobs.wait(upgraded).status == "succeeded"

    def downgrade(target: str, typed: str) -> Any:
        fingerprint = jobs.fingerprint(target, "downgrade")
        return jobs.post(
            operator,
            "/jobs",
            kind="downgrade",
            target=target,
            plan_fingerprint=fingerprint,
            confirm_target=typed,
        )

    for typed, why in (("", "type the target revision"), ("aaa111", "does not match")):
        refused = downgrade("-1", typed)
        assert refused.status_code == 400
        assert why in _message(refused)
    assert "'bbb222', where the database will be" in _message(refused)
    reasons = [e.details["reason"] for e in jobs.audit("job-refused")]
    assert len(reasons) == 2 and "does not match" in reasons[1]
    # Where the database will be (what the preview asks to type) confirms "-1" ...
    accepted = downgrade("-1", "bbb222")
    assert accepted.status_code == 303, _message(accepted)
    done = jobs.wait(int(accepted.headers["location"].rsplit("/", 1)[1]))
    assert done.status == "succeeded" and done.revision_after == "bbb222"
    # ... and the full id of a prefix confirms it as well as the prefix itself.
    accepted = downgrade("aaa1", "aaa111")
    assert accepted.status_code == 303, _message(accepted)
    done = jobs.wait(int(accepted.headers["location"].rsplit("/", 1)[1]))
    assert done.status == "succeeded" and done.revision_after == "aaa111"
    # The dashboard lists them, newest first.
    recent = page_soup(operator.get("/")).select("#recent-jobs tr[data-job-id]")
    assert [int(tr["data-job-id"]) for tr in recent] == [done.id, done.id - 1, upgraded]
    assert "succeeded" in recent[0].text


def test_production_downgrade_needs_the_password(make_jobs: Callable[..., Jobs]) -> None:
    # (Production requires a rehearsal by default: tests/test_rehearsal_web.py covers it.)
    jobs = make_jobs(environment="production", backup_before_migrate=False, require_rehearsal=False)
    operator = jobs.as_role("operator")
    # The preview's form asks for the password on every Apply in production: when sent
    # with an upgrade, it is checked too.
    typo = jobs.apply(operator, password="not-my-password-1")
    assert typo.status_code == 403 and "not correct" in _message(typo)
    upgraded = int(jobs.apply(operator, password=PASSWORD).headers["location"].rsplit("/", 1)[1])
    assert jobs.wait(upgraded).status == "succeeded"
    form = {
        "kind": "downgrade",
        "target": "-1",
        "confirm_target": "-1",
        "plan_fingerprint": jobs.fingerprint("-1", "downgrade"),
    }
    without = jobs.post(operator, "/jobs", **form)
    assert without.status_code == 403 and "your own password" in _message(without)
    wrong = jobs.post(operator, "/jobs", password="not-my-password-1", **form)
    assert wrong.status_code == 403 and "not correct" in _message(wrong)
    denied = [e for e in jobs.audit("access-denied") if e.details["path"] == "/jobs"]
    assert len(denied) == 3 and all(e.actor == "operator-user" for e in denied)
    with jobs.runtime.reads() as session:
        assert len(session.scalars(select(Job)).all()) == 1
    right = jobs.post(operator, "/jobs", password=PASSWORD, **form)
    assert right.status_code == 303
    assert jobs.wait(int(right.headers["location"].rsplit("/", 1)[1])).revision_after == "bbb222"


# The pages.


def _add_jobs(jobs: Jobs, count: int) -> list[int]:
    """Finished jobs straight in the store, alternating users, kinds and statuses."""
    ids = []
    with jobs.runtime.transaction() as session:
        for i in range(count):
            job = Job(
                kind=["upgrade", "downgrade", "stamp"][i % 3],
                status=["succeeded", "failed"][i % 2],
                target_key=f"t{i}",
                target_display="postgresql://x/y",
                target_revision="head",
                requested_by=["alice", "bob"][i % 2],
                source="web",
                created_at=utcnow(),
            )
            session.add(job)
            session.flush()
            ids.append(job.id)
    return ids


def test_jobs_list_filters_pages_and_htmx_fragment(make_jobs: Callable[..., Jobs]) -> None:
    jobs = make_jobs()
    ids = _add_jobs(jobs, 60)
    viewer = jobs.as_role("viewer")
    soup = page_soup(viewer.get("/jobs"))
    rows = [int(tr["data-job-id"]) for tr in soup.select("#jobs tbody tr")]
    assert rows == sorted(ids, reverse=True)[:50]
    older = soup.select_one("#older-jobs")
    assert older is not None and older["href"] == f"/jobs?before={rows[-1]}"
    second = page_soup(viewer.get(str(older["href"])))
    assert [int(tr["data-job-id"]) for tr in second.select("#jobs tbody tr")] == sorted(ids)[:10][
        ::-1
    ]
    assert second.select_one("#older-jobs") is None
    assert second.select_one("#newest-jobs") is not None

    filtered = page_soup(viewer.get("/jobs", params={"status": "failed", "user": "bob"}))
    cells = filtered.select("#jobs tbody tr")
    assert len(cells) == 30
    assert {tr.select_one(".status-badge").text for tr in cells} == {"failed"}  # type: ignore[union-attr]
    assert filtered.select_one("#filter-status option[selected]")["value"] == "failed"  # type: ignore[index]
    assert filtered.select_one("#filter-user")["value"] == "bob"  # type: ignore[index]
    stamps = page_soup(viewer.get("/jobs?kind=stamp&status=&user="))
    assert {tr.select_one(".job-kind").text for tr in stamps.select("#jobs tbody tr")} == {"stamp"}  # type: ignore[union-attr]
    none = page_soup(viewer.get("/jobs?user=nobody"))
    assert "No job matches" in none.select_one("#no-jobs").text  # type: ignore[union-attr]

    fragment = viewer.get("/jobs?status=succeeded", headers={"HX-Request": "true"})
    assert "<html" not in fragment.text and "HX-Request" in fragment.headers["vary"]
    assert page_soup(fragment).select_one("#job-list") is not None
    assert viewer.get("/jobs?status=bogus").status_code == 400


def test_job_page_escapes_log_lines_and_htmx_gets_the_status_only(
    make_jobs: Callable[..., Jobs],
) -> None:
    jobs = make_jobs()
    [job_id] = _add_jobs(jobs, 1)
    with jobs.runtime.transaction() as session:
        session.add(JobLine(job_id=job_id, seq=1, text=INJECTED, level="sql"))
        session.add(JobLine(job_id=job_id, seq=2, text="two\nlines", level="bogus level"))
    viewer = jobs.as_role("viewer")
    soup = page_soup(viewer.get(f"/jobs/{job_id}"))
    log = soup.select_one("#job-log")
    assert log is not None and log.select("img") == []
    first, second = log.select(".log-line")
    assert first.text == INJECTED and "level-sql" in first["class"]
    assert second.text == "two\nlines" and "level-info" in second["class"]
    status = viewer.get(f"/jobs/{job_id}", headers={"HX-Request": "true"})
    assert status.status_code == 200 and "<html" not in status.text
    fragment = page_soup(status)
    assert (
        fragment.select_one("#job-status") is not None and fragment.select_one("#job-log") is None
    )
    assert viewer.get("/jobs/9999").status_code == 404


def test_line_fragments_and_resume_point() -> None:
    fragment = str(line_html(7, "sql", "stdout", "a\r\nb\nc\rd <b>&"))
    assert "\n" not in fragment and "\r" not in fragment
    assert fragment == (
        '<div class="log-line level-sql stream-stdout" id="line-7" data-seq="7">'
        "a&#10;b&#10;c&#10;d &lt;b&gt;&amp;</div>"
    )
    assert 'class="log-line level-info stream-stdout"' in str(line_html(1, "x y", 'a"b', ""))
    assert resume_after(0, None) == 0
    assert resume_after(5, "3") == 5
    assert resume_after(2, "9") == 9
    assert resume_after(2, "nine") == 2
    assert resume_after(2, "-4") == 2


# The API.


def _token(jobs: Jobs, username: str) -> str:
    with jobs.runtime.transaction() as session:
        created = tokens.create(
            session,
            jobs.runtime.settings,
            audit.Actor("tests", None, Source.CLI),
            name="ci",
            username=username,
        )
        return created.secret


def test_api_submit_list_read_and_log(make_jobs: Callable[..., Jobs]) -> None:
    jobs = make_jobs()
    jobs.as_role("operator")
    jobs.as_role("viewer")
    bearer = {"Authorization": f"Bearer {_token(jobs, 'operator-user')}"}
    program = TestClient(jobs.app)
    created = program.post(
        "/api/v1/jobs",
        json={"kind": "upgrade", "target": "head", "plan_fingerprint": jobs.fingerprint()},
        headers=bearer,
    )
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["status"] in ("queued", "running") and body["source"] == "api"
    assert created.headers["location"] == f"/api/v1/jobs/{body['id']}"
    assert body["plan"] == ["aaa111", "bbb222", "ccc333"] and body["url"] == f"/jobs/{body['id']}"
    jobs.wait(body["id"])

    one = program.get(f"/api/v1/jobs/{body['id']}", headers=bearer).json()
    assert one["status"] == "succeeded" and one["revision_after"] == "ccc333"
    assert one["duration_seconds"] > 0
    listing = program.get("/api/v1/jobs", params={"status": "succeeded"}, headers=bearer).json()
    assert [j["id"] for j in listing["jobs"]] == [body["id"]] and listing["next_before"] is None
    log = program.get(f"/api/v1/jobs/{body['id']}/log", headers=bearer).json()
    assert log["complete"] and [line["seq"] for line in log["lines"]] == list(
        range(1, len(log["lines"]) + 1)
    )
    tail = program.get(
        f"/api/v1/jobs/{body['id']}/log", params={"after": 3, "limit": 2}, headers=bearer
    ).json()
    assert [line["seq"] for line in tail["lines"]] == [4, 5] and tail["next_after"] == 5
    assert not tail["complete"]

    # Again: nothing to do (400 JSON); a stale plan (409 JSON); a viewer (403); no token (401).
    again = program.post("/api/v1/jobs", json={"kind": "upgrade", "target": "head"}, headers=bearer)
    assert again.status_code == 400 and "nothing to upgrade" in again.json()["detail"]
    stale = program.post(
        "/api/v1/jobs",
        json={"kind": "downgrade", "target": "-1", "confirm_target": "-1", "plan_fingerprint": "0"},
        headers=bearer,
    )
    assert stale.status_code == 409 and stale.json()["title"] == "Plan changed"
    unconfirmed = program.post(
        "/api/v1/jobs", json={"kind": "downgrade", "target": "-1"}, headers=bearer
    )
    assert unconfirmed.status_code == 400
    viewer = {"Authorization": f"Bearer {_token(jobs, 'viewer-user')}"}
    refused = program.post("/api/v1/jobs", json={"kind": "upgrade", "target": "x"}, headers=viewer)
    assert refused.status_code == 403
    assert program.get("/api/v1/jobs", headers=viewer).status_code == 200
    assert program.get("/api/v1/jobs").status_code == 401
    invalid = program.post("/api/v1/jobs", json={"kind": "drop", "target": "x"}, headers=bearer)
    assert invalid.status_code == 400 and invalid.json()["title"] == "Invalid input"
    assert program.get("/api/v1/jobs/999", headers=bearer).status_code == 404


def test_api_with_a_session_needs_the_csrf_header(make_jobs: Callable[..., Jobs]) -> None:
    jobs = make_jobs()
    operator = jobs.as_role("operator")
    body = {"kind": "upgrade", "target": "head", "plan_fingerprint": jobs.fingerprint()}
    assert operator.post("/api/v1/jobs", json=body).status_code == 403
    created = operator.post(
        "/api/v1/jobs", json=body, headers={"X-CSRF-Token": csrf_token(operator)}
    )
    assert created.status_code == 201 and created.json()["source"] == "web"
    jobs.wait(created.json()["id"])


def test_openapi_documents_the_jobs_api(client: TestClient) -> None:
    schema = client.get("/api/v1/openapi.json").json()
    paths = schema["paths"]
    for path in (
        "/api/v1/jobs",
        "/api/v1/jobs/{job_id}",
        "/api/v1/jobs/{job_id}/log",
        "/api/v1/jobs/{job_id}/events",
    ):
        assert path in paths
    assert {"JobOut", "JobPage", "JobCreate", "LogPage"} <= set(schema["components"]["schemas"])
    assert (
        "text/event-stream"
        in paths["/api/v1/jobs/{job_id}/events"]["get"]["responses"]["200"]["content"]
    )
