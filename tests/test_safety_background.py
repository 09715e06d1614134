"""What pages and submissions do not wait for: the background analysis and the Apply plan
prepared before anyone clicks (real Alembic projects, rendered in real child processes)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from helpers import processes
from projects import Rev
from reading_support import many_revisions, stamp
from safety_support import PG_OFFLINE

from admin import analysis, migrations
from admin.analysis.background import ANALYZER
from admin.analysis.risk import forget
from admin.migrations import Direction, sql
from admin.migrations.renderer import RenderStopped

DROP = Rev(
    "b1b1b1b1b1b1",
    "a1a1a1a1a1a1",
    "drop the notes",
    "op.drop_column('t', 'notes')",
    "op.add_column('t', sa.Column('notes', sa.Text()))",
)
BASE = Rev(
    "a1a1a1a1a1a1",
    None,
    "create t",
    "op.create_table('t', sa.Column('id', sa.Integer, primary_key=True),"
    " sa.Column('notes', sa.Text()))",
    "op.drop_table('t')",
)
# Its offline rendering takes longer than the patience (2 s in these tests): it sleeps in
# upgrade() and downgrade().
SLOW = Rev(
    "c1c1c1c1c1c1",
    "b1b1b1b1b1b1",
    "slow to render",
    "import time\ntime.sleep(6)\nop.drop_column('t', 'id')",
    "import time\ntime.sleep(6)",
)


def _idle(timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while ANALYZER.busy():
        assert time.monotonic() < deadline, "the background analysis did not end"
        time.sleep(0.1)


@pytest.fixture(autouse=True)
def _cold() -> None:
    forget()


def test_a_hanging_rendering_falls_back_on_the_files_within_the_patience(
    alembic_project: Callable[..., Path], tmp_path: Path
) -> None:
    project = migrations.open_project(alembic_project([BASE, DROP, SLOW]))
    risks = analysis.analyze(
        project, PG_OFFLINE, ["b1b1b1b1b1b1", "c1c1c1c1c1c1"], var_dir=tmp_path, patience=2
    )
    # Without the patience this call waits for the sleeps and gives the rendered result.
    slow = risks["c1c1c1c1c1c1"]
    assert slow.provisional
    # The file alone still shows the drop (what a submission asks to confirm).
    assert "destructive" in slow.upgrade.kinds
    assert "id" in " ".join(b.reason for b in slow.upgrade.badges)
    # The background goes on and keeps the full analysis for the next request.
    _idle()
    again = analysis.analyze(project, PG_OFFLINE, ["c1c1c1c1c1c1"], var_dir=tmp_path, patience=2)
    assert not again["c1c1c1c1c1c1"].provisional


def test_a_list_polled_while_its_revisions_are_analysed_waits_only_the_first_time(
    alembic_project: Callable[..., Path], tmp_path: Path
) -> None:
    project = migrations.open_project(alembic_project([BASE, DROP, SLOW]))
    ids = ["b1b1b1b1b1b1", "c1c1c1c1c1c1"]
    first = analysis.analyze(
        project, PG_OFFLINE, ids, var_dir=tmp_path, patience=2, patience_again=False
    )
    assert first["c1c1c1c1c1c1"].provisional
    # A poll while the slow revision is still being analysed: a patience it would outlast
    # (its rendering sleeps 2 x 6 s) is not waited again, the files answer.
    poll = analysis.analyze(
        project, PG_OFFLINE, ids, var_dir=tmp_path, patience=120, patience_again=False
    )
    assert poll["c1c1c1c1c1c1"].provisional and ANALYZER.busy()
    # A submission (patience_again, the default) waits again and gets the full analysis.
    submitted = analysis.analyze(project, PG_OFFLINE, ids, var_dir=tmp_path, patience=120)
    assert not submitted["c1c1c1c1c1c1"].provisional
    # Once the analyser is idle, the next first request waits again (a cache of its own,
    # so the revision must be analysed anew).
    _idle()
    forget()
    again = analysis.analyze(
        project,
        PG_OFFLINE,
        ["b1b1b1b1b1b1"],
        var_dir=tmp_path / "other",
        patience=30,
        patience_again=False,
    )
    assert not again["b1b1b1b1b1b1"].provisional


def test_the_apply_plan_is_rendered_and_analysed_before_anyone_clicks(
    alembic_project: Callable[..., Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = migrations.open_project(alembic_project([BASE, DROP]))
    url = f"sqlite:///{tmp_path / 'target.sqlite3'}"
    ANALYZER.prepare_apply(project, url, tmp_path / "var", ())
    _idle()

    # What the preview then asks for is kept: no child process is started for it.
    def no_child(_: object) -> object:
        raise AssertionError("the Apply plan was rendered again")

    monkeypatch.setattr(sql, "renderer_for", no_child)
    plan = migrations.make_plan(project, Direction.UPGRADE, "head", ())
    script = migrations.render(project, plan, url, "sqlite")
    assert "DROP COLUMN notes" in script.text or "notes" in script.text
    risks = analysis.analyze(project, url, plan.revision_ids, var_dir=tmp_path / "var")
    assert "destructive" in risks["b1b1b1b1b1b1"].upgrade.kinds
    assert not risks["b1b1b1b1b1b1"].provisional
    # Asked again while nothing changed: nothing is queued.
    ANALYZER.prepare_apply(project, url, tmp_path / "var", ())
    assert not ANALYZER.busy()


def _render_children(config: Path) -> list[int]:
    """Pids of live render children (``admin.migrations.offline``) for the project ``config``."""
    path = str(config).encode()
    return [
        pid
        for pid, argv, state in processes()
        if state != "Z" and b"admin.migrations.offline" in argv and path in argv
    ]


def test_closing_a_renderer_stops_the_render_under_way(
    alembic_project: Callable[..., Path],
) -> None:
    config = alembic_project([BASE, DROP, SLOW])
    project = migrations.open_project(config)
    plan = migrations.make_plan(project, Direction.UPGRADE, "head", ())
    outcome: list[BaseException | None] = []

    def render() -> None:
        try:
            migrations.render(project, plan, PG_OFFLINE, "postgresql")
            outcome.append(None)
        except BaseException as exc:  # noqa: BLE001 - the test reads it
            outcome.append(exc)

    thread = threading.Thread(target=render)
    thread.start()
    deadline = time.monotonic() + 30
    while not _render_children(config):
        assert time.monotonic() < deadline, "no render child started"
        time.sleep(0.05)
    sql.close_renderers(project.config_path)
    # The render sleeps 6 s in its last step: the caller learns at once that it stopped.
    thread.join(4)
    assert not thread.is_alive()
    assert isinstance(outcome[0], RenderStopped), outcome
    assert "shutting down" in str(outcome[0])
    assert _render_children(config) == []


def test_a_stopping_panel_stops_its_background_analysis(
    alembic_project: Callable[..., Path], make_settings: Callable[..., Any]
) -> None:
    from fastapi.testclient import TestClient

    from admin.web.app import create_app

    config = alembic_project([BASE, DROP, SLOW])
    settings = make_settings(alembic_config=config)
    with TestClient(create_app(settings)):
        with TestClient(create_app(settings)):
            # What the dashboard asks for: its Apply plan prepared (base -> head, through the
            # slow revision), as the PostgreSQL target it would be.
            project = migrations.open_project(config, settings.cache_dir)
            ANALYZER.prepare_apply(project, PG_OFFLINE, settings.var_dir, ())
            deadline = time.monotonic() + 30
            while not _render_children(config):
                assert time.monotonic() < deadline, "the Apply plan was not being rendered"
                time.sleep(0.05)
            rendering = _render_children(config)
        # Another panel of this process still works on the project: its render goes on.
        assert set(rendering) <= set(_render_children(config)) and ANALYZER.busy()
    # The last panel has stopped: no render child of the project is left, nothing is queued.
    assert _render_children(config) == []
    _idle(10)


def test_the_panel_plans_and_analyses_without_alembics_revision_map(tmp_path: Path) -> None:
    """The Apply plan and the analysis of a whole history (past ``ONE_BY_ONE`` revisions,
    rendered each way in one child) are planned from the panel's graph: the web process
    builds no Alembic revision map (its memory and time at 50,000 revisions) for them."""
    ini = many_revisions(tmp_path / "p", 40)
    project = migrations.open_project(ini, tmp_path / "var" / "cache")
    url = f"sqlite:///{tmp_path / 'target.sqlite3'}"
    stamp(url, ("n00029",))
    ANALYZER.prepare_apply(project, url, tmp_path / "var", ("n00029",))
    _idle()
    ids = [rev.id for rev in project.graph().revisions]
    risks = analysis.analyze(project, url, ids, var_dir=tmp_path / "var")
    assert len(risks) == 40 and not any(risk.provisional for risk in risks.values())
    plan = migrations.make_plan(project, Direction.UPGRADE, "head", ("n00029",))
    assert plan.revision_ids == [f"n{i:05d}" for i in range(30, 40)]
    assert "_revision_map" not in vars(project.script().revision_map)


def test_a_list_reads_each_file_once_while_its_analysis_waits(
    alembic_project: Callable[..., Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Until the background analysis reaches them, a list's badges come from the files; a
    page asked again (after an idle minute, a poll) does not parse them again."""
    from admin.analysis import risk

    project = migrations.open_project(alembic_project([BASE, DROP]))
    url = f"sqlite:///{tmp_path / 'target.sqlite3'}"
    monkeypatch.setattr(ANALYZER, "request", lambda *args, **kwargs: False)  # never reached
    read: list[str] = []
    real = risk._read_source
    monkeypatch.setattr(risk, "_read_source", lambda rev: read.append(rev.id) or real(rev))
    ids = ["a1a1a1a1a1a1", "b1b1b1b1b1b1"]
    for _ in range(3):
        risks = analysis.analyze(project, url, ids, var_dir=tmp_path / "var", wait=False)
        assert all(risks[rid].provisional for rid in ids)
    assert sorted(read) == ids
