"""SQL preview (/preview, /preview/download): plan, per-step SQL, download, audit, Apply form."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import Any

import pytest
from helpers import body_csrf_header, page_soup
from reading_support import (
    CRM_HEAD,
    CRM_INI,
    CRM_ORDER,
    IRREVERSIBLE,
    Apps,
    Panel,
    Rev,
    audit_events,
    make_project,
    stamp,
)

from admin import migrations
from admin.migrations import Direction

pytestmark = pytest.mark.postgres


@pytest.fixture(scope="module")
def panel(tmp_path_factory: pytest.TempPathFactory) -> Panel:
    return Panel(tmp_path_factory.mktemp("preview"))


@pytest.fixture(scope="module")
def pg_url(pg_databases: Any) -> Iterator[str]:
    """A PostgreSQL target; each test stamps it where it needs it."""
    yield pg_databases.create("preview")
    migrations.dispose_engines()


@pytest.fixture(scope="module")
def pg(panel: Panel, pg_url: str) -> Iterator[Apps]:
    with panel.open(database_url=pg_url) as apps:
        yield apps


def _plan(url: str, direction: Direction, target: str, current: tuple[str, ...]) -> Any:
    return migrations.make_plan(migrations.open_project(CRM_INI), direction, target, current)


def _script(url: str, plan: Any) -> Any:
    return migrations.render(migrations.open_project(CRM_INI), plan, url, "postgresql")


def test_viewer_cannot_preview_or_download(pg: Apps) -> None:
    for path in ("/preview", "/preview?target=head", "/preview/download?target=head"):
        response = pg["viewer"].get(path)
        assert response.status_code == 403, path
        assert "reviewer role" in page_soup(response).select_one(".error-message").text
    assert audit_events(pg.runtime, "sql-previewed") == []
    denied = audit_events(pg.runtime, "access-denied")
    assert [e.details["path"] for e in denied[-3:]] == ["/preview"] * 2 + ["/preview/download"]


def test_the_form_alone_without_a_target(pg: Apps) -> None:
    soup = page_soup(pg["reviewer"].get("/preview"))
    form = soup.select_one("form#preview-form")
    assert form["method"] == "get" and form["action"] == "/preview"
    assert form.select_one("select#direction option[selected]")["value"] == "upgrade"
    assert [i["name"] for i in form.select("input")] == ["target", "from"]
    assert soup.select_one("#plan") is None


def test_plan_in_order_with_each_steps_sql_as_the_engine_renders_it(pg: Apps, pg_url: str) -> None:
    stamp(pg_url, None)
    response = pg["reviewer"].get("/preview", params={"direction": "upgrade", "target": "head"})
    assert response.status_code == 200
    soup = page_soup(response)
    plan = _plan(pg_url, Direction.UPGRADE, "head", ())
    script = _script(pg_url, plan)
    assert not script.errors
    assert [li["data-revision"] for li in soup.select("#plan-steps li")] == plan.revision_ids
    assert plan.revision_ids[0] == CRM_ORDER[0] and plan.revision_ids[-1] == CRM_HEAD
    assert soup.select_one("#plan-from").text == "base"
    assert soup.select_one("#plan-to").text == CRM_HEAD
    assert soup.select_one("#plan-fingerprint").text == plan.fingerprint
    assert soup.select_one("#sql-fingerprint").text == script.fingerprint
    sections = soup.select("#sql .sql-step")
    assert [s["data-revision"] for s in sections] == plan.revision_ids
    for section, piece in zip(sections, script.steps, strict=True):
        code = section.select_one(".sql pre")
        assert code.get_text() == piece.sql
        assert code.select("span.k"), "highlighted"
        copy = section.select_one("button.copy-button")
        assert copy["data-copy-target"] == f"#step-{piece.step.revision} .sql"
    assert (
        "ALTER TABLE clients DROP COLUMN passport_number"
        in soup.select_one(f"#step-{IRREVERSIBLE} .sql").get_text()
    )
    assert soup.select_one("#copy-all")["data-copy-target"] == "#sql .sql"
    assert soup.select_one("#download-sql")["href"] == (
        "/preview/download?direction=upgrade&target=head"
    )
    # A reviewer reads; only operators get the Apply form.
    assert soup.select_one("#apply-form") is None
    [event] = audit_events(pg.runtime, "sql-previewed")[-1:]
    assert event.actor == "reviewer-user" and event.source == "web"
    assert event.target == "revision:head"
    assert event.details["revisions"] == plan.revision_ids
    assert event.details["plan_fingerprint"] == plan.fingerprint
    assert event.details["sql_fingerprint"] == script.fingerprint
    assert event.details["from_revisions"] == [] and event.details["from_database"] is True
    assert event.details["dialect"] == "postgresql" and event.details["renderable"] is True


def test_download_is_an_attachment_with_the_whole_script_and_is_audited(
    pg: Apps, pg_url: str
) -> None:
    stamp(pg_url, (CRM_ORDER[1],))
    response = pg["reviewer"].get(
        "/preview/download", params={"direction": "upgrade", "target": "heads"}
    )
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/sql; charset=utf-8"
    assert response.headers["content-disposition"] == (
        f'attachment; filename="upgrade_{CRM_ORDER[1]}_{CRM_HEAD}_postgresql.sql"'
    )
    plan = _plan(pg_url, Direction.UPGRADE, "heads", (CRM_ORDER[1],))
    script = _script(pg_url, plan)
    # A comment header says what the file is; the script follows it unchanged.
    header, _, body = response.text.partition("\n\n")
    assert body == script.text
    assert all(line.startswith("-- ") for line in header.splitlines())
    assert f"-- Plan fingerprint: {plan.fingerprint}" in header.splitlines()
    assert f"-- SQL fingerprint: {script.fingerprint} " in header
    assert "-- Dialect: postgresql" in header and "-- Generated by: reviewer" in header
    [event] = audit_events(pg.runtime, "sql-downloaded")[-1:]
    assert event.details["revisions"] == plan.revision_ids == list(CRM_ORDER[2:])
    assert event.details["plan_fingerprint"] == plan.fingerprint
    assert event.details["sql_fingerprint"] == hashlib.sha256(body.encode()).hexdigest()
    assert event.details["from_revisions"] == [CRM_ORDER[1]]


def test_operator_gets_the_apply_form_with_the_plans_fingerprint(pg: Apps, pg_url: str) -> None:
    stamp(pg_url, (CRM_ORDER[4],))
    response = pg["operator"].get("/preview", params={"direction": "upgrade", "target": "head"})
    soup = page_soup(response)
    form = soup.select_one("form#apply-form")
    assert form["method"] == "post" and form["action"] == "/jobs"
    fields = {i["name"]: i.get("value") for i in form.select("input")}
    plan = _plan(pg_url, Direction.UPGRADE, "head", (CRM_ORDER[4],))
    assert fields == {
        "csrf_token": body_csrf_header(response),
        "kind": "upgrade",
        "target": "head",
        "plan_fingerprint": plan.fingerprint,
        # The plan drops clients.passport_number (e47a90b3d6f1): typed confirmation, and a
        # backup first, ticked by default (tests/test_safety_web.py).
        "confirm_destructive": None,
        "backup_first": "yes",
        # Empty: the job takes LOCK_RETRIES (tests/test_live_locks.py).
        "lock_retries": None,
    }
    assert soup.select_one("#apply-form input[type=password]") is None
    assert form.select_one("button[type=submit]").text == "Apply upgrade"


def test_a_downgrade_asks_to_type_where_the_database_will_be(
    panel: Panel, pg: Apps, pg_url: str
) -> None:
    stamp(pg_url, (CRM_HEAD,))
    params = {"direction": "downgrade", "target": "5d0c"}
    soup = page_soup(pg["operator"].get("/preview", params=params))
    form = soup.select_one("form#apply-form")
    assert form.select_one("input[name=kind]")["value"] == "downgrade"
    assert form.select_one("input[name=target]")["value"] == "5d0c7be2a918"
    confirm = form.select_one("input[name=confirm_target]")
    assert confirm is not None and confirm.get("value") is None and confirm.has_attr("required")
    assert soup.select_one("#confirm-value").text == "5d0c7be2a918"
    assert [li["data-revision"] for li in soup.select("#plan-steps li")] == [CRM_HEAD]
    assert form.select_one("input[name=password]") is None
    # In production the operator also re-enters their password for a downgrade.
    with panel.open(database_url=pg_url, environment="production") as production:
        soup = page_soup(production["operator"].get("/preview", params=params))
        stamp(pg_url, (CRM_ORDER[4],))
        upgrade = page_soup(production["operator"].get("/preview", params={"target": "head"}))
    password = soup.select_one("form#apply-form input[name=password]")
    assert password["type"] == "password" and password.has_attr("required")
    assert soup.select_one("form#apply-form input[name=confirm_target]") is not None
    assert upgrade.select_one("form#apply-form") is not None
    # That upgrade drops clients.passport_number: in production it asks for the password too.
    assert upgrade.select_one("form#apply-form input[name=password]") is not None


def test_the_apply_form_as_built_is_accepted_by_post_jobs(
    panel: Panel, tmp_path_factory: Any
) -> None:
    """The form's fields are the contract with POST /jobs: posting them queues the job."""
    ini = make_project(
        tmp_path_factory.mktemp("apply"),
        [Rev("aaaa11111111", None), Rev("bbbb22222222", "aaaa11111111")],
    )
    url = f"sqlite:///{panel.root / 'apply.sqlite3'}"
    stamp(url, ("aaaa11111111",))
    with panel.open(database_url=url, alembic_config=ini) as apps:
        operator = apps["operator"]
        soup = page_soup(operator.get("/preview", params={"target": "head"}))
        fields = {i["name"]: i.get("value", "") for i in soup.select("form#apply-form input")}
        assert fields["plan_fingerprint"] == soup.select_one("#plan-fingerprint").text
        answer = operator.post("/jobs", data=fields, follow_redirects=False)
        assert answer.status_code == 303, answer.text
        assert answer.headers["location"].startswith("/jobs/")
        [queued] = audit_events(apps.runtime, "job-queued")[-1:]
        assert queued.details["plan_fingerprint"] == fields["plan_fingerprint"]
        assert queued.details["plan"] == ["bbbb22222222"]


def test_empty_plan_says_nothing_to_do(pg: Apps, pg_url: str) -> None:
    stamp(pg_url, (CRM_HEAD,))
    response = pg["operator"].get("/preview", params={"target": "head"})
    assert response.status_code == 200
    soup = page_soup(response)
    assert "Nothing to do" in soup.select_one("#nothing-to-do").text
    assert soup.select_one("#apply-form, #download-sql, #sql") is None
    download = pg["operator"].get("/preview/download", params={"target": "head"})
    assert download.status_code == 400
    assert "nothing to upgrade" in page_soup(download).select_one(".error-message").text


@pytest.mark.parametrize(
    ("heads", "params", "status", "says"),
    [
        ((), {"target": "ffffffffffff"}, 404, "no revision matches 'ffffffffffff'"),
        ((CRM_HEAD,), {"target": CRM_ORDER[0]}, 400, "already past"),
        (None, {"direction": "downgrade", "target": "-1"}, 400, "nothing to downgrade"),
        ((), {"target": "a b; drop"}, 400, "is not a revision target"),
        ((), {"direction": "sideways", "target": "head"}, 400, "choose upgrade or downgrade"),
        ((), {"target": "+20"}, 400, "relative step is ambiguous"),
        ((), {"target": "head", "from": "nope"}, 404, "no revision file has the id 'nope'"),
    ],
)
def test_errors_are_messages_on_the_page_with_a_4xx(
    pg: Apps,
    pg_url: str,
    heads: tuple[str, ...] | None,
    params: dict[str, str],
    status: int,
    says: str,
) -> None:
    stamp(pg_url, heads)
    before = len(audit_events(pg.runtime, "sql-previewed"))
    response = pg["operator"].get("/preview", params=params)
    assert response.status_code == status
    soup = page_soup(response)
    assert says in soup.select_one("#preview-error .error-message").text
    # The form keeps what was typed, to correct it.
    assert soup.select_one("input#target")["value"] == params["target"]
    assert soup.select_one("#plan, #apply-form") is None
    assert len(audit_events(pg.runtime, "sql-previewed")) == before
    assert pg["reviewer"].get("/preview/download", params=params).status_code == status


def test_too_long_a_target_is_refused(pg: Apps) -> None:
    assert pg["reviewer"].get("/preview", params={"target": "a" * 201}).status_code == 400


def test_ambiguous_prefix(panel: Panel, pg_url: str, tmp_path_factory: Any) -> None:
    ini = make_project(
        tmp_path_factory.mktemp("ambiguous"),
        [Rev("abc111111111", None), Rev("abc222222222", "abc111111111")],
    )
    stamp(pg_url, None)
    with panel.open(database_url=pg_url, alembic_config=ini) as apps:
        response = apps["operator"].get("/preview", params={"target": "abc"})
        short = apps["operator"].get("/preview", params={"target": "ab"})
        unique = page_soup(apps["operator"].get("/preview", params={"target": "abc2"}))
    assert response.status_code == 400 and short.status_code == 400
    assert "ambiguous" in page_soup(response).select_one("#preview-error").text
    # A unique prefix is resolved: the job is asked for that exact revision.
    assert unique.select_one("#apply-form input[name=target]")["value"] == "abc222222222"
    assert unique.select_one("#plan-target").text == "abc2"


def test_relative_targets_and_a_given_start(pg: Apps, pg_url: str) -> None:
    stamp(pg_url, None)
    plus = page_soup(pg["reviewer"].get("/preview", params={"target": "+2"}))
    assert [li["data-revision"] for li in plus.select("#plan-steps li")] == list(CRM_ORDER[:2])
    # From another revision than the database's: a plan to read, not to apply.
    params = {"target": "3c9e", "from": CRM_ORDER[1]}
    soup = page_soup(pg["operator"].get("/preview", params=params))
    assert [li["data-revision"] for li in soup.select("#plan-steps li")] == ["3c9e1f7a2b4d"]
    assert soup.select_one("#plan-from").text == CRM_ORDER[1]
    assert soup.select_one("#apply-form") is None
    assert "starts at" in soup.select_one("#apply-from-elsewhere").text
    assert soup.select_one("#download-sql")["href"] == (
        f"/preview/download?direction=upgrade&target=3c9e&from={CRM_ORDER[1]}"
    )
    [event] = audit_events(pg.runtime, "sql-previewed")[-1:]
    assert event.details["from_revisions"] == [CRM_ORDER[1]]
    assert event.details["from_database"] is False


def test_steps_that_cannot_render_offline_are_named_with_a_422(panel: Panel) -> None:
    url = f"sqlite:///{panel.root / 'crm.sqlite3'}"
    stamp(url, None)
    with panel.open(database_url=url) as apps:
        response = apps["operator"].get("/preview", params={"target": "head"})
        download = apps["operator"].get("/preview/download", params={"target": "head"})
    assert response.status_code == 422
    soup = page_soup(response)
    problem = soup.select_one("#not-renderable")
    assert [c.text for c in problem.select("li code")] == [IRREVERSIBLE]
    assert "batch mode" in problem.text
    assert soup.select_one(f"#step-{IRREVERSIBLE} .not-renderable") is not None
    assert len(soup.select("#sql .sql-step .sql")) == len(CRM_ORDER) - 1
    assert soup.select_one("#download-sql") is None
    # Online the step runs (batch mode reflects the live table): the job may still apply it.
    assert soup.select_one("#apply-form") is not None
    assert download.status_code == 422
    assert "incomplete" in page_soup(download).select_one(".error-message").text


def test_unreachable_database_needs_a_start(panel: Panel) -> None:
    url = "postgresql://postgres@127.0.0.1:1/nowhere"
    with panel.open(database_url=url) as apps:
        response = apps["reviewer"].get("/preview", params={"target": "head"})
        given = apps["reviewer"].get("/preview", params={"target": "head", "from": "base"})
    assert response.status_code == 503
    assert "cannot reach the target" in page_soup(response).select_one("#preview-error").text
    assert given.status_code == 200
    assert len(page_soup(given).select("#plan-steps li")) == len(CRM_ORDER)
