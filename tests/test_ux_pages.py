"""An operator's pages over HTTP (TestClient, a SQLite store and target, real workers):
refusals of Apply shown in place, the dashboard's last migration apart from the recent jobs,
the running-job banner, job pages by kind, kinds named in refusals, quick-action links."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from helpers import create_user, csrf_token, login, page_soup
from projects import Rev
from sqlalchemy import select

from admin import audit, migrations
from admin.config import Settings
from admin.errors import Conflict
from admin.jobs import JobRequest, queue
from admin.store.models import AuditEvent, Job, JobKind, JobStatus, Role, Source
from admin.web.app import create_app

LINEAR = [
    Rev("aaa111", None, "create a", "op.create_table('a', sa.Column('id', sa.Integer))",
        "op.drop_table('a')"),
    Rev("bbb222", "aaa111", "create b", "op.create_table('b', sa.Column('id', sa.Integer))",
        "op.drop_table('b')"),
    Rev("ccc333", "bbb222", "create c", "op.create_table('c', sa.Column('id', sa.Integer))",
        "op.drop_table('c')"),
]  # fmt: skip
TESTS = audit.Actor("tests", "operator", Source.CLI)


class Panel:
    """An app on a SQLite target with LINEAR, an operator signed in."""

    def __init__(self, client: TestClient, ini: Path) -> None:
        self.client = client
        self.ini = ini
        self.runtime = client.app.state.runtime  # type: ignore[attr-defined]
        self.runner = client.app.state.runner  # type: ignore[attr-defined]

    @property
    def url(self) -> str:
        return str(self.runtime.settings.database_url)

    def plan(self, direction: str, target: str) -> migrations.Plan:
        project = migrations.open_project(self.ini)
        _, current = migrations.read_current(project, self.url)
        return migrations.make_plan(
            project, migrations.Direction(direction), target, current, max_age=0
        )

    def preview(self, direction: str, target: str) -> Any:
        answer = self.client.get("/preview", params={"direction": direction, "target": target})
        assert answer.status_code == 200, answer.text[:300]
        return answer

    def post_job(self, **form: str) -> Any:
        data = {"csrf_token": csrf_token(self.client), **form}
        return self.client.post("/jobs", data=data, follow_redirects=False)

    def run(self, kind: str, target: str, confirm: str = "") -> Job:
        """A job through the Apply form, to its end."""
        fingerprint = self.plan(kind, target).fingerprint if kind != "stamp" else ""
        answer = self.post_job(
            kind=kind, target=target, plan_fingerprint=fingerprint, confirm_target=confirm
        )
        assert answer.status_code == 303, answer.text[:500]
        job_id = int(answer.headers["location"].rsplit("/", 1)[1])
        assert self.runner.wait(job_id, timeout=60)
        with self.runtime.reads() as session:
            return queue.get(session, job_id)

    def events(self, action: str) -> list[AuditEvent]:
        with self.runtime.reads() as session:
            query = select(AuditEvent).where(AuditEvent.action == action)
            return list(session.scalars(query.order_by(AuditEvent.id)))


@pytest.fixture
def make_panel(
    make_settings: Callable[..., Settings], alembic_project: Callable[..., Path]
) -> Iterator[Callable[..., Panel]]:
    opened: list[TestClient] = []

    def make(**settings: Any) -> Panel:
        ini = alembic_project(LINEAR)
        client = TestClient(create_app(make_settings(alembic_config=ini, **settings)))
        client.__enter__()
        opened.append(client)
        create_user(client.app.state.runtime, "ops", Role.OPERATOR)  # type: ignore[attr-defined]
        assert login(client, "ops").status_code == 303
        panel = Panel(client, ini)
        migrations.create_database(panel.url)
        return panel

    yield make
    for client in opened:
        client.__exit__(None, None, None)
    migrations.dispose_engines()


def _finished(panel: Panel, request: JobRequest, status: JobStatus = JobStatus.SUCCEEDED) -> Job:
    """A job recorded and ended through the queue's own functions (no worker needed)."""
    job = queue.submit(panel.runtime, request, TESTS)
    return queue.finish(panel.runtime, job.id, status, revision_after=None, error=None, exit_code=0)


def test_a_wrong_confirmation_keeps_the_preview_and_what_was_typed(
    make_panel: Callable[..., Panel],
) -> None:
    panel = make_panel()
    assert panel.run("upgrade", "head").status == "succeeded"
    plan = panel.plan("downgrade", "aaa111")
    answer = panel.post_job(
        kind="downgrade", target="aaa111", plan_fingerprint=plan.fingerprint,
        confirm_target="aaa11 typo",
    )  # fmt: skip
    assert answer.status_code == 400
    page = page_soup(answer)
    refused = page.select_one("#apply #apply-refused")
    assert refused is not None and "does not match" in refused.select_one(".error-message").text
    # The same plan again, with its form and the typed value (and the preview form filled).
    assert [li["data-revision"] for li in page.select("#plan-steps li")] == ["ccc333", "bbb222"]
    assert page.select_one("#plan-fingerprint").text == plan.fingerprint
    assert page.select_one("#apply-form #confirm_target")["value"] == "aaa11 typo"
    assert page.select_one("#preview-form #target")["value"] == "aaa111"
    assert page.select_one("#preview-form option[selected]")["value"] == "downgrade"
    # Recorded once, by the service that refused it; nothing ran.
    assert len(panel.events("job-refused")) == 1 and panel.events("access-denied") == []
    assert len(panel.events("job-queued")) == 1


def test_a_changed_plan_says_what_changed_and_links_the_new_plan(
    make_panel: Callable[..., Panel],
) -> None:
    panel = make_panel()
    assert panel.run("upgrade", "head").status == "succeeded"
    panel.preview("downgrade", "base")  # what the operator was shown (audited)
    shown = panel.plan("downgrade", "base")
    # Meanwhile the database moves (someone stamps it back one revision).
    assert panel.run("stamp", "bbb222", confirm="bbb222").revision_after == "bbb222"
    answer = panel.post_job(
        kind="downgrade", target="base", plan_fingerprint=shown.fingerprint, confirm_target="base"
    )
    assert answer.status_code == 409
    page = page_soup(answer)
    assert page.select_one("#apply-refused .error-title").text == "Plan changed"
    moved = page.select_one("#change-database-moved").text
    assert "it was at ccc333" in moved and "it is now at bbb222" in moved
    assert "ccc333" in page.select_one("#change-removed").text
    assert page.select_one("#review-new-plan")["href"] == "/preview?direction=downgrade&target=base"
    assert page.select_one("#apply-form") is None  # no Apply of a plan nobody has seen

    # A file edited since: the same revisions, another fingerprint.
    panel.preview("upgrade", "head")
    shown = panel.plan("upgrade", "head")
    revision = next((panel.ini.parent / "migrations" / "versions").glob("ccc333*.py"))
    revision.write_text(revision.read_text() + "\n# edited after the review\n")
    answer = panel.post_job(kind="upgrade", target="head", plan_fingerprint=shown.fingerprint)
    assert answer.status_code == 409
    page = page_soup(answer)
    assert page.select_one("#change-edited") is not None
    assert page.select_one("#change-database-moved, #change-added, #change-removed") is None


def test_a_wrong_password_in_production_is_shown_in_place_and_audited_once(
    make_panel: Callable[..., Panel],
) -> None:
    panel = make_panel(environment="production", backup_before_migrate=False)
    plan = panel.plan("upgrade", "head")
    answer = panel.post_job(
        kind="upgrade", target="head", plan_fingerprint=plan.fingerprint, password="wrong-one-1"
    )
    assert answer.status_code == 403
    page = page_soup(answer)
    assert "not correct" in page.select_one("#apply-refused .error-message").text
    assert page.select_one("#apply-form") is not None
    assert page.select("input[type=password][value]") == []  # a password is never sent back
    [denied] = panel.events("access-denied")
    assert denied.details["status"] == 403 and denied.actor == "ops"


def test_the_last_migration_stays_on_the_dashboard_apart_from_recent_jobs(
    make_panel: Callable[..., Panel],
) -> None:
    panel = make_panel()
    upgrade = panel.run("upgrade", "head")
    verifies = [
        _finished(panel, JobRequest(JobKind.VERIFY, options={"backup_id": n})) for n in range(5)
    ]
    page = page_soup(panel.client.get("/"))
    recent = [int(tr["data-job-id"]) for tr in page.select("#recent-jobs tr[data-job-id]")]
    assert recent == [job.id for job in reversed(verifies)]  # five verifications fill it
    last = page.select_one("#last-migration [data-job-id]")
    assert last is not None and int(last["data-job-id"]) == upgrade.id
    assert page.select_one("#last-migration-link")["href"] == f"/jobs/{upgrade.id}"
    assert "upgrade to head" in page.select_one("#last-migration").text
    # Its way back, through the preview; and the dashboard's own one.
    assert page.select_one("#last-migration #rollback-job")["href"] == (
        "/preview?direction=downgrade&target=base"
    )
    assert page.select_one("#rollback-last")["href"] == "/preview?direction=downgrade&target=-1"
    assert "verification of backup 4" in page.select_one("#recent-jobs").text


def test_a_running_job_is_announced_on_every_other_page(make_panel: Callable[..., Panel]) -> None:
    panel = make_panel()
    job = queue.submit(
        panel.runtime, JobRequest(JobKind.BACKUP, options={"format": "custom"}), TESTS
    )
    for path in ("/revisions", "/jobs", "/backups", "/audit", "/preview"):
        banner = page_soup(panel.client.get(path)).select_one("#running-banner")
        assert banner is not None and banner["hx-get"].startswith("/jobs/active?here=")
        assert banner["hx-trigger"] == "every 5s"  # it goes away with the job
        shown = banner.select_one("[data-job-id]")
        assert shown is not None and int(shown["data-job-id"]) == job.id, path
        assert "backup" in shown.text and "tests" in shown.text
        assert banner.select_one("a")["href"] == f"/jobs/{job.id}"
    # The dashboard says it in its state, which refreshes itself.
    dashboard = page_soup(panel.client.get("/"))
    assert dashboard.select_one("#running-banner") is None
    assert int(dashboard.select_one("#state #running-now")["data-job-id"]) == job.id
    # The job's own page does not announce itself; the banner goes once the job ends.
    own = page_soup(panel.client.get("/jobs/active", params={"here": f"/jobs/{job.id}"}))
    assert own.select_one("[data-job-id]") is None
    queue.finish(
        panel.runtime, job.id, JobStatus.FAILED, revision_after=None, error="x", exit_code=1
    )
    after = page_soup(panel.client.get("/jobs/active", params={"here": "/revisions"}))
    assert after.select_one("#running-banner") is not None
    assert after.select_one("[data-job-id]") is None
    # Nothing runs: no banner and no polling (an open tab must not keep a session alive).
    idle = page_soup(panel.client.get("/revisions")).select_one("#running-banner")
    assert idle is not None and not idle.has_attr("hx-trigger")


def test_a_busy_target_names_the_running_job_by_its_kind(
    make_panel: Callable[..., Panel],
) -> None:
    panel = make_panel()
    restore = JobRequest(JobKind.RESTORE, options={"backup_id": 7, "mode": "new"})
    running = queue.submit(panel.runtime, restore, TESTS)
    with pytest.raises(Conflict) as refused:
        queue.submit(panel.runtime, JobRequest(JobKind.BACKUP), TESTS)
    assert refused.value.message.startswith(
        f"job {running.id} (restore of backup 7 into a new database, started by tests via cli)"
    )
    kinds = {
        JobKind.BACKUP: ({}, "backup"),
        JobKind.VERIFY: ({"backup_id": 3}, "verification of backup 3"),
        JobKind.RESTORE: ({"backup_id": 3, "mode": "replace"},
                          "restore of backup 3 over the target"),
    }  # fmt: skip
    for kind, (options, said) in kinds.items():
        assert queue.describe(Job(kind=kind.value, options=options)) == said
    assert queue.describe(Job(kind="stamp", target_revision="bbb222")) == "stamp to bbb222"


def test_job_pages_offer_the_way_back_and_a_retry(make_panel: Callable[..., Panel]) -> None:
    panel = make_panel()
    upgrade = panel.run("upgrade", "bbb222")
    page = page_soup(panel.client.get(f"/jobs/{upgrade.id}"))
    assert page.select_one("#rollback-job")["href"] == "/preview?direction=downgrade&target=base"
    assert page.select_one("#retry-job") is None
    down = panel.run("downgrade", "aaa111", confirm="aaa111")
    page = page_soup(panel.client.get(f"/jobs/{down.id}"))
    assert page.select_one("#rollback-job")["href"] == "/preview?direction=upgrade&target=bbb222"
    # A failed upgrade: Retry opens its preview again.
    failed = _finished(
        panel, JobRequest(JobKind.UPGRADE, "head", panel.plan("upgrade", "head").fingerprint),
        JobStatus.FAILED,
    )  # fmt: skip
    page = page_soup(panel.client.get(f"/jobs/{failed.id}"))
    assert page.select_one("#retry-job")["href"] == "/preview?direction=upgrade&target=head"
    assert page.select_one("#rollback-job") is None
    # A stamp: where the record moved from and to, and no SQL ran.
    stamp = panel.run("stamp", "ccc333", confirm="ccc333")
    page = page_soup(panel.client.get(f"/jobs/{stamp.id}"))
    moved = page.select_one("#job-stamp").text
    assert "from aaa111" in " ".join(moved.split()) and "to ccc333" in " ".join(moved.split())
    assert page.select_one("#job-steps, #job-plan, #rollback-job, #retry-job") is None


def test_a_restore_page_says_where_the_backup_went(make_panel: Callable[..., Panel]) -> None:
    panel = make_panel()
    assert panel.run("upgrade", "bbb222").status == "succeeded"

    def submitted(path: str, **form: str) -> Job:
        answer = panel.client.post(
            path, data={"csrf_token": csrf_token(panel.client), **form}, follow_redirects=False
        )
        assert answer.status_code == 303, answer.text[:500]
        job_id = int(answer.headers["location"].rsplit("/", 1)[1])
        assert panel.runner.wait(job_id, timeout=60)
        with panel.runtime.reads() as session:
            return queue.get(session, job_id)

    backup = submitted("/backups", format="custom", reason="manual")
    assert backup.status == "succeeded" and backup.backup_id is not None
    assert panel.run("upgrade", "head").status == "succeeded"
    restore = submitted(
        f"/backups/{backup.backup_id}/restore", mode="replace", confirm="target.sqlite3"
    )
    assert restore.status == "succeeded", restore.error
    page = page_soup(panel.client.get(f"/jobs/{restore.id}"))
    assert page.select_one("h1").text == (
        f"Job {restore.id}: restore of backup {backup.backup_id} over the target"
    )
    assert "over the target itself" in page.select_one("#job-destination").text
    # Over the target: its revisions before and after are the target's.
    assert [a.text for a in page.select("#job-revision-before a")] == ["ccc333"]
    assert [a.text for a in page.select("#job-revision-after a")] == ["bbb222"]
    assert page.select_one("#job-backup a")["href"] == f"/backups/{backup.backup_id}"
    facts = page.select_one("#job-backup-facts")
    assert facts is not None and int(facts["data-backup-id"]) == backup.backup_id
    assert page.select_one("#job-safety-backup").text == "none"
