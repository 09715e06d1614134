"""Safety in the panel: a downgrade that cannot finish refused on the page, by POST /jobs and
by the API; a destructive upgrade needs its typed confirmation; badges on the reading pages
and in the JSON API; an applied file edited afterwards is flagged and blocks production."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import csrf_token, page_soup
from projects import Rev, write_revision
from reading_support import (
    CRM_HEAD,
    CRM_INI,
    CRM_ORDER,
    IRREVERSIBLE,
    Apps,
    Panel,
    audit_events,
    linear,
    make_project,
    sqlite_target,
    stamp,
)
from sqlalchemy import create_engine, text
from test_safety_cli import schema_of

from admin import migrations
from admin.migrations import Command, Direction

pytestmark = pytest.mark.postgres


@pytest.fixture(scope="module")
def panel(tmp_path_factory: pytest.TempPathFactory) -> Panel:
    return Panel(tmp_path_factory.mktemp("safety"))


@pytest.fixture(scope="module")
def pg_url(pg_databases: Any) -> Iterator[str]:
    yield pg_databases.create("safetyweb")
    migrations.dispose_engines()


@pytest.fixture(scope="module")
def pg(panel: Panel, pg_url: str) -> Iterator[Apps]:
    with panel.open(database_url=pg_url) as apps:
        yield apps


def reset(url: str) -> None:
    engine = create_engine(url)
    try:
        with engine.begin() as connection:
            connection.execute(text("DROP SCHEMA public CASCADE"))
            connection.execute(text("CREATE SCHEMA public"))
    finally:
        engine.dispose()


def upgrade_to(url: str, target: str, ini: Path = CRM_INI) -> None:
    project = migrations.open_project(ini)
    engine = migrations.new_engine(url)
    try:
        with engine.connect() as connection:
            migrations.run(project, connection, Command.UPGRADE, target, on_event=lambda e: None)
    finally:
        engine.dispose()


def wait_job(client: Any, job_id: int, timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        job: dict[str, Any] = client.get(f"/api/v1/jobs/{job_id}").json()
        if job["status"] not in ("queued", "running") or time.monotonic() > deadline:
            return job
        time.sleep(0.2)


def fingerprint(
    direction: Direction, target: str, current: tuple[str, ...], ini: Path = CRM_INI
) -> str:
    project = migrations.open_project(ini)
    return migrations.make_plan(project, direction, target, current, max_age=0).fingerprint


def test_a_downgrade_across_the_irreversible_revision_is_refused_everywhere(
    pg: Apps, pg_url: str
) -> None:
    upgrade_to(pg_url, "head")
    before = schema_of(pg_url)
    operator = pg["operator"]
    page = page_soup(operator.get("/preview", params={"direction": "downgrade", "target": "base"}))
    assert page.select_one("form#apply-form") is None
    blocked = page.select_one("#plan-blocked")
    assert blocked["data-revision"] == IRREVERSIBLE
    assert f"lowest it can reach is {IRREVERSIBLE}" in blocked.get_text()
    assert "restore the backup taken before" in blocked.get_text()
    assert (
        page.select_one("#lowest-target")["href"]
        == f"/preview?direction=downgrade&target={IRREVERSIBLE}"
    )
    assert page.select_one("#apply-refused") is not None
    # The steps show their badges: the refusal's reason is the irreversible one.
    step = page.select_one(f"#plan-steps li[data-revision='{IRREVERSIBLE}']")
    assert [b["data-kind"] for b in step.select(".risk")] == ["irreversible"]

    plan = fingerprint(Direction.DOWNGRADE, "base", (CRM_HEAD,))
    token = csrf_token(operator)
    form = {
        "kind": "downgrade",
        "target": "base",
        "confirm_target": "base",
        "plan_fingerprint": plan,
        "csrf_token": token,
    }
    answer = operator.post("/jobs", data=form, follow_redirects=False)
    assert answer.status_code == 409
    assert "cannot finish" in page_soup(answer).select_one(".error-message").get_text()
    api = operator.post(
        "/api/v1/jobs",
        json={"kind": "downgrade", "target": "base", "confirm_target": "base"},
        headers={"X-CSRF-Token": token},
    )
    assert api.status_code == 409 and api.json()["title"] == "Plan cannot finish"
    assert schema_of(pg_url) == before
    refused = [
        e for e in audit_events(pg.runtime, "job-refused") if "cannot finish" in e.details["reason"]
    ]
    assert len(refused) == 2
    # To the lowest target it can reach, the form is offered.
    lowest = page_soup(
        operator.get("/preview", params={"direction": "downgrade", "target": IRREVERSIBLE})
    )
    assert (
        lowest.select_one("form#apply-form") is not None
        and lowest.select_one("#plan-blocked") is None
    )


def test_a_destructive_upgrade_needs_its_typed_confirmation(pg: Apps, pg_url: str) -> None:
    reset(pg_url)
    upgrade_to(pg_url, CRM_ORDER[4])
    before = schema_of(pg_url)
    operator = pg["operator"]
    page = page_soup(operator.get("/preview", params={"direction": "upgrade", "target": "head"}))
    assert (
        page.select_one("#confirm-destructive-value").get_text()
        == "clients.passport_number, e47a90b3d6f1"
    )
    assert page.select_one("#backup_first").has_attr("checked")
    summary = {b["data-kind"] for b in page.select("#risk-summary .risk")}
    assert summary == {"irreversible", "destructive", "data migration", "non-transactional"}
    lint_rules = [li["data-rule"] for li in page.select(f"#step-{IRREVERSIBLE} .lint-findings li")]
    assert lint_rules == ["ban-drop-column"]

    plan = fingerprint(Direction.UPGRADE, "head", (CRM_ORDER[4],))
    token = csrf_token(operator)
    form = {"kind": "upgrade", "target": "head", "plan_fingerprint": plan, "csrf_token": token}
    missing = operator.post("/jobs", data=form, follow_redirects=False)
    assert missing.status_code == 400
    assert (
        "type 'clients.passport_number, e47a90b3d6f1'"
        in page_soup(missing).select_one(".error-message").get_text()
    )
    wrong = operator.post(
        "/jobs", data={**form, "confirm_destructive": "yes"}, follow_redirects=False
    )
    assert wrong.status_code == 400
    api = operator.post(
        "/api/v1/jobs", json={"kind": "upgrade", "target": "head"}, headers={"X-CSRF-Token": token}
    )
    assert api.status_code == 400 and api.json()["title"] == "Confirmation required"
    assert schema_of(pg_url) == before
    # Typed as shown: the job runs.
    done = operator.post(
        "/jobs",
        data={**form, "confirm_destructive": "clients.passport_number, e47a90b3d6f1"},
        follow_redirects=False,
    )
    assert done.status_code == 303, done.text
    job_id = int(done.headers["location"].rsplit("/", 1)[1])
    job = wait_job(operator, job_id)
    assert job["status"] == "succeeded", job["error"]
    assert schema_of(pg_url)["@version"] == [CRM_HEAD]


def test_badges_in_the_history_the_revision_page_the_dashboard_and_the_api(
    pg: Apps, pg_url: str
) -> None:
    stamp(pg_url, (CRM_ORDER[4],))
    viewer = pg["viewer"]
    history = page_soup(viewer.get("/revisions"))
    row = history.select_one(f"tr[data-revision='{IRREVERSIBLE}']")
    assert {b["data-kind"] for b in row.select(".risk")} == {"irreversible", "destructive"}
    plain = history.select_one(f"tr[data-revision='{CRM_ORDER[0]}']")
    assert plain.select(".risk") == []
    page = page_soup(viewer.get(f"/revisions/{IRREVERSIBLE}"))
    assert [li["data-kind"] for li in page.select("#upgrade-risk li")] == [
        "irreversible",
        "destructive",
    ]
    assert [li["data-kind"] for li in page.select("#downgrade-risk li")] == ["irreversible"]
    assert "drops column clients.passport_number" in page.select_one("#upgrade-risk").get_text()
    assert page.select_one(".lint-findings li")["data-rule"] == "ban-drop-column"
    dashboard = page_soup(viewer.get("/"))
    pending = dashboard.select_one(f"#pending li[data-revision='{IRREVERSIBLE}']")
    assert {b["data-kind"] for b in pending.select(".risk")} == {"irreversible", "destructive"}
    listed = viewer.get("/api/v1/revisions").json()["items"]
    by_id = {item["id"]: item for item in listed}
    assert {b["kind"] for b in by_id[IRREVERSIBLE]["badges"]} == {"irreversible", "destructive"}
    one = viewer.get(f"/api/v1/revisions/{IRREVERSIBLE}").json()
    assert one["downgrade_badges"][0]["fails"] is True
    sql = (
        pg["reviewer"].get("/api/v1/sql", params={"direction": "upgrade", "target": "head"}).json()
    )
    steps = {s["revision"]: s for s in sql["steps"]}
    assert {b["kind"] for b in steps[IRREVERSIBLE]["badges"]} == {"irreversible", "destructive"}
    assert [f["rule"] for f in steps[IRREVERSIBLE]["findings"]] == ["ban-drop-column"]
    assert sql["confirm_phrase"] == "clients.passport_number, e47a90b3d6f1"
    assert sql["blocked"] is None
    down = (
        pg["reviewer"]
        .get("/api/v1/sql", params={"direction": "downgrade", "target": "base", "from": "head"})
        .json()
    )
    assert down["blocked"]["revision"] == IRREVERSIBLE


def test_an_edited_applied_file_is_flagged_and_blocks_production_until_acknowledged(
    panel: Panel, tmp_path_factory: pytest.TempPathFactory
) -> None:
    root = tmp_path_factory.mktemp("drift")
    revisions = [
        Rev(
            "aaaa11111111",
            None,
            "create a",
            "op.create_table('a', sa.Column('id', sa.Integer, primary_key=True))",
            "op.drop_table('a')",
        ),
        Rev(
            "bbbb22222222",
            "aaaa11111111",
            "create b",
            "op.create_table('b', sa.Column('id', sa.Integer, primary_key=True))",
            "op.drop_table('b')",
        ),
    ]
    ini = make_project(root / "project", revisions)
    target = sqlite_target(root / "target.sqlite3", None)
    with panel.open(database_url=target, alembic_config=ini) as apps:
        operator = apps["operator"]
        token = csrf_token(operator)
        plan = fingerprint(Direction.UPGRADE, "head", (), ini)
        started = operator.post(
            "/jobs",
            data={
                "kind": "upgrade",
                "target": "head",
                "plan_fingerprint": plan,
                "csrf_token": token,
            },
            follow_redirects=False,
        )
        assert started.status_code == 303, started.text
        job_id = int(started.headers["location"].rsplit("/", 1)[1])
        assert wait_job(operator, job_id)["status"] == "succeeded"
        untouched = page_soup(operator.get("/revisions/aaaa11111111"))
        assert untouched.select_one("#applied-file") is None
        # Someone edits the applied file afterwards.
        path = root / "project" / "migrations" / "versions" / "aaaa11111111.py"
        path.write_text(
            path.read_text().replace(
                "sa.Integer, primary_key=True)",
                "sa.Integer, primary_key=True), sa.Column('x', sa.Text)",
            )
        )
        migrations.open_project(ini).graph(max_age=0)
        page = page_soup(operator.get("/revisions/aaaa11111111"))
        flagged = page.select_one("#applied-file")
        assert f"Changed since job {job_id} applied it" in flagged.select_one("h2").get_text()
        diff = page.select_one("#applied-file-diff").get_text()
        assert "+" in diff and "sa.Column('x', sa.Text)" in diff
        assert page.select_one("#acknowledge-form") is None  # operators see it, admins act
        history = page_soup(operator.get("/revisions"))
        changed = history.select_one("tr[data-revision='aaaa11111111'] .risk-changed")
        assert changed.get_text() == f"changed since job {job_id}"
        assert history.select_one("tr[data-revision='bbbb22222222'] .risk-changed") is None
        assert (
            page_soup(operator.get("/")).select_one("#applied-changes li")["data-revision"]
            == "aaaa11111111"
        )
    write_revision(
        root / "project" / "migrations" / "versions",
        Rev(
            "cccc33333333",
            "bbbb22222222",
            "create c",
            "op.create_table('c', sa.Column('id', sa.Integer, primary_key=True))",
            "op.drop_table('c')",
        ),
        "cccc33333333.py",
    )
    with panel.open(
        database_url=target,
        alembic_config=ini,
        environment="production",
        require_rehearsal=False,  # production's rehearsal rule: tests/test_rehearsal_web.py
    ) as prod:
        operator, admin = prod["operator"], prod["admin"]
        token = csrf_token(operator)
        plan = fingerprint(Direction.UPGRADE, "head", ("bbbb22222222",), ini)
        form = {"kind": "upgrade", "target": "head", "plan_fingerprint": plan, "csrf_token": token}
        refused = operator.post("/jobs", data=form, follow_redirects=False)
        assert refused.status_code == 409
        assert (
            "aaaa11111111 changed since a job applied it"
            in page_soup(refused).select_one(".error-message").get_text()
        )
        admin_token = csrf_token(admin)
        assert (
            operator.post(
                "/revisions/aaaa11111111/acknowledge", data={"reason": "x", "csrf_token": token}
            ).status_code
            == 403
        )
        empty = admin.post(
            "/revisions/aaaa11111111/acknowledge",
            data={"reason": " ", "csrf_token": admin_token},
            follow_redirects=False,
        )
        assert empty.status_code == 400
        acked = admin.post(
            "/revisions/aaaa11111111/acknowledge",
            data={"reason": "added a column by hand in prod too", "csrf_token": admin_token},
            follow_redirects=False,
        )
        assert acked.status_code == 303
        events = audit_events(prod.runtime, "applied-file-acknowledged")
        assert events[-1].details["reason"] == "added a column by hand in prod too"
        assert events[-1].revision == "aaaa11111111"
        assert (
            page_soup(operator.get("/revisions/aaaa11111111")).select_one("#applied-file") is None
        )
        accepted = operator.post("/jobs", data=form, follow_redirects=False)
        assert accepted.status_code == 303, accepted.text
        job_id = int(accepted.headers["location"].rsplit("/", 1)[1])
        assert wait_job(operator, job_id)["status"] == "succeeded"


def test_a_long_plan_is_folded_and_each_step_loads_its_sql(
    panel: Panel, tmp_path_factory: pytest.TempPathFactory
) -> None:
    root = tmp_path_factory.mktemp("long")
    revisions = linear(60)
    revisions[30] = Rev(
        revisions[30].id, revisions[29].id, "drop it", "op.drop_table('t_r00000')", "pass"
    )
    ini = make_project(root / "project", revisions)
    target = sqlite_target(root / "target.sqlite3", None)
    with panel.open(database_url=target, alembic_config=ini) as apps:
        page = page_soup(apps["operator"].get("/preview", params={"target": "head"}))
        assert page.select("#sql .sql-step") == [] and page.select_one("#sql-folded") is not None
        steps = page.select("#plan-steps li details")
        assert len(steps) == 60
        dropping = page.select_one("#plan-steps li[data-revision='r00030'] details")
        assert dropping["hx-get"] == "/revisions/r00030/step?direction=upgrade"
        kinds = [b["data-kind"] for b in dropping.select("summary .risk")]
        assert kinds == ["irreversible", "destructive"]
        # Without JavaScript the step still links to where its SQL is.
        assert dropping.select_one("details > a")["href"] == "/revisions/r00030"
        assert page.select_one("#confirm-destructive-value").get_text() == "table t_r00000"
        fragment = page_soup(apps["viewer"].get("/revisions/r00030/step?direction=upgrade"))
        assert "DROP TABLE t_r00000" in fragment.select_one(".sql").get_text()
        assert page.select_one("#download-sql") is not None
        bad = apps["viewer"].get("/revisions/r00030/step?direction=sideways")
        assert bad.status_code == 400
        assert apps["viewer"].get("/revisions/nope!/step").status_code == 400
        assert apps["viewer"].get("/revisions/zzzz9999/step").status_code == 404
