"""Passwords, the sign-in throttle, the secret key and the files the panel creates.

- M3: the password policy (length, the 30,000 most common passwords, the user's and the
  product's names) holds on every path that sets a password: the account form (with the
  message on the page), ``schema-admin user add --password-stdin``, resets, the first admin.
- L4: failures slow down the account *from that address* and the address, with a doubling
  delay and Retry-After; a third party cannot lock a user out.
- L6: placeholders and low-entropy keys are refused as SECRET_KEY outside development.
- L5: var/ is 0700, the store, the demo target and the secret key 0600 whatever the umask;
  the first admin's password file goes once that password is changed.
"""

from __future__ import annotations

import os
import secrets
import stat
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from helpers import PASSWORD, csrf_token, login, page_soup
from projects import REPO_ROOT

from admin.auth import policy, throttle, users
from admin.config import Environment, Settings, load_settings, weak_secret_reason
from admin.errors import ConfigError, InvalidInput
from admin.runtime import Runtime
from admin.store.models import Role, utcnow

SETTING_NAMES = {name.upper() for name in Settings.model_fields}
COMMON = ["password123", "qwertyuiop", "1234567890", "P@ssw0rd2024!", "letmein!!!!1"]


def clean_env() -> dict[str, str]:
    """This process's environment without any of the panel's settings."""
    return {k: v for k, v in os.environ.items() if k.upper() not in SETTING_NAMES}


# M3: the policy.


def test_the_shipped_list_has_at_least_10000_common_passwords() -> None:
    common = policy.common_passwords()
    assert len(common) >= 10_000
    assert {"password123", "qwertyuiop", "1234567890"} <= common


@pytest.mark.parametrize("password", COMMON)
def test_common_passwords_are_refused(password: str) -> None:
    reason = policy.problem(password, username="alice")
    assert reason is not None and "common" in reason


@pytest.mark.parametrize(
    ("password", "username"),
    [
        ("apex-schema-admin", "alice"),
        ("ApexSchemaAdmin2024", "alice"),
        ("alice.wong.alice.wong", "alice.wong"),
        ("alice.wong-1987!", "alice.wong"),
        ("asia-property-exchange", "bob"),
    ],
)
def test_passwords_made_of_the_user_or_product_name_are_refused(
    password: str, username: str
) -> None:
    reason = policy.problem(password, username=username)
    assert reason is not None and "name" in reason, reason


@pytest.mark.parametrize(
    "password", ["short-1", "aaaaaaaaaaaa", "abababababab", "x" * (policy.MAX_BYTES + 1)]
)
def test_short_repetitive_or_huge_passwords_are_refused(password: str) -> None:
    assert policy.problem(password, username="alice") is not None


@pytest.mark.parametrize(
    "password", [PASSWORD, "sea otters juggle 7 lanterns", "Mango-Tractor-Velvet-42"]
)
def test_passphrases_pass(password: str) -> None:
    assert policy.problem(password, username="alice") is None


def test_random_one_time_passwords_pass_the_policy() -> None:
    for _ in range(200):
        assert policy.problem(users.passwords.random_password(), username="admin") is None


def test_the_account_form_refuses_a_common_password_with_the_reason_on_the_page(
    client: Any, role_users: dict[str, str]
) -> None:
    assert login(client, role_users["viewer"]).status_code == 303
    form = client.get("/account/password")
    rules = page_soup(form).select_one("#password-rules")
    assert rules is not None and "most common passwords" in rules.text
    token = csrf_token(client)
    for new in ["password123", "viewer-user-2024"]:
        answer = client.post(
            "/account/password",
            data={
                "csrf_token": token,
                "current_password": PASSWORD,
                "new_password": new,
                "confirm_password": new,
            },
        )
        assert answer.status_code == 400
        error = page_soup(answer).select_one("#password-error")
        assert error is not None and ("common" in error.text or "name" in error.text)
    # Nothing changed: the old password still signs in.
    client.cookies.clear()
    assert login(client, role_users["viewer"]).status_code == 303


def test_cli_user_add_refuses_a_common_password_in_one_line(tmp_path: Path) -> None:
    env = {
        k: v
        for k, v in os.environ.items()
        if k.upper() not in {n.upper() for n in Settings.model_fields}
    }
    env.update(
        ADMIN_DATABASE_URL=f"sqlite:///{tmp_path / 'store.sqlite3'}",
        DATABASE_URL=f"sqlite:///{tmp_path / 'target.sqlite3'}",
        VAR_DIR=str(tmp_path / "var"),
    )
    result = subprocess.run(
        [sys.executable, "-m", "admin", "user", "add", "bob", "--password-stdin"],
        input="qwertyuiop\n",
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and "common" in result.stderr, result.stderr


def test_a_reset_and_the_first_admin_go_through_the_policy(settings: Settings) -> None:
    rt = Runtime.open(settings)
    try:
        rt.upgrade_store(users.audit.Actor("tests", None, users.audit.Source.CLI))
        actor = users.audit.Actor("tests", None, users.audit.Source.CLI)
        with rt.transaction() as session:
            first = users.ensure_first_admin(session, actor)
        assert first is not None and policy.problem(first.password, username="admin") is None
        with rt.transaction() as session, pytest.raises(InvalidInput, match="common"):
            users.reset_password(session, actor, "admin", "password123")
        with rt.transaction() as session, pytest.raises(InvalidInput, match="common"):
            users.create(session, actor, "carol", Role.VIEWER, "1234567890")
    finally:
        rt.close()


# L4: the throttle.


def test_the_delay_doubles_per_failure_past_the_limit_and_says_so(settings: Settings) -> None:
    rt = Runtime.open(settings)
    rt.upgrade_store(users.audit.Actor("tests", None, users.audit.Source.CLI))
    limit = settings.login_max_failures
    try:
        with rt.transaction() as session:
            now = utcnow()
            waits = []
            for failure in range(limit + 4):
                throttle.record_failure(session, settings, "dave", "192.0.2.1", now=now)
                limited = throttle.check(session, settings, "dave", "192.0.2.1", now=now)
                waits.append(limited.retry_after if limited else 0)
                del failure
            assert waits == [0] * (limit - 1) + [1, 2, 4, 8, 16]
            # Once the wait is over, one more attempt may be made.
            later = now + timedelta(seconds=17)
            assert throttle.check(session, settings, "dave", "192.0.2.1", now=later) is None
            # The same account from another address is not slowed down at all.
            assert throttle.check(session, settings, "dave", "198.51.100.9", now=now) is None
    finally:
        rt.close()


def test_a_third_party_cannot_lock_a_user_out(client: Any, role_users: dict[str, str]) -> None:
    app = client.app
    attacker = TestClient(app, client=("203.0.113.66", 40000), follow_redirects=False)
    statuses = [
        attacker.post("/login", data={"username": "admin-user", "password": f"guess-{n}"})
        for n in range(12)
    ]
    refused = [answer for answer in statuses if answer.status_code == 429]
    assert refused, [a.status_code for a in statuses]
    assert all(int(answer.headers["Retry-After"]) >= 1 for answer in refused)
    # The admin, from their own address, signs in at once.
    admin = TestClient(app, client=("192.0.2.10", 40001), follow_redirects=False)
    assert login(admin, "admin-user").status_code == 303


# L6: the secret key.


@pytest.mark.parametrize(
    "key",
    [
        "your-secret-key-here-change-in-production",
        "0123456789abcdef0123456789abcdef",
        "abcdefghijklmnopqrstuvwxyz0123456789",
        "Tr0ub4dor&3Tr0ub4dor&3Tr0ub4dor&3",
        "please-replace-this-with-a-real-random-value",
    ],
)
@pytest.mark.parametrize("environment", ["production", "staging"])
def test_weak_or_placeholder_secret_keys_are_refused_outside_development(
    key: str, environment: str, tmp_path: Path
) -> None:
    assert weak_secret_reason(key) is not None
    with pytest.raises(ConfigError, match="^SECRET_KEY "):
        load_settings(_env_file=None, environment=environment, secret_key=key, var_dir=tmp_path)


def test_random_keys_pass_in_production(tmp_path: Path) -> None:
    for key in (secrets.token_urlsafe(48), secrets.token_hex(32), secrets.token_urlsafe(32)):
        settings = load_settings(
            _env_file=None, environment="production", secret_key=key, var_dir=tmp_path
        )
        assert settings.environment is Environment.PRODUCTION


# L5: modes.


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_var_store_target_and_key_are_private_whatever_the_umask(tmp_path: Path) -> None:
    env = {
        k: v
        for k, v in os.environ.items()
        if k.upper() not in {n.upper() for n in Settings.model_fields}
    }
    env["ALEMBIC_CONFIG"] = str(REPO_ROOT / "alembic.ini")
    result = subprocess.run(
        [sys.executable, "-m", "admin", "init-db"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=lambda: os.umask(0o022),  # noqa: PLW1509 - the point of the test
    )
    assert result.returncode == 0, result.stderr
    var = tmp_path / "var"
    assert _mode(var) == 0o700
    for name in ("admin.sqlite3", "demo.sqlite3"):
        assert _mode(var / name) == 0o600, name
    for extra in var.glob("*.sqlite3-*"):
        assert _mode(extra) == 0o600, extra.name
    # The development key is made on first use (the CLI's audit needs none): make it now.
    settings = load_settings(_env_file=None, var_dir=var)
    old = os.umask(0o022)
    try:
        assert settings.secret
    finally:
        os.umask(old)
    assert _mode(var / "secret-key") == 0o600


def test_an_old_world_readable_store_is_made_private_at_start(settings: Settings) -> None:
    store = Path(settings.admin_database_url.removeprefix("sqlite:///"))
    store.touch(mode=0o644)
    os.chmod(store, 0o644)
    Runtime.open(settings).close()
    assert _mode(store) == 0o600
    assert _mode(settings.var_dir) == 0o700


def test_the_initial_password_file_goes_once_the_password_is_changed(settings: Settings) -> None:
    from admin.web.app import create_app

    with TestClient(create_app(settings), follow_redirects=False) as client:
        path = settings.var_dir / users.INITIAL_PASSWORD_FILE
        assert _mode(path) == 0o600
        one_time = path.read_text().splitlines()[1]
        assert login(client, "admin", one_time).status_code == 303
        answer = client.post(
            "/account/password",
            data={
                "csrf_token": csrf_token(client),
                "current_password": one_time,
                "new_password": PASSWORD,
                "confirm_password": PASSWORD,
            },
        )
        assert answer.status_code == 303, answer.text
        assert not path.exists()
