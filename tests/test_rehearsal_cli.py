"""schema-admin rehearse on a real PostgreSQL target: the job's log here, the summary and the
round trip's differences at the end, exit codes; bad targets in one line."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from rehearsal_support import execute, state

from admin import migrations
from tests.test_cli_engine import move, one_line_error, schema_admin
from tests.test_rehearsal import BASE, PROJECT

pytestmark = pytest.mark.postgres


def test_rehearse_from_the_command_line(
    tmp_path: Path, alembic_project: Callable[..., Path], pg_databases: Any
) -> None:
    ini = alembic_project(PROJECT)
    url = pg_databases.create("rc")
    move(migrations.open_project(ini), url, migrations.Command.UPGRADE, BASE)
    execute(url, "INSERT INTO items SELECT i, 'item ' || i, i FROM generate_series(1, 500) i")
    before = state(url, ini)

    def cli(*args: str) -> Any:
        return schema_admin(tmp_path, ini, url, *args)

    assert "no revision matches 'zzz999'" in one_line_error(cli("rehearse", "zzz999"))
    done = cli("rehearse")
    assert done.returncode == 0, done.stderr
    assert "job succeeded" in done.stdout
    assert "rehearsal 1 succeeded" in done.stderr and "(report: /rehearsals/1)" in done.stderr
    assert "round trip: index public.ix_items_name: left behind" in done.stderr
    assert state(url, ini) == before

    move(migrations.open_project(ini), url, migrations.Command.UPGRADE, "heads")
    assert "nothing to upgrade" in one_line_error(cli("rehearse"))
