"""Scale (issue 21): the revision files are watched in the background, so requests never
check them; a file added while the panel runs appears once the watcher notices it, and a
request meanwhile gets the old or the new graph, never an error."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from reading_support import Panel, many_revisions, stamp

from admin import migrations

COUNT = 50
_ADDED = '''"""added while the panel runs

Revision ID: n{n:05d}
Revises: n{down:05d}
Create Date: 2024-01-01 00:00:00
"""

revision = "n{n:05d}"
down_revision = "n{down:05d}"
branch_labels = None
depends_on = None


def upgrade():
    pass


def downgrade():
    pass
'''


@pytest.fixture(scope="module")
def panel(tmp_path_factory: pytest.TempPathFactory) -> Panel:
    return Panel(tmp_path_factory.mktemp("watcher"))


def _until(condition: object, seconds: float = 60.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "not seen in time"
        time.sleep(0.1)


def test_an_added_file_appears_and_requests_never_fail(
    panel: Panel, tmp_path_factory: pytest.TempPathFactory
) -> None:
    ini = many_revisions(tmp_path_factory.mktemp("added"), COUNT)
    versions = ini.parent / "migrations" / "versions"
    url = f"sqlite:///{panel.root / 'added.sqlite3'}"
    stamp(url, (f"n{COUNT - 1:05d}",))
    answers: list[tuple[int, list[str]]] = []
    with panel.open(database_url=url, alembic_config=ini) as apps:
        client = apps["viewer"]
        project = migrations.open_project(ini, apps.runtime.settings.cache_dir)
        _until(lambda: project.watched)
        assert client.get("/api/v1/status").json()["state"] == "up-to-date"
        stop = threading.Event()

        def poll() -> None:
            while not stop.is_set():
                response = client.get("/api/v1/status")
                answers.append((response.status_code, response.json().get("heads", [])))

        poller = threading.Thread(target=poll)
        poller.start()
        try:
            for n in (COUNT, COUNT + 1):
                (versions / f"n{n:05d}.py").write_text(_ADDED.format(n=n, down=n - 1))
                _until(lambda n=n: answers and answers[-1][1] == [f"n{n:05d}"])
            # Removed again: the head goes back.
            (versions / f"n{COUNT + 1:05d}.py").unlink()
            _until(lambda: answers[-1][1] == [f"n{COUNT:05d}"])
        finally:
            stop.set()
            poller.join()
        status = client.get("/api/v1/status").json()
    assert status["state"] == "behind" and status["pending_count"] == 1
    assert {code for code, _ in answers} == {200}
    seen = {tuple(heads) for _, heads in answers}
    assert seen <= {(f"n{n:05d}",) for n in (COUNT - 1, COUNT, COUNT + 1)}


def test_requests_do_not_check_the_files(
    panel: Panel, tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    ini = many_revisions(tmp_path_factory.mktemp("quiet"), COUNT)
    url = f"sqlite:///{panel.root / 'quiet.sqlite3'}"
    stamp(url, ("n00010",))
    with panel.open(database_url=url, alembic_config=ini) as apps:
        project = migrations.open_project(ini, apps.runtime.settings.cache_dir)
        _until(lambda: project.watched)
        checks: list[str] = []
        listing, folders = project._files, project._stamp

        def files() -> list[tuple[Path, object]]:
            checks.append(threading.current_thread().name)
            return listing()  # type: ignore[return-value]

        def stamp_of_folders() -> tuple[tuple[str, int], ...]:
            checks.append(threading.current_thread().name)
            return folders()

        monkeypatch.setattr(project, "_files", files)
        monkeypatch.setattr(project, "_stamp", stamp_of_folders)
        client = apps["viewer"]
        for path in ("/", "/api/v1/status", "/revisions", "/revisions?state=pending"):
            assert client.get(path).status_code == 200
        _until(lambda: "revision-watcher" in checks, 10)
    # Only the watcher's thread looked at the files and folders.
    assert set(checks) == {"revision-watcher"}


def test_a_reloaded_graph_is_prepared_before_requests_see_it(
    panel: Panel, tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What pages derive from the graph (what is pending where the database was seen, the
    history's lanes) is computed by the watcher before it swaps a reloaded graph in: the
    first request after a file is added only reads it."""
    from admin.migrations import status
    from admin.web import graph_lanes

    ini = many_revisions(tmp_path_factory.mktemp("prepared"), COUNT)
    versions = ini.parent / "migrations" / "versions"
    url = f"sqlite:///{panel.root / 'prepared.sqlite3'}"
    stamp(url, (f"n{COUNT - 1:05d}",))
    with panel.open(database_url=url, alembic_config=ini) as apps:
        client = apps["viewer"]
        project = migrations.open_project(ini, apps.runtime.settings.cache_dir)
        _until(lambda: project.watched)
        for path in ("/api/v1/status", "/revisions"):
            assert client.get(path).status_code == 200
        computed: list[str] = []

        def recorded(function: object) -> object:
            def call(*args: object) -> object:
                computed.append(threading.current_thread().name)
                return function(*args)  # type: ignore[operator]

            return call

        before = project.graph().fingerprint
        monkeypatch.setattr(status, "upgrade_order", recorded(status.upgrade_order))
        monkeypatch.setattr(graph_lanes, "layout", recorded(graph_lanes.layout))
        (versions / f"n{COUNT:05d}.py").write_text(_ADDED.format(n=COUNT, down=COUNT - 1))
        _until(lambda: project.graph().heads == (f"n{COUNT:05d}",))
        answer = client.get("/api/v1/status").json()
        assert answer["heads"] == [f"n{COUNT:05d}"] and answer["pending_count"] == 1
        assert client.get("/revisions").status_code == 200
    assert computed and set(computed) == {"revision-watcher"}, computed
    # Nothing derived from the graph before the reload is kept (its memory is given back).
    from admin import history

    kept = [*history._indexed, *graph_lanes._cache, *(key[0] for key in status._pending_kept)]
    assert kept and before not in kept
