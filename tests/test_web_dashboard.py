"""The dashboard: the engine's state of the target with what to do, pending revisions, roles."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
from helpers import page_soup
from reading_support import CRM_HEAD, CRM_INI, CRM_ORDER, Panel, Rev, linear, make_project, stamp

from admin import entrypoint, migrations
from admin.analysis.background import ANALYZER
from admin.config import normalize_database_url
from admin.migrations import Direction

UNREACHABLE_URL = "postgresql://postgres:s3cret-pw@127.0.0.1:1/nowhere"


@pytest.fixture(scope="module")
def panel(tmp_path_factory: pytest.TempPathFactory) -> Panel:
    return Panel(tmp_path_factory.mktemp("dashboard"))


def _sqlite(panel: Panel, name: str, heads: tuple[str, ...] | None) -> str:
    url = f"sqlite:///{panel.root / (name + '.sqlite3')}"
    stamp(url, heads)
    return url


def _crm_plan_order(current: tuple[str, ...]) -> list[str]:
    project = migrations.open_project(CRM_INI)
    return migrations.make_plan(project, Direction.UPGRADE, "heads", current).revision_ids


def _analysed(timeout: float = 120) -> None:
    """Wait until the background analysis has nothing left to do."""
    deadline = time.monotonic() + timeout
    while ANALYZER.busy():
        assert time.monotonic() < deadline, "the background analysis did not end"
        time.sleep(0.05)


def _state(response: object) -> object:
    soup = page_soup(response)
    state = soup.select_one("#migration-state #state")
    assert state is not None
    return state


SQLITE_STATES: dict[str, Callable[[Panel], str]] = {
    "missing": lambda p: f"sqlite:///{p.root / 'never-created.sqlite3'}",
    "empty": lambda p: _sqlite(p, "empty", None),
    "behind": lambda p: _sqlite(p, "behind", (CRM_ORDER[3],)),
    "up-to-date": lambda p: _sqlite(p, "at-head", (CRM_HEAD,)),
    "unknown-revision": lambda p: _sqlite(p, "unknown", ("0badc0ffee00",)),
    "unreachable": lambda p: UNREACHABLE_URL,
}


@pytest.mark.parametrize("expected", list(SQLITE_STATES))
def test_every_state_with_its_sentence(panel: Panel, expected: str) -> None:
    url = SQLITE_STATES[expected](panel)
    status = migrations.read_status(migrations.open_project(CRM_INI), normalize_database_url(url))
    assert status.state.value == expected
    with panel.open(database_url=url) as apps:
        response = apps["viewer"].get("/")
    assert response.status_code == 200
    state = _state(response)
    assert state["data-state"] == expected
    assert state.select_one("#state-message").text == status.message
    badge = state.select_one("#state-badge").text
    current = state.select_one("#current-revisions").text
    pending = [li["data-revision"] for li in state.select("#pending li")]
    heads = [a.text for a in state.select("#head-revisions a")]
    assert heads == [CRM_HEAD]
    if expected == "missing":
        assert badge == "Database missing" and "does not exist" in status.message
        assert "not known" in current and pending == []
    elif expected == "empty":
        assert badge == "Empty database: 8 pending"
        assert "base" in current
        assert pending == _crm_plan_order(()) and len(pending) == 8
    elif expected == "behind":
        assert badge == "5 pending"
        assert [a.text for a in state.select("#current-revisions a")] == [CRM_ORDER[3]]
        assert pending == _crm_plan_order((CRM_ORDER[3],))
        links = [a["href"] for a in state.select("#pending a")]
        assert links == [f"/revisions/{rev}" for rev in pending]
    elif expected == "up-to-date":
        assert badge == "Up to date" and pending == []
        assert "nothing to do" in status.message
    elif expected == "unknown-revision":
        assert badge == "Unknown revision"
        assert state.select_one("#current-revisions code.unknown").text == "0badc0ffee00"
        assert "stamp" in status.message
    else:
        assert badge == "Unreachable"
        assert "Check DATABASE_URL" in status.message
        assert "127.0.0.1:1" in state.select_one("#state-message").text
        # The password is masked everywhere on the page.
        assert "s3cret-pw" not in response.text and "***" in response.text


def test_apply_link_for_operators_preview_for_reviewers_nothing_for_viewers(panel: Panel) -> None:
    with panel.open(database_url=_sqlite(panel, "roles", (CRM_ORDER[0],))) as apps:
        pages = {role: page_soup(apps[role].get("/")) for role in apps.clients}
    for role in ("operator", "admin"):
        link = pages[role].select_one("#apply-link")
        assert link is not None and link["href"] == "/preview?direction=upgrade&target=head"
        assert link.text == "Apply…"
    assert pages["reviewer"].select_one("#apply-link") is None
    preview = pages["reviewer"].select_one("#preview-link")
    assert preview is not None and preview["href"] == "/preview?direction=upgrade&target=head"
    assert pages["viewer"].select_one("#apply-link, #preview-link") is None
    # The page names the target (password masked elsewhere) and its environment.
    assert pages["viewer"].select_one("#target .target-url").text.startswith("sqlite:///")
    assert pages["viewer"].select_one("#target .env-badge").text == "development"


def test_no_apply_link_when_nothing_is_pending(panel: Panel) -> None:
    with panel.open(database_url=_sqlite(panel, "head-roles", (CRM_HEAD,))) as apps:
        page = page_soup(apps["operator"].get("/"))
    assert page.select_one("#apply-link") is None and page.select_one("#pending") is None


def test_state_is_an_htmx_fragment_that_refreshes_itself(panel: Panel) -> None:
    with panel.open(database_url=_sqlite(panel, "fragment", (CRM_ORDER[3],))) as apps:
        client = apps["viewer"]
        full = client.get("/")
        # Once its revisions are analysed (on a busy machine, past the list's patience),
        # the state refreshes at its own pace (every second while badges are provisional).
        _analysed()
        fragment = client.get("/", headers={"HX-Request": "true"})
    assert "HX-Request" in full.headers["vary"] and "HX-Request" in fragment.headers["vary"]
    soup = page_soup(fragment)
    assert soup.select_one("html, h1, #recent-jobs") is None
    assert [el.name for el in soup.find_all(recursive=False)] == ["div"]
    state = soup.select_one("#state")
    assert state["hx-get"] == "/" and state["hx-trigger"] == "every 5s"
    assert state["hx-swap"] == "outerHTML"
    refresh = state.select_one("a.refresh")
    assert refresh["href"] == "/" and refresh["hx-get"] == "/"
    assert state.select_one("#state-badge").text == "5 pending"
    # The full page has the places the jobs and backups work fills.
    page = page_soup(full)
    assert page.select_one("#recent-jobs") is not None
    assert page.select_one("#last-backup") is not None


def test_signed_out_goes_to_sign_in(panel: Panel) -> None:
    with panel.open() as apps:
        response = apps.anonymous.get("/", follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"] == "/login"


def test_several_heads_and_a_long_pending_list_is_cut(
    panel: Panel, tmp_path_factory: pytest.TempPathFactory
) -> None:
    revisions = linear(60)
    revisions.append(Rev("side00001", "r00010", "a second head"))
    ini = make_project(tmp_path_factory.mktemp("heads"), revisions)
    url = _sqlite(panel, "heads", None)
    with panel.open(database_url=url, alembic_config=ini) as apps:
        page = page_soup(apps["operator"].get("/"))
    state = page.select_one("#state")
    assert state["data-state"] == "several-heads"
    assert state.select_one("#state-badge").text == "Several heads"
    assert "merge" in state.select_one("#state-message").text
    assert sorted(a.text for a in state.select("#head-revisions a")) == ["r00059", "side00001"]
    assert len(state.select("#pending li")) == 10
    assert "51 more" in state.select_one("#pending-more").text
    assert state.select_one("#apply-link")["href"] == "/preview?direction=upgrade&target=heads"


def test_a_message_with_markup_is_text(
    panel: Panel, tmp_path_factory: pytest.TempPathFactory
) -> None:
    ini = make_project(
        tmp_path_factory.mktemp("xss"),
        [
            Rev("aaaa00000001", None, "first"),
            Rev("bbbb00000002", "aaaa00000001", "<script>alert(1)</script>"),
        ],
    )
    url = _sqlite(panel, "xss", ("aaaa00000001",))
    with panel.open(database_url=url, alembic_config=ini) as apps:
        response = apps["viewer"].get("/")
    soup = page_soup(response)
    item = soup.select_one("#pending li[data-revision='bbbb00000002']")
    assert item is not None and "<script>alert(1)</script>" in item.text
    assert "<script>alert(1)</script>" not in response.text
    assert soup.select("main script") == []


@pytest.mark.postgres
def test_states_on_postgresql(panel: Panel, pg_databases: object) -> None:
    url = pg_databases.create("dash")  # type: ignore[attr-defined]
    missing = pg_databases.url_for_missing("dashmiss")  # type: ignore[attr-defined]
    seen = {}
    for heads, name in (
        (None, "empty"),
        ((CRM_ORDER[4],), "behind"),
        ((CRM_HEAD,), "up-to-date"),
        (("0badc0ffee00",), "unknown-revision"),
    ):
        stamp(url, heads)
        with panel.open(database_url=url) as apps:
            state = _state(apps["operator"].get("/"))
        seen[name] = state["data-state"]
        if name == "behind":
            assert [li["data-revision"] for li in state.select("#pending li")] == (
                _crm_plan_order((CRM_ORDER[4],))
            )
            assert state.select_one("#apply-link") is not None
    with panel.open(database_url=missing) as apps:
        state = _state(apps["viewer"].get("/"))
        seen["missing"] = state["data-state"]
        assert "init-db" in state.select_one("#state-message").text
    migrations.dispose_engines()
    assert seen == {k: k for k in seen} and len(seen) == 5


def test_a_degraded_start_is_said_until_the_target_reaches_its_head(panel: Panel) -> None:
    url = _sqlite(panel, "degraded", (CRM_ORDER[3],))
    entrypoint._write_degraded(
        panel.settings(database_url=url),
        entrypoint.Degraded("the start-up migration (job 7) failed: boom <b>", 7, "2026-11-26"),
    )
    try:
        with panel.open(database_url=url) as apps:
            behind = _state(apps["viewer"].get("/"))
            fragment = page_soup(apps["viewer"].get("/", headers={"HX-Request": "true"}))
            stamp(url, (CRM_HEAD,))
            at_head = _state(apps["viewer"].get("/"))
    finally:
        entrypoint.degraded_path(panel.settings()).unlink(missing_ok=True)
    notice = behind.select_one("#degraded")
    assert notice is not None and notice["role"] == "alert"
    assert "Started degraded" in notice.text and "2026-11-26" in notice.text
    assert notice.select_one("a")["href"] == "/jobs/7"
    assert notice.select_one("code").text == "the start-up migration (job 7) failed: boom <b>"
    assert fragment.select_one("#state #degraded") is not None  # the polled part says it too
    # Once the database is at the head the record no longer applies.
    assert at_head.select_one("#degraded") is None
