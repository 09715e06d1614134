"""History (/revisions) and the revision page (/revisions/{id})."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import page_soup
from reading_support import (
    CRM_HEAD,
    CRM_INI,
    CRM_ORDER,
    IRREVERSIBLE,
    Apps,
    Panel,
    Rev,
    make_project,
    many_revisions,
    stamp,
)

from admin import migrations
from admin.config import normalize_database_url
from admin.migrations import Direction

MERGE = "b5f2c8d91e03"
SCRIPT = "<script>alert(1)</script>"


@pytest.fixture(scope="module")
def panel(tmp_path_factory: pytest.TempPathFactory) -> Panel:
    return Panel(tmp_path_factory.mktemp("revisions"))


@pytest.fixture(scope="module")
def crm(panel: Panel) -> Iterator[Apps]:
    """The CRM project on a SQLite target stamped at the merge revision."""
    url = f"sqlite:///{panel.root / 'crm.sqlite3'}"
    stamp(url, (MERGE,))
    with panel.open(database_url=url) as apps:
        yield apps


@pytest.fixture(scope="module")
def small(panel: Panel, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Apps]:
    """Two revisions with ids sharing a prefix; the newer one's message is markup."""
    ini = make_project(
        tmp_path_factory.mktemp("small"),
        [Rev("abc111111111", None, "first one"), Rev("abc222222222", "abc111111111", SCRIPT)],
    )
    url = f"sqlite:///{panel.root / 'small.sqlite3'}"
    stamp(url, ("abc111111111",))
    with panel.open(database_url=url, alembic_config=ini) as apps:
        yield apps


def _rows(soup: Any) -> list[Any]:
    return soup.select("#revisions tbody tr")


def _markers(row: Any) -> list[str]:
    return [m.text for m in row.select(".rev-markers .marker")]


def test_every_revision_newest_first_with_its_markers(crm: Apps) -> None:
    response = crm["viewer"].get("/revisions")
    assert response.status_code == 200
    soup = page_soup(response)
    rows = _rows(soup)
    graph = migrations.open_project(CRM_INI).graph()
    assert [r["data-revision"] for r in rows] == [rev.id for rev in graph.revisions]
    by_id = {r["data-revision"]: r for r in rows}
    applied = set(CRM_ORDER[:5])
    for rev in graph.revisions:
        row = by_id[rev.id]
        assert row.select_one(".rev-id a")["href"] == f"/revisions/{rev.id}"
        assert row.select_one(".rev-message").text == rev.message
        assert row.select_one(".rev-date time")["datetime"] == rev.create_date.isoformat()
        state = "applied" if rev.id in applied else "pending"
        assert row["class"] == [state] and state in _markers(row)
    assert _markers(by_id[CRM_HEAD]) == ["head", "pending"]
    assert _markers(by_id[MERGE]) == ["current", "merge point", "applied"]
    assert _markers(by_id["20240101000000"]) == ["branch point", "applied"]
    assert _markers(by_id["196dfdb50f6c"]) == ["base", "applied"]
    assert soup.select_one("#history-count").text.strip().startswith("8 revisions")
    assert soup.select_one(".pagination") is None


def test_the_graph_column_draws_the_branch_and_the_merge(crm: Apps) -> None:
    soup = page_soup(crm["viewer"].get("/revisions"))
    drawings = soup.select("#revisions tbody td.graph svg.lanes")
    assert len(drawings) == 8
    assert {svg["width"] for svg in drawings} == {"28"}
    merge = soup.select_one(f"tr[data-revision='{MERGE}'] svg")
    assert len(merge.select("line")) == 3
    # The database's current revision is a filled node.
    assert "current" in merge.select_one("circle")["class"]
    branch = soup.select_one("tr[data-revision='20240101000000'] svg")
    assert len(branch.select("line")) == 3


def test_filter_by_id_prefix_or_message_as_a_plain_get_form(crm: Apps) -> None:
    client = crm["viewer"]
    form = page_soup(client.get("/revisions")).select_one("form#history-filter")
    assert form["method"] == "get" and form["action"] == "/revisions"
    assert form.select_one("input#q")["name"] == "q"
    # htmx enhances it: typing swaps only the table.
    assert form["hx-get"] == "/revisions" and form["hx-target"] == "#history-table"
    assert "input changed delay:300ms" in form["hx-trigger"]

    by_prefix = page_soup(client.get("/revisions", params={"q": "3c9E"}))
    assert [r["data-revision"] for r in _rows(by_prefix)] == ["3c9e1f7a2b4d"]
    assert by_prefix.select_one("input#q")["value"] == "3c9E"
    by_message = page_soup(client.get("/revisions", params={"q": "PHOTOS"}))
    assert [r["data-revision"] for r in _rows(by_message)] == [MERGE, "3c9e1f7a2b4d"]
    assert "2 of 8 revisions match" in by_message.select_one("#history-count").text
    # A filtered list is not contiguous: no graph column.
    assert by_message.select("td.graph") == []
    nothing = page_soup(client.get("/revisions", params={"q": "no such thing"}))
    assert _rows(nothing) == [] and nothing.select_one("#no-revisions") is not None
    assert client.get("/revisions", params={"q": "x" * 101}).status_code == 400


def test_the_filter_answers_htmx_with_the_table_only(crm: Apps) -> None:
    response = crm["viewer"].get(
        "/revisions", params={"q": "merge"}, headers={"HX-Request": "true"}
    )
    assert response.status_code == 200 and "HX-Request" in response.headers["vary"]
    soup = page_soup(response)
    assert [el["id"] for el in soup.find_all(recursive=False)] == ["history-table"]
    assert [r["data-revision"] for r in _rows(soup)] == [MERGE]
    assert soup.select_one("form, h1") is None


def test_unreadable_database_means_no_applied_or_pending(panel: Panel) -> None:
    url = f"sqlite:///{panel.root / 'absent.sqlite3'}"
    with panel.open(database_url=url) as apps:
        soup = page_soup(apps["viewer"].get("/revisions"))
    assert "does not exist" in soup.select_one("#position-unknown").text
    rows = _rows(soup)
    assert len(rows) == 8
    assert all(not set(_markers(r)) & {"applied", "pending", "current"} for r in rows), (
        "no database markers without a database"
    )


@pytest.mark.slow
def test_five_thousand_revisions_in_pages_of_a_hundred(
    panel: Panel, tmp_path_factory: pytest.TempPathFactory
) -> None:
    ini = many_revisions(tmp_path_factory.mktemp("big"), 5000)
    url = f"sqlite:///{panel.root / 'big.sqlite3'}"
    stamp(url, ("n02500",))
    with panel.open(database_url=url, alembic_config=ini) as apps:
        client = apps["viewer"]
        first = page_soup(client.get("/revisions"))
        rows = _rows(first)
        assert len(rows) == 100
        assert rows[0]["data-revision"] == "n04999" and rows[-1]["data-revision"] == "n04900"
        assert _markers(rows[0]) == ["head", "pending"]
        assert first.select_one(".page-of").text == "Page 1 of 50"
        assert first.select_one("#page-next")["href"] == "/revisions?page=2"
        assert first.select_one("#page-prev") is None

        middle = page_soup(client.get("/revisions", params={"page": 25}))
        rows = _rows(middle)
        assert rows[0]["data-revision"] == "n02599" and rows[-1]["data-revision"] == "n02500"
        assert _markers(rows[-1]) == ["current", "applied"]
        assert middle.select_one("#page-prev")["href"] == "/revisions?page=24"
        # A page is cut from the whole graph: its lanes still join the pages around it.
        assert len(middle.select("td.graph svg")) == 100

        last = page_soup(client.get("/revisions", params={"page": 50}))
        assert _rows(last)[-1]["data-revision"] == "n00000"
        assert "base" in _markers(_rows(last)[-1])
        assert last.select_one("#page-next") is None

        filtered = page_soup(client.get("/revisions", params={"q": "revision 4"}))
        # "revision 4", "revision 4x", "revision 4xx" and "revision 4xxx": 1111 matches.
        assert "1111 of 5000 revisions match" in filtered.select_one("#history-count").text
        assert filtered.select_one("#page-next")["href"] == "/revisions?page=2&q=revision%204"

        missing = client.get("/revisions", params={"page": 51})
        assert missing.status_code == 404
        assert "50 page(s)" in page_soup(missing).select_one(".error-message").text
        assert client.get("/revisions", params={"page": 0}).status_code == 400
        assert client.get("/revisions", params={"page": "two"}).status_code == 400
        # The API pages the same way.
        api = client.get("/api/v1/revisions", params={"page": 50, "per_page": 100}).json()
        assert api["pages"] == 50 and api["items"][-1]["id"] == "n00000"


def _engine_step(url: str, rev: str, direction: Direction) -> migrations.StepSql:
    project = migrations.open_project(CRM_INI)
    found = project.graph().get(rev)
    if direction is Direction.UPGRADE:
        plan = migrations.make_plan(project, direction, rev, found.down_revisions)
    else:
        down = found.down_revisions[0] if found.down_revisions else "base"
        plan = migrations.make_plan(project, direction, down, (rev,))
    dialect = "postgresql" if url.startswith("postgresql") else "sqlite"
    [piece] = migrations.render(project, plan, url, dialect).steps
    return piece


def test_revision_page_by_prefix_with_links_source_hash_and_sql(crm: Apps) -> None:
    response = crm["viewer"].get("/revisions/3c9e")
    assert response.status_code == 200
    soup = page_soup(response)
    rev = migrations.open_project(CRM_INI).graph().get("3c9e1f7a2b4d")
    assert soup.select_one("#revision-id").text == rev.id
    assert soup.select_one("#revision-message").text == "Add property photos"
    assert [a["href"] for a in soup.select("#revision-parents a")] == ["/revisions/20240101000000"]
    assert [a["href"] for a in soup.select("#revision-children a")] == [f"/revisions/{MERGE}"]
    assert soup.select_one("#revision-path").text == f"alembic/versions/{rev.path.name}"
    content = rev.path.read_bytes()
    assert soup.select_one("#revision-sha256").text == hashlib.sha256(content).hexdigest()
    assert _markers(soup.select_one("#revision-markers")) == ["applied"]
    # The source, highlighted by Pygments with CSS classes (the CSP allows no inline style).
    code = soup.select_one("#source .highlight td.code")
    assert code.get_text() == content.decode()
    assert code.select("span.k, span.kn") and soup.select("#source [style]") == []
    stylesheet = soup.select_one("main link[rel=stylesheet]")["href"]
    assert stylesheet.endswith("/pygments.css")
    assert crm["viewer"].get(stylesheet).status_code == 200
    # Its own SQL, each way, as the engine renders it for the target's dialect.
    url = crm.app.state.settings.database_url
    up = soup.select_one("#upgrade-sql-text")
    assert up.get_text() == _engine_step(url, rev.id, Direction.UPGRADE).sql
    assert "CREATE TABLE property_photos" in up.get_text()
    assert up.select("span.k")
    down = soup.select_one("#downgrade-sql-text").get_text()
    assert down == _engine_step(url, rev.id, Direction.DOWNGRADE).sql
    assert "DROP TABLE property_photos" in down
    heading = soup.select_one("#downgrade-sql-heading").text
    assert "3c9e1f7a2b4d → 20240101000000" in " ".join(heading.split())


def test_merge_revision_lists_both_parents(crm: Apps) -> None:
    soup = page_soup(crm["viewer"].get(f"/revisions/{MERGE}"))
    assert "Merges" in [dt.text for dt in soup.select(".revision-meta dt")]
    assert [a.text for a in soup.select("#revision-parents a")] == ["3c9e1f7a2b4d", "8a1d4e6f0c27"]
    assert _markers(soup.select_one("#revision-markers")) == ["current", "merge point", "applied"]


def test_revision_that_cannot_be_rendered_offline_says_why(crm: Apps) -> None:
    soup = page_soup(crm["viewer"].get(f"/revisions/{IRREVERSIBLE}"))
    # On SQLite the upgrade needs batch mode, which reflects the live table.
    upgrade = soup.select_one("#upgrade-sql .not-renderable").text
    assert "batch mode" in upgrade and "copies the live table" in upgrade
    assert "line 27 of e47a90b3d6f1_drop_clients_passport_number.py" in upgrade
    assert soup.select_one("#upgrade-sql-text") is None
    # Its downgrade raises on purpose: the passport numbers are gone.
    downgrade = soup.select_one("#downgrade-sql .not-renderable").text
    assert f"Revision {IRREVERSIBLE} (drop clients passport number) cannot be downgraded" in (
        downgrade
    )


@pytest.mark.postgres
def test_revision_sql_for_postgresql(panel: Panel, pg_databases: Any) -> None:
    url = pg_databases.create("revpage")
    with panel.open(database_url=url) as apps:
        soup = page_soup(apps["viewer"].get(f"/revisions/{IRREVERSIBLE}"))
    migrations.dispose_engines()
    sql = soup.select_one("#upgrade-sql-text").get_text()
    expected = _engine_step(normalize_database_url(url), IRREVERSIBLE, Direction.UPGRADE).sql
    assert sql == expected and "DROP COLUMN passport_number" in sql
    assert "cannot be downgraded" in soup.select_one("#downgrade-sql .not-renderable").text
    assert "(postgresql, offline)" in soup.select_one("#step-sql-heading").text
    # An empty database: nothing applied yet.
    assert _markers(soup.select_one("#revision-markers")) == ["pending"]


def test_unknown_malformed_and_ambiguous_ids(crm: Apps, small: Apps) -> None:
    unknown = crm["viewer"].get("/revisions/ffffffffffff")
    assert unknown.status_code == 404
    assert "ffffffffffff" in page_soup(unknown).select_one(".error-message").text
    for bad in ("a-b", "x%20y", "%3Cscript%3E"):
        malformed = crm["viewer"].get(f"/revisions/{bad}")
        assert malformed.status_code == 400, bad
        assert "is not a revision id" in page_soup(malformed).select_one(".error-message").text
    assert crm["viewer"].get("/revisions/" + "a" * 300).status_code == 400
    ambiguous = small["viewer"].get("/revisions/abc")
    assert ambiguous.status_code == 400
    assert "ambiguous" in page_soup(ambiguous).select_one(".error-message").text


def test_preview_links_for_reviewers_only(crm: Apps) -> None:
    reviewer = page_soup(crm["reviewer"].get("/revisions/3c9e1f7a2b4d"))
    assert reviewer.select_one("#preview-upgrade")["href"] == (
        "/preview?direction=upgrade&target=3c9e1f7a2b4d"
    )
    assert reviewer.select_one("#preview-downgrade")["href"] == (
        "/preview?direction=downgrade&target=3c9e1f7a2b4d"
    )
    viewer = page_soup(crm["viewer"].get("/revisions/3c9e1f7a2b4d"))
    assert viewer.select_one("#preview-upgrade, #preview-downgrade") is None


def test_markup_in_a_message_is_text(small: Apps) -> None:
    listing = small["viewer"].get("/revisions")
    soup = page_soup(listing)
    cell = soup.select_one("tr[data-revision='abc222222222'] .rev-message")
    assert cell.text == SCRIPT and cell["title"] == SCRIPT
    assert SCRIPT not in listing.text
    page = small["viewer"].get("/revisions/abc222222222")
    soup = page_soup(page)
    assert soup.select_one("#revision-message").text == SCRIPT
    assert soup.select("main script") == [] and SCRIPT not in page.text
    # Highlighted source escapes it too.
    assert SCRIPT in soup.select_one("#source td.code").get_text()


def test_signed_out_is_sent_to_sign_in(crm: Apps) -> None:
    response = crm.anonymous.get("/revisions/3c9e", follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == "/login?next=/revisions/3c9e"


def test_pygments_stylesheet_is_generated(tmp_path: Path) -> None:
    from admin.web import assets, highlight

    assert (assets.static_dir() / "pygments.css").read_text() == highlight.stylesheet()
