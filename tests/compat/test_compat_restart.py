"""A restart with unchanged files imports no revision module in the panel's process.

Every revision of the project writes a line (its process id and file) to a marker file
when it is imported. A panel is started in a fresh process (the target stands at the first
revision, two are pending), serves its reading pages one after the other, and stops; then a
second one does the same with the cache the first left in ``VAR_DIR/cache`` (a restart).
What each page made the panel's own process import is read from the marker. A job then runs
the pending revisions: its worker (another process) does import them, which shows the
marker works and that the no-import seen in the panel is not an accident of the project.
Render children (previews) are other processes too, and may import what they render.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from helpers import TEST_SECRET_KEY
from initprojects import LINEAR, InitRev, init_project

from admin import audit, migrations
from admin.config import Settings
from admin.jobs import JobRequest, run_in_foreground
from admin.runtime import Runtime
from admin.store.models import JobKind, JobStatus, Source

TESTS = Path(__file__).resolve().parent.parent
MARKER_ENV = "APEX_TEST_IMPORT_MARKER"
MARKED = (
    "import os as _os, pathlib as _pathlib\n"
    f"with _pathlib.Path(_os.environ[{MARKER_ENV!r}]).open('a') as _out:\n"
    "    _out.write(f'{_os.getpid()} {__file__}\\n')\n"
)
FIRST, SECOND, HEAD = (rev.id for rev in LINEAR)
# Pages that show the graph alone.
GRAPH_PAGES = ("/revisions", "/api/v1/revisions")
# Pages that also plan (what is pending, one revision's steps, a preview's plan).
PLAN_PAGES = (
    "/",
    "/api/v1/status",
    f"/api/v1/revisions/{HEAD}",
    f"/revisions/{HEAD}",
    "/preview?direction=upgrade&target=head",
)

# One panel process: the app as `serve` builds it; before each page it writes "== PID PAGE"
# to the marker, so what the page made this process import follows that line.
PANEL = textwrap.dedent(
    """
    import os, sys
    from pathlib import Path
    from fastapi.testclient import TestClient
    from helpers import create_user, login
    from admin.config import Settings
    from admin.store.models import Role
    from admin.web.app import create_app

    marker = Path(os.environ["MARKER_ENV"])
    app = create_app(Settings(_env_file=None))
    with TestClient(app) as client:
        create_user(app.state.runtime, sys.argv[1], Role.REVIEWER)
        assert login(client, sys.argv[1]).status_code == 303
        for page in sys.argv[2:]:
            with marker.open("a") as out:
                out.write(f"== {os.getpid()} {page}\\n")
            answer = client.get(page)
            assert answer.status_code == 200, (page, answer.status_code, answer.text[:500])
    print(os.getpid())
    """
).replace("MARKER_ENV", MARKER_ENV)


@dataclass
class Restarted:
    marker: Path
    versions: Path
    panels: tuple[int, int]  # the two panel processes' pids
    imported: dict[tuple[int, str], list[str]]  # (panel pid, page) -> files it imported
    cache_before: dict[str, int]
    cache_after: dict[str, int]
    settings: Settings


def _marked(revisions: list[InitRev]) -> list[InitRev]:
    return [
        InitRev(r.id, r.down, r.message, r.upgrade, r.downgrade, r.imports, MARKED)
        for r in revisions
    ]


def _cache(var: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in (var / "cache").iterdir()}


def _by_page(marker: Path) -> dict[tuple[int, str], list[str]]:
    """What each panel process imported during each page (its own pid's lines only)."""
    pages: dict[tuple[int, str], list[str]] = {}
    current: dict[int, str] = {}
    for line in marker.read_text().splitlines():
        if line.startswith("== "):
            pid, page = line[3:].split(" ", 1)
            current[int(pid)] = page
            pages[(int(pid), page)] = []
            continue
        pid, path = line.split(" ", 1)
        if int(pid) in current:
            pages[(int(pid), current[int(pid)])].append(Path(path).name)
    return pages


@pytest.fixture(scope="module")
def restarted(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Restarted]:
    root = tmp_path_factory.mktemp("restart")
    marker = root / "imported.txt"
    target = root / "target.sqlite3"
    ini = init_project(root / "p", "generic", f"sqlite:///{target}", _marked(LINEAR))
    with sqlite3.connect(target) as db:  # at the first revision, without running it
        db.execute("CREATE TABLE alembic_version (version_num VARCHAR(32) PRIMARY KEY)")
        db.execute("INSERT INTO alembic_version VALUES (?)", (FIRST,))
        db.execute("CREATE TABLE accounts (id INTEGER PRIMARY KEY, name VARCHAR(50))")
    var = root / "var"
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None,
        database_url=f"sqlite:///{target}",
        admin_database_url=f"sqlite:///{root / 'store.sqlite3'}",
        var_dir=var,
        backup_dir=root / "backups",
        secret_key=TEST_SECRET_KEY,
        alembic_config=ini,
    )
    env = {
        **os.environ,
        MARKER_ENV: str(marker),
        "PYTHONPATH": os.pathsep.join([str(TESTS), str(TESTS / "compat")]),
        "DATABASE_URL": settings.database_url,
        "ADMIN_DATABASE_URL": settings.admin_database_url,
        "ALEMBIC_CONFIG": str(ini),
        "VAR_DIR": str(var),
        "SECRET_KEY": TEST_SECRET_KEY,
    }
    pids = []
    cache_before: dict[str, int] = {}
    for user in ("rita", "ravi"):
        done = subprocess.run(
            [sys.executable, "-c", PANEL, user, *GRAPH_PAGES, *PLAN_PAGES],
            env=env,
            capture_output=True,
            text=True,
            timeout=180,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        pids.append(int(done.stdout.split()[-1]))
        cache_before = cache_before or _cache(var)
    yield Restarted(
        marker,
        ini.parent / "migrations" / "versions",
        (pids[0], pids[1]),
        _by_page(marker),
        cache_before,
        _cache(var),
        settings,
    )


def test_a_restart_reads_the_graph_from_the_cache_and_imports_no_revision(
    restarted: Restarted,
) -> None:
    assert restarted.cache_before, "the first start left no cache of the revision files"
    assert restarted.cache_after == restarted.cache_before, "the restart rewrote the cache"
    for pid in restarted.panels:
        for page in GRAPH_PAGES:
            assert restarted.imported[(pid, page)] == [], (pid, page)


def test_a_job_worker_imports_the_revisions_the_panel_does_not(
    restarted: Restarted, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(MARKER_ENV, str(restarted.marker))
    before = set(restarted.marker.read_text().splitlines())
    rt = Runtime.open(restarted.settings)
    try:
        rt.upgrade_store(audit.Actor("test", None, Source.CLI))
        job = run_in_foreground(
            rt,
            JobRequest(JobKind.UPGRADE, "head"),
            audit.Actor("olga", "operator", Source.CLI, None),
            echo=lambda line: None,
        )
    finally:
        rt.close()
        migrations.dispose_engines()
    assert job.status == JobStatus.SUCCEEDED.value, job.error
    assert job.steps_done == job.steps_total == 2
    new = [
        line.split(" ", 1)
        for line in restarted.marker.read_text().splitlines()
        if line not in before and not line.startswith("== ")
    ]
    # The caller's own plan check is not counted here: see the test below.
    by_worker = [(int(pid), Path(path).name) for pid, path in new if int(pid) != os.getpid()]
    assert by_worker and not {pid for pid, _ in by_worker} & set(restarted.panels), new
    for revision in (SECOND, HEAD):
        assert [name for _, name in by_worker if name.startswith(revision)], new


def test_planning_in_the_panel_imports_no_revision(restarted: Restarted) -> None:
    """The dashboard's pending steps, a revision's page and a preview's plan are made in the
    panel's process; Alembic's plan objects must not import the revisions to be made."""
    imported = {
        f"panel {n} {page}": restarted.imported[(pid, page)]
        for n, pid in enumerate(restarted.panels, 1)
        for page in PLAN_PAGES
        if restarted.imported[(pid, page)]
    }
    assert imported == {}, json.dumps(imported, indent=1)
