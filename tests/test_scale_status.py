"""Scale (issue 21): the status and the dashboard carry the first pending revisions, their
count and a link to the rest (the history filtered to pending, paginated)."""

from __future__ import annotations

import json

import pytest
from helpers import page_soup
from reading_support import Panel, many_revisions, stamp

COUNT = 300


@pytest.fixture(scope="module")
def panel(tmp_path_factory: pytest.TempPathFactory) -> Panel:
    return Panel(tmp_path_factory.mktemp("scale"))


@pytest.fixture(scope="module")
def ini(tmp_path_factory: pytest.TempPathFactory) -> object:
    return many_revisions(tmp_path_factory.mktemp("many"), COUNT)


def _target(panel: Panel, name: str, head: str) -> str:
    url = f"sqlite:///{panel.root / (name + '.sqlite3')}"
    stamp(url, (head,))
    return url


def test_status_size_does_not_grow_with_the_number_pending(panel: Panel, ini: object) -> None:
    answers = {}
    for at in (249, 9):  # 50 pending, then 290
        url = _target(panel, f"at{at}", f"n{at:05d}")
        with panel.open(database_url=url, alembic_config=ini) as apps:
            response = apps["viewer"].get("/api/v1/status")
        assert response.status_code == 200
        answers[at] = response
    few, many = answers[249].json(), answers[9].json()
    assert (few["pending_count"], many["pending_count"]) == (50, 290)
    assert len(few["pending"]) == len(many["pending"]) == 50
    # The first ones, in the order an upgrade runs them.
    assert [r["id"] for r in many["pending"]] == [f"n{i:05d}" for i in range(10, 60)]
    assert many["pending_url"] == "/api/v1/revisions?state=pending"
    # 240 more pending cost less than one more revision listed (~200 bytes): only the
    # digits of the counts and messages differ.
    one_revision = len(json.dumps(many["pending"][0]))
    assert len(answers[9].content) < len(answers[249].content) + one_revision
    assert len(json.dumps(many)) < 20_000


def test_pending_url_pages_through_all_of_them(panel: Panel, ini: object) -> None:
    url = _target(panel, "pages", "n00009")
    with panel.open(database_url=url, alembic_config=ini) as apps:
        client = apps["viewer"]
        status = client.get("/api/v1/status").json()
        seen: list[str] = []
        page = 1
        while True:
            body = client.get(f"{status['pending_url']}&page={page}").json()
            assert body["state"] == "pending" and body["matching"] == status["pending_count"]
            assert all(item["state"] == "pending" for item in body["items"])
            seen += [item["id"] for item in body["items"]]
            if page == body["pages"]:
                break
            page += 1
        applied = client.get("/api/v1/revisions", params={"state": "applied"}).json()
        bad = client.get("/api/v1/revisions", params={"state": "later"})
    assert page == 3  # 290 in pages of 100
    assert seen == [f"n{i:05d}" for i in range(COUNT - 1, 9, -1)]  # newest first
    assert [i["id"] for i in applied["items"]] == [f"n{i:05d}" for i in range(9, -1, -1)]
    assert bad.status_code == 400 and "state" in bad.text


def test_dashboard_shows_the_first_ten_and_links_the_rest(panel: Panel, ini: object) -> None:
    url = _target(panel, "dash", "n00009")
    with panel.open(database_url=url, alembic_config=ini) as apps:
        client = apps["viewer"]
        state = page_soup(client.get("/", headers={"HX-Request": "true"})).select_one("#state")
        link = state.select_one("#pending-all")
        history = page_soup(client.get(link["href"]))
        second = page_soup(client.get("/revisions", params={"state": "pending", "page": 2}))
        searched = page_soup(
            client.get("/revisions", params={"state": "applied", "q": "revision 1"})
        )
        wrong = client.get("/revisions", params={"state": "someday"})
    assert state.select_one("#state-badge").text == "290 pending"
    assert [li["data-revision"] for li in state.select("#pending li")] == [
        f"n{i:05d}" for i in range(10, 20)
    ]
    assert "280 more" in state.select_one("#pending-more").text
    assert link["href"] == "/revisions?state=pending"
    rows = history.select("#revisions tbody tr")
    assert len(rows) == 100 and {row["class"][0] for row in rows} == {"pending"}
    assert "290 of 300 revisions are pending" in history.select_one("#history-count").text
    assert history.select_one("#page-next")["href"] == "/revisions?page=2&state=pending"
    assert history.select_one("#history-filter input[name=state]")["value"] == "pending"
    assert second.select_one("#revisions tbody tr")["data-revision"] == "n00199"
    # "revision 1" among the applied n00000..n00009: only n00001.
    assert [r["data-revision"] for r in searched.select("#revisions tbody tr")] == ["n00001"]
    assert wrong.status_code == 400
    assert "state must be one of" in page_soup(wrong).select_one(".error-message").text
