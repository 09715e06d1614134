"""Offline SQL of `alembic init` projects: rendered outside the panel, the same every time.

- the preview runs env.py (and its fileConfig) in a child process: the panel's logging,
  its audit JSON log among it, is what it was before any preview;
- a revision with module-level state renders the same SQL on every render;
- the same plan gives byte-identical SQL and the same fingerprint in two processes with
  different PYTHONHASHSEED (Alembic orders a merge's version-table statements by set order);
- a target the parser cannot place is a 400 on every route and exit 2 in the CLI.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from helpers import TEST_SECRET_KEY, create_user, login
from initprojects import BRANCHED, LINEAR, MODULE_STATE, init_project

from admin import migrations
from admin.config import Settings
from admin.migrations import sql as sql_module
from admin.store.models import Role
from admin.web.app import create_app


def _settings(tmp_path: Path, ini: Path, **values: Any) -> Settings:
    return Settings(  # type: ignore[call-arg]
        _env_file=None,
        database_url=f"sqlite:///{tmp_path / 'target.sqlite3'}",
        admin_database_url=f"sqlite:///{tmp_path / 'store.sqlite3'}",
        var_dir=tmp_path / "var",
        secret_key=TEST_SECRET_KEY,
        alembic_config=ini,
        **values,
    )


@pytest.fixture
def reviewer(tmp_path: Path) -> Iterator[tuple[TestClient, Path]]:
    """A signed-in reviewer on a panel whose project is the generic template (fileConfig)."""
    ini = init_project(tmp_path / "p", "generic", "sqlite:///unused.db", [*LINEAR, MODULE_STATE])
    app = create_app(_settings(tmp_path, ini, audit_log_json=True))
    with TestClient(app) as client:
        create_user(app.state.runtime, "rita", Role.REVIEWER)
        assert login(client, "rita").status_code == 303
        yield client, ini


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def test_previews_leave_the_panels_logging_alone(reviewer: tuple[TestClient, Path]) -> None:
    client, _ = reviewer
    root, alembic_log = logging.getLogger(), logging.getLogger("alembic")
    handlers_before = list(root.handlers)
    alembic_before = (alembic_log.level, list(alembic_log.handlers), alembic_log.disabled)
    events = logging.getLogger("admin.audit.events")
    seen = _Records()
    events.addHandler(seen)
    level, disabled = events.level, events.disabled
    # What serve's logging set-up does with AUDIT_LOG_JSON (another test may have done else).
    events.setLevel(logging.INFO)
    events.disabled = False
    try:
        for _ in range(2):
            answer = client.get(
                "/api/v1/sql", params={"direction": "upgrade", "target": "head", "from": "base"}
            )
            assert answer.status_code == 200, answer.text
            assert "CREATE TABLE plans" in answer.json()["sql"]
        assert list(root.handlers) == handlers_before
        assert not events.disabled
        assert (alembic_log.level, alembic_log.handlers, alembic_log.disabled) == alembic_before
        # Both previews reached the audit JSON log, after the first had run env.py.
        previewed = [r for r in seen.records if "sql-previewed" in r.getMessage()]
        assert len(previewed) == 2
        assert "alembic.runtime.migration" not in logging.Logger.manager.loggerDict or not [
            r for r in seen.records if r.name.startswith("alembic")
        ]
    finally:
        events.removeHandler(seen)
        events.setLevel(level)
        events.disabled = disabled


def test_module_level_state_renders_the_same_every_time(
    reviewer: tuple[TestClient, Path],
) -> None:
    _, ini = reviewer
    project = migrations.open_project(ini)
    plan = migrations.make_plan(project, migrations.Direction.UPGRADE, "head", ())
    texts = set()
    for _ in range(3):
        sql_module._cache.clear()  # render again, not from this process's cache
        script = migrations.render(project, plan, "postgresql+psycopg2://u@h/db", "postgresql")
        assert not script.errors, [s.error for s in script.errors]
        texts.add(script.text)
    assert len(texts) == 1
    assert "INSERT INTO plans" in texts.pop()


def _sql(tmp_path: Path, ini: Path, seed: str) -> str:
    env = {
        **os.environ,
        "DATABASE_URL": "postgresql://u@127.0.0.1:1/db",
        "ADMIN_DATABASE_URL": f"sqlite:///{tmp_path / 'store.sqlite3'}",
        "VAR_DIR": str(tmp_path / f"var{seed}"),
        "ALEMBIC_CONFIG": str(ini),
        "PYTHONHASHSEED": seed,
    }
    done = subprocess.run(
        [sys.executable, "-m", "admin", "sql", "upgrade", "heads", "--from", "base"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_a_merge_renders_byte_identical_sql_whatever_the_hash_seed(tmp_path: Path) -> None:
    ini = init_project(tmp_path / "p", "generic", "sqlite:///unused.db", BRANCHED)
    outputs = {seed: _sql(tmp_path, ini, seed) for seed in ("1", "2", "3", "random")}
    assert len(set(outputs.values())) == 1, outputs
    # The panel's own render (this process has yet another seed) gives the same script.
    project = migrations.open_project(ini)
    plan = migrations.make_plan(project, migrations.Direction.UPGRADE, "heads", ())
    script = migrations.render(
        project, plan, "postgresql+psycopg2://u@127.0.0.1:1/db", "postgresql"
    )
    assert script.text.strip() == outputs["1"].strip()
    down = migrations.make_plan(project, migrations.Direction.DOWNGRADE, "base", ("e4e4e4e4e4e4",))
    first = migrations.render(project, down, "postgresql+psycopg2://u@h/db", "postgresql")
    sql_module._cache.clear()
    again = migrations.render(project, down, "postgresql+psycopg2://u@h/db", "postgresql")
    assert first.fingerprint == again.fingerprint


MALFORMED = ["heads+1", "head@-1", "base+x", "@", "a" * 300, "head\x00", "head; drop"]


@pytest.mark.parametrize("target", MALFORMED)
def test_a_target_the_parser_cannot_place_is_a_400_everywhere(tmp_path: Path, target: str) -> None:
    ini = init_project(tmp_path / "p", "generic", "sqlite:///unused.db")
    app = create_app(_settings(tmp_path, ini))
    with TestClient(app) as client:
        create_user(app.state.runtime, "olga", Role.OPERATOR)
        assert login(client, "olga").status_code == 303
        answers = [
            client.get("/api/v1/sql", params={"direction": "upgrade", "target": target}),
            client.get("/preview", params={"direction": "upgrade", "target": target}),
            client.post(
                "/api/v1/jobs",
                json={"kind": "upgrade", "target": target},
                headers={"X-CSRF-Token": _csrf(client)},
            ),
        ]
    for answer in answers:
        assert answer.status_code == 400, (answer.request.url, answer.status_code, answer.text)
        assert "Traceback" not in answer.text


def _csrf(client: TestClient) -> str:
    from helpers import csrf_token

    return csrf_token(client)
