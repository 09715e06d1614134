"""Schemathesis against a real server on PostgreSQL (store and target): with an admin's
token, a viewer's token and no token, every check (``--checks all``: no 5xx, documented
statuses, content types, headers and bodies, auth ignored or not, Allow on 405...), every
phase (examples, coverage, fuzzing, stateful). Also ``make test-api``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import LiveServer

from admin import audit
from admin.auth import tokens
from admin.config import Settings
from admin.runtime import Runtime
from admin.store.models import Source

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

CONFIG = Path(__file__).with_name("schemathesis.toml")
# Schemathesis with a deeper recursion limit: Hypothesis describes its filters by parsing
# their source (ast.parse) from deep inside the generator, and CPython 3.11.7 then fails with
# "SystemError: AST constructor recursion depth mismatch" (python/cpython#106905) when the
# parse starts close to the default limit of 1000 frames.
LAUNCH = (
    "import sys; sys.setrecursionlimit(10_000); sys.argv[0] = 'schemathesis'; "
    "from schemathesis.cli import schemathesis; sys.exit(schemathesis())"
)
# Fixed, so that a run can be replayed; the examples per operation keep it near 20 s a caller.
SEED = "20261207"
EXAMPLES = "15"


@pytest.fixture(scope="module")
def api_server(
    pg_databases: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[LiveServer, dict[str, str]]]:
    server = LiveServer(
        tmp_path_factory.mktemp("schemathesis"),
        env_overrides={
            "ADMIN_DATABASE_URL": pg_databases.create("st_store"),
            "DATABASE_URL": pg_databases.create("st_target"),
        },
    ).start()
    server.add_user("st-admin", "admin")
    server.add_user("st-viewer", "viewer")
    env = server.env()
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None,
        admin_database_url=env["ADMIN_DATABASE_URL"],
        database_url=env["DATABASE_URL"],
        secret_key=env["SECRET_KEY"],
        var_dir=Path(env["VAR_DIR"]),
    )
    runtime = Runtime.open(settings)
    actor = audit.Actor("tests", None, Source.CLI)
    try:
        with runtime.transaction() as session:
            secrets_ = {
                role: tokens.create(
                    session, settings, actor, name=f"schemathesis {role}", username=f"st-{role}"
                ).secret
                for role in ("admin", "viewer")
            }
    finally:
        runtime.close()
    yield server, secrets_
    server.stop()


@pytest.mark.parametrize("caller", ["admin", "viewer", "anonymous"])
def test_schemathesis_finds_no_server_error_and_no_schema_violation(
    api_server: tuple[LiveServer, dict[str, str]], caller: str, tmp_path: Path
) -> None:
    server, secrets_ = api_server
    command = [
        sys.executable,
        "-c",
        LAUNCH,
        "--config-file",
        str(CONFIG),
        "run",
        f"{server.url}/api/v1/openapi.json",
        "--checks",
        "all",
        "--phases",
        "examples,coverage,fuzzing,stateful",
        "--max-examples",
        EXAMPLES,
        "--seed",
        SEED,
        # One worker: with two threads, Hypothesis's ast.parse of lambda sources races on
        # CPython 3.11's global AST recursion counter (SystemError "AST constructor recursion
        # depth mismatch", python/cpython gh-106905).
        "--workers",
        "1",
        "--no-color",
    ]
    if caller in secrets_:
        command += ["-H", f"Authorization: Bearer {secrets_[caller]}"]
    result = subprocess.run(
        command,
        cwd=tmp_path,  # its cache (.schemathesis/) stays out of the checkout
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "SCHEMATHESIS_HOOKS": ""},
    )
    report = result.stdout[-6000:] + result.stderr[-2000:]
    assert result.returncode == 0, report
    assert " passed" in result.stdout and "failures" not in result.stdout.lower(), report
    log = server.log_path.read_text()
    assert "Traceback" not in log and "unexpected error" not in log, log[-3000:]
