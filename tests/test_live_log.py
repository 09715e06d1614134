"""A log worth reading: times on every line, steps as folded groups with durations,
statements with their bound values, bookkeeping at debug level, the plain-text export
equal to the log, and the step table (real SQLite and PostgreSQL targets)."""

from __future__ import annotations

import re
import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from helpers import create_user, login, page_soup
from jobs_support import long_job
from projects import Rev
from test_ops import scrape, value

from admin import audit
from admin.config import Settings
from admin.jobs import JobRequest, queue
from admin.store.models import Job, JobKind, Role, Source
from admin.web import logtext
from admin.web.app import create_app

ALICE = audit.Actor("alice", "operator", Source.WEB, "10.1.1.1")

REVISIONS = [
    Rev(
        "aaa111",
        None,
        "create notes",
        "op.create_table('notes', sa.Column('id', sa.Integer, primary_key=True), "
        "sa.Column('body', sa.Text))",
        "op.drop_table('notes')",
    ),
    Rev(
        "bbb222",
        "aaa111",
        "fill notes",
        "op.execute(sa.text('INSERT INTO notes (id, body) VALUES (:i, :b)')"
        '.bindparams(i=42, b="it\'s here"))\n'
        "op.execute(sa.text('INSERT INTO notes (id, body) VALUES (:i, :b)')"
        ".bindparams(i=43, b='second'))\n"
        "op.execute(sa.text('UPDATE notes SET body = :b').bindparams(b='both'))",
        "op.execute('DELETE FROM notes')",
    ),
]


@pytest.fixture(params=["sqlite", "postgresql"])
def finished(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    make_settings: Callable[..., Settings],
    alembic_project: Callable[..., Path],
) -> Iterator[tuple[TestClient, int]]:
    if request.param == "sqlite":
        target = tmp_path / "target.sqlite3"
        sqlite3.connect(target).close()
        url = f"sqlite:///{target}"
    else:
        url = request.getfixturevalue("pg_databases").create("log")
    settings = make_settings(database_url=url, alembic_config=alembic_project(REVISIONS))
    with TestClient(create_app(settings)) as client:
        login(client, create_user(client.app.state.runtime, "olga", Role.OPERATOR).username)
        job_id = client.app.state.runner.submit(JobRequest(JobKind.UPGRADE, "head"), ALICE).id
        deadline = time.monotonic() + 60
        while _job(client, job_id).finished_at is None:
            assert time.monotonic() < deadline, "the job did not end"
            time.sleep(0.1)
        assert _job(client, job_id).status == "succeeded", _job(client, job_id).error
        yield client, job_id


def _job(client: TestClient, job_id: int) -> Job:
    with client.app.state.runtime.reads() as session:
        return queue.get(session, job_id)


def _json_lines(client: TestClient, job_id: int) -> list[dict[str, Any]]:
    answer = client.get(f"/api/v1/jobs/{job_id}/log")
    assert answer.status_code == 200
    return list(answer.json()["lines"])


def test_every_line_has_its_time_and_steps_are_folded_groups(
    finished: tuple[TestClient, int],
) -> None:
    client, job_id = finished
    page = page_soup(client.get(f"/jobs/{job_id}"))
    lines = page.select("#job-log .log-line")
    assert len(lines) == len(_json_lines(client, job_id))
    for line in lines:
        assert re.fullmatch(r"\+\d+\.\d{3}s", line["data-t"]), line
        assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} UTC", line["title"])
    groups = page.select("#job-log details.log-step")
    assert len(groups) == 2
    for group in groups:
        assert group.get("data-done") == "1" and not group.has_attr("open")
        assert re.fullmatch(r"\d+\.\d{3} s", group.select_one(".step-duration").get_text())
        assert "step-start" in group.select_one("summary .log-line")["class"]
        assert "step-end" in group.select(".log-line")[-1]["class"]
    assert page.select_one("#log-search") is not None
    assert page.select_one("#log-debug") is not None


def test_statements_show_their_bound_values_and_bookkeeping_is_debug(
    finished: tuple[TestClient, int],
) -> None:
    client, job_id = finished
    lines = _json_lines(client, job_id)
    sql = [line["text"] for line in lines if line["level"] == "sql"]
    assert "INSERT INTO notes (id, body) VALUES (42, 'it''s here')" in sql, sql
    assert "UPDATE notes SET body = 'both'" in sql
    for text in sql:
        assert "%(" not in text and "?" not in text and ":b" not in text, text
        assert not text.upper().startswith("PRAGMA") and "pg_catalog" not in text, text
    debug = [line["text"] for line in lines if line["level"] == "debug"]
    assert any(t.upper().startswith("PRAGMA") or "pg_catalog" in t for t in debug), debug


def test_the_text_download_is_the_log(finished: tuple[TestClient, int]) -> None:
    client, job_id = finished
    answer = client.get(f"/api/v1/jobs/{job_id}/log.txt")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain")
    assert f'filename="job-{job_id}.log"' in answer.headers["content-disposition"]
    pattern = re.compile(
        r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z) +(\+[\d:.]+s?) (\w+) +(.*)", re.DOTALL
    )
    lines = _json_lines(client, job_id)
    said: list[str] = []
    for row in answer.text.split("\n")[:-1]:
        if pattern.match(row):
            said.append(row)
        else:  # the next line of a statement, indented under the text
            width = len(pattern.match(said[-1]).group(0)) - len(pattern.match(said[-1]).group(4))
            assert row[:width].strip() == ""
            said[-1] += "\n" + row[width:]
    assert any("\n" in line["text"] for line in lines)
    for text, line in zip(said, lines, strict=True):
        found = pattern.fullmatch(text)
        assert found is not None, text
        assert found.group(3) == line["level"] and found.group(4) == line["text"]
        assert line["created_at"].startswith(found.group(1)[:19])


def test_the_step_table_in_the_api_and_on_the_page(finished: tuple[TestClient, int]) -> None:
    client, job_id = finished
    steps = client.get(f"/api/v1/jobs/{job_id}").json()["steps"]
    assert [(s["step"], s["revision"]) for s in steps] == [(1, "aaa111"), (2, "bbb222")]
    assert steps[1]["rows"] == 4  # two inserts and an update of both rows
    assert all(s["duration_seconds"] >= 0 and s["lock_wait_seconds"] == 0 for s in steps)
    table = page_soup(client.get(f"/jobs/{job_id}")).select("#job-steps-table tbody tr")
    assert [row.select("td")[1].get_text() for row in table] == ["aaa111", "bbb222"]
    samples = scrape(client)
    assert value(samples, "schema_admin_step_duration_seconds_count") == 2
    assert value(samples, "schema_admin_lock_retries_total") == 0


def test_a_long_log_folds_its_middle_in_ranges_loaded_when_opened(
    make_settings: Callable[..., Settings],
) -> None:
    steps = 700
    with TestClient(create_app(make_settings())) as client:
        login(client, create_user(client.app.state.runtime, "vera", Role.VIEWER).username)
        with client.app.state.runtime.transaction() as session:
            job_id, total = long_job(session, steps)
        page = page_soup(client.get(f"/jobs/{job_id}"))
        shown = [int(line["data-seq"]) for line in page.select("#job-log .log-line")]
        assert shown[0] == 1 and shown[-1] == total and len(shown) <= logtext.TAIL + 1
        ranges = page.select("#job-log details.log-range")
        assert ranges and not page.select("#job-log details.log-range .log-line")
        loaded: list[int] = []
        for folded in ranges:
            answer = client.get(str(folded["hx-get"]))
            assert answer.status_code == 200
            loaded += [int(d["data-seq"]) for d in page_soup(answer).select(".log-line")]
        # The ranges hold exactly the lines between the head and the tail.
        assert sorted([*shown, *loaded]) == list(range(1, total + 1))
        assert client.get(f"/jobs/{job_id}/lines?after=5&until=5").status_code == 400
        assert client.get(f"/jobs/{job_id}/lines?after=0&until=999999").status_code == 400
        # The step table of a long job is loaded when opened.
        table = page.select_one("#job-steps-table")
        assert table is not None and table["hx-get"] == f"/jobs/{job_id}/steps"
        rows = page_soup(client.get(f"/jobs/{job_id}/steps")).select("tbody tr")
        assert len(rows) == steps


def test_the_search_finds_lines_in_folded_ranges(make_settings: Callable[..., Settings]) -> None:
    with TestClient(create_app(make_settings())) as client:
        login(client, create_user(client.app.state.runtime, "vera", Role.VIEWER).username)
        with client.app.state.runtime.transaction() as session:
            job_id, _ = long_job(session, 700)
        page = page_soup(client.get(f"/jobs/{job_id}"))
        assert page.select_one("#job-log")["data-search"] == f"/jobs/{job_id}/search"
        ranges = [
            (int(r["data-after"]), int(r["data-until"]))
            for r in page.select("#job-log details.log-range")
        ]
        # Step 350's statement is in a folded range, not on the page.
        found = client.get(f"/jobs/{job_id}/search", params={"q": "table T350 ("}).json()
        assert found == {"seqs": [1 + 3 * 349 + 2], "more": False}
        assert not page.select(f"#line-{found['seqs'][0]}")
        assert any(after < found["seqs"][0] <= until for after, until in ranges)
        # Every step's statement, in order; LIKE's wildcards are plain characters here.
        every = client.get(f"/jobs/{job_id}/search", params={"q": "create table"}).json()
        assert every["seqs"] == [1 + 3 * n + 2 for n in range(700)]
        assert client.get(f"/jobs/{job_id}/search", params={"q": "t_"}).json()["seqs"] == []
        assert client.get(f"/jobs/{job_id}/search", params={"q": "%"}).json()["seqs"] == []
        assert client.get(f"/jobs/{job_id}/search", params={"q": ""}).status_code == 400
        assert client.get(f"/jobs/{job_id}/search", params={"q": "x" * 201}).status_code == 400
        assert client.get("/jobs/999999/search", params={"q": "x"}).status_code == 404
