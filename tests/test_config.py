"""Settings: defaults, URL normalization, one-line refusals with exit code 2, README table."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from admin.config import Settings, load_settings, mask_url, normalize_database_url
from admin.errors import ConfigError

REPO_ROOT = Path(__file__).resolve().parents[1]


def _clean_env(**extra: str) -> dict[str, str]:
    names = {name.upper() for name in Settings.model_fields}
    env = {k: v for k, v in os.environ.items() if k.upper() not in names}
    env.update(extra)
    return env


def test_embedded_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    settings = load_settings()
    assert settings.database_url == "sqlite:///var/demo.sqlite3"
    assert settings.admin_database_url == "sqlite:///var/admin.sqlite3"
    assert settings.environment.value == "development"
    assert not settings.backups_gate_migrations


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        (
            "postgresql://asia:asia@db:5432/asia_crm_staging",
            "postgresql+psycopg2://asia:asia@db:5432/asia_crm_staging",
        ),
        ("postgres://u:p@h/db", "postgresql+psycopg2://u:p@h/db"),
        ("postgresql+psycopg2://u@h/db", "postgresql+psycopg2://u@h/db"),
        ("sqlite:///var/demo.sqlite3", "sqlite:///var/demo.sqlite3"),
    ],
)
def test_urls_are_normalized_to_psycopg2(given: str, expected: str) -> None:
    assert normalize_database_url(given) == expected


def test_seed_url_gives_a_psycopg2_engine(make_settings) -> None:  # type: ignore[no-untyped-def]
    from sqlalchemy import create_engine

    settings = make_settings(database_url="postgresql://asia:asia@db:5432/asia_crm_staging")
    engine = create_engine(settings.database_url)
    assert engine.dialect.driver == "psycopg2"


def test_password_is_masked() -> None:
    assert mask_url("postgresql://asia:s3cret@db/x") == "postgresql://asia:***@db/x"
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        database_url="postgresql://asia:s3cret@db/x",
        secret_key="k" * 10 + "abcdefghijklmnopqrstuvwxyz",
    )
    assert "s3cret" not in settings.target_url_masked


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"DATABASE_URL": "not a url"}, "DATABASE_URL"),
        ({"DATABASE_URL": "mysql://u@h/db"}, "DATABASE_URL"),
        ({"ADMIN_DATABASE_URL": "postgresql://u@h"}, "ADMIN_DATABASE_URL"),
        ({"ENVIRONMENT": "prod"}, "ENVIRONMENT"),
        ({"ENVIRONMENT": "production"}, "SECRET_KEY"),
        ({"ENVIRONMENT": "staging", "SECRET_KEY": "changeme"}, "SECRET_KEY"),
        ({"ENVIRONMENT": "production", "SECRET_KEY": "short"}, "SECRET_KEY"),
        ({"PORT": "eighty"}, "PORT"),
        ({"LOCK_TIMEOUT": "soon"}, "LOCK_TIMEOUT"),
        ({"INIT_DB": "perhaps"}, "INIT_DB"),
    ],
)
def test_bad_setting_stops_start_up_with_one_line_and_exit_2(
    tmp_path: Path, env: dict[str, str], variable: str
) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "admin", "store", "status"],
        env=_clean_env(**env),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert variable in lines[0]
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "var").exists(), "nothing may be written before the settings hold"


def test_load_settings_raises_config_error() -> None:
    with pytest.raises(ConfigError, match="^DATABASE_URL "):
        load_settings(database_url="http://example.com")


def test_url_errors_never_echo_a_password() -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(database_url="mysql://u:hunter2@h/db")
    assert "hunter2" not in str(info.value)


def test_strong_key_accepted_in_production(make_settings) -> None:  # type: ignore[no-untyped-def]
    settings = make_settings(environment="production")
    assert settings.is_production
    assert settings.backups_gate_migrations


def test_dev_secret_is_generated_once_with_mode_0600(tmp_path: Path) -> None:
    settings = Settings(_env_file=None, var_dir=tmp_path)  # type: ignore[call-arg]
    first = settings.secret
    path = tmp_path / "secret-key"
    assert path.stat().st_mode & 0o777 == 0o600
    assert Settings(_env_file=None, var_dir=tmp_path).secret == first  # type: ignore[call-arg]


def test_dotenv_is_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text("DATABASE_URL=postgresql://a:b@h/crm\nPORT=9001\n")
    settings = load_settings()
    assert settings.database_url == "postgresql+psycopg2://a:b@h/crm"
    assert settings.port == 9001


def test_every_setting_is_documented_in_the_readme() -> None:
    readme = (REPO_ROOT / "README.md").read_text()
    documented = set(re.findall(r"^\|\s*`([A-Z0-9_]+)`\s*\|", readme, flags=re.MULTILINE))
    expected = {name.upper() for name in Settings.model_fields}
    missing = sorted(expected - documented)
    assert not missing, f"settings missing from the README table: {missing}"
    unknown = sorted(documented - expected - {"TEST_DATABASE_URL", "CI"})
    assert not unknown, f"README documents settings that do not exist: {unknown}"
