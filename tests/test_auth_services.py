"""The sign-in services without HTTP: hashing, throttling, sessions, API tokens."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from helpers import PASSWORD, create_user
from passlib.hash import pbkdf2_sha256
from sqlalchemy import select

from admin import audit
from admin.auth import login, passwords, sessions, throttle, tokens, users
from admin.config import Settings
from admin.runtime import Runtime
from admin.store.models import AuditEvent, LoginFailure, Role, Source, User, UserSession, utcnow

ADDR = "192.0.2.10"
ACTOR = audit.Actor("tests", "admin", Source.CLI)


@pytest.fixture
def runtime(settings: Settings) -> Iterator[Runtime]:
    rt = Runtime.open(settings)
    rt.upgrade_store(ACTOR)
    yield rt
    rt.close()


def _events(rt: Runtime, action: str) -> list[AuditEvent]:
    with rt.sessions() as session:
        return list(session.scalars(select(AuditEvent).where(AuditEvent.action == action)))


def test_stored_hash_is_argon2id(runtime: Runtime) -> None:
    user = create_user(runtime, "alice", Role.VIEWER)
    assert user.password_hash.startswith("$argon2id$")


def test_pbkdf2_hash_is_rehashed_to_argon2id_at_sign_in(runtime: Runtime) -> None:
    create_user(runtime, "old", Role.VIEWER)
    with runtime.transaction() as session:
        users.get(session, "old").password_hash = pbkdf2_sha256.hash(PASSWORD)
    with runtime.transaction() as session:
        attempt = login.sign_in(session, runtime.settings, "old", PASSWORD, client_addr=ADDR)
    assert attempt.ok
    with runtime.sessions() as session:
        assert users.get(session, "old").password_hash.startswith("$argon2id$")
    [event] = _events(runtime, "password-rehashed")
    assert event.details["old_scheme"] == "pbkdf2_sha256"


def test_hash_costs_come_from_the_settings_and_a_change_rehashes_at_sign_in(
    make_settings,  # type: ignore[no-untyped-def]
) -> None:
    from pydantic import ValidationError

    fields = Settings.model_fields
    assert fields["password_hash_memory_kib"].default == passwords.DEFAULT_MEMORY_KIB == 65536
    assert fields["password_hash_time_cost"].default == passwords.DEFAULT_TIME_COST == 3
    strong = Runtime.open(make_settings(password_hash_memory_kib=65536, password_hash_time_cost=3))
    try:
        strong.upgrade_store(ACTOR)
        user = create_user(strong, "carol", Role.VIEWER)
        assert user.password_hash.startswith("$argon2id$v=19$m=65536,t=3,p=4$")
    finally:
        strong.close()
    # The same store under lower costs: the next sign-in makes the hash again at them.
    light = Runtime.open(make_settings(password_hash_memory_kib=19456, password_hash_time_cost=2))
    try:
        with light.transaction() as session:
            attempt = login.sign_in(session, light.settings, "carol", PASSWORD, client_addr=ADDR)
        assert attempt.ok
        with light.sessions() as session:
            rehashed = users.get(session, "carol").password_hash
        assert rehashed.startswith("$argon2id$v=19$m=19456,t=2,p=4$")
        [event] = _events(light, "password-rehashed")
        assert event.details["old_scheme"] == "argon2"
    finally:
        light.close()
    for weak in ({"password_hash_memory_kib": 8192}, {"password_hash_time_cost": 1}):
        with pytest.raises(ValidationError):
            make_settings(**weak)


def test_oversized_password_is_refused_before_any_hashing(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    create_user(runtime, "bob", Role.VIEWER)

    def no_hashing(*args: object, **kwargs: object) -> None:
        raise AssertionError("a hash was computed")

    monkeypatch.setattr(passwords._context(), "verify", no_hashing)
    monkeypatch.setattr(passwords._context(), "verify_and_update", no_hashing)
    monkeypatch.setattr(passwords._context(), "hash", no_hashing)
    with runtime.transaction() as session:
        attempt = login.sign_in(session, runtime.settings, "bob", "x" * 1025, client_addr=ADDR)
    assert (attempt.ok, attempt.status) == (False, 400)
    [event] = _events(runtime, "login-failed")
    assert event.details["reason"] == "password too long"


def test_unknown_user_costs_a_verification(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []
    real = passwords._context().verify

    def counting(secret: str, hash_: str, **kw: object) -> bool:
        calls.append(hash_)
        return real(secret, hash_)

    monkeypatch.setattr(passwords._context(), "verify", counting)
    with runtime.transaction() as session:
        attempt = login.sign_in(session, runtime.settings, "nobody", "whatever-1", client_addr=ADDR)
    assert not attempt.ok and attempt.message == login.WRONG
    assert calls == [passwords._dummy_hash()]


def test_account_is_throttled_after_max_failures(runtime: Runtime) -> None:
    create_user(runtime, "carol", Role.VIEWER)
    limit = runtime.settings.login_max_failures
    statuses = []
    for _ in range(limit + 2):
        with runtime.transaction() as session:
            statuses.append(
                login.sign_in(session, runtime.settings, "carol", "wrong-pass-1", client_addr=ADDR)
            )
    assert [a.status for a in statuses] == [401] * limit + [429, 429]
    # The right password does not get through while throttled.
    with runtime.transaction() as session:
        attempt = login.sign_in(session, runtime.settings, "carol", PASSWORD, client_addr=ADDR)
    assert attempt.status == 429 and "Too many failed sign-ins" in attempt.message
    assert len(_events(runtime, "login-failed")) == limit + 3


def test_failures_outside_the_window_do_not_count(runtime: Runtime) -> None:
    settings = runtime.settings
    old = utcnow() - timedelta(minutes=settings.login_window_minutes + 1)
    with runtime.transaction() as session:
        for _ in range(settings.login_max_failures):
            throttle.record_failure(session, settings, "dave", ADDR, now=old)
        assert throttle.check(session, settings, "dave", ADDR) is None
        throttle.record_failure(session, settings, "dave", ADDR)
        # Recording prunes what fell out of the window.
        assert len(session.scalars(select(LoginFailure)).all()) == 1


def test_address_is_throttled_across_accounts(make_settings) -> None:  # type: ignore[no-untyped-def]
    rt = Runtime.open(make_settings(login_max_failures_per_address=3, login_max_failures=100))
    rt.upgrade_store(ACTOR)
    try:
        with rt.transaction() as session:
            for name in ("a1", "a2", "a3"):
                throttle.record_failure(session, rt.settings, name, ADDR)
            limited = throttle.check(session, rt.settings, "a4", ADDR)
            assert limited is not None and limited.scope == "address"
            assert throttle.check(session, rt.settings, "a4", "198.51.100.1") is None
    finally:
        rt.close()


def _start(rt: Runtime, user: User) -> sessions.Started:
    with rt.transaction() as session:
        return sessions.start(session, rt.settings, session.merge(user), client_addr=ADDR)


def test_session_token_is_stored_only_as_keyed_hash(runtime: Runtime) -> None:
    started = _start(runtime, create_user(runtime, "erin", Role.VIEWER))
    with runtime.sessions() as session:
        row = session.scalars(select(UserSession)).one()
        assert row.token_hash != started.token and started.token not in row.token_hash
        assert len(row.token_hash) == 64
        assert sessions.resolve(session, runtime.settings, started.token) is not None
        assert sessions.resolve(session, runtime.settings, started.token + "x") is None


@pytest.mark.parametrize("which", ["idle", "absolute"])
def test_session_expiry(runtime: Runtime, which: str) -> None:
    settings = runtime.settings
    started = _start(runtime, create_user(runtime, "frank", Role.VIEWER))
    with runtime.transaction() as session:
        row = session.get(UserSession, started.row.id)
        assert row is not None
        if which == "idle":
            row.last_seen_at = utcnow() - timedelta(
                minutes=settings.session_idle_minutes, seconds=1
            )
        else:
            row.created_at = utcnow() - timedelta(hours=settings.session_max_hours)
            row.expires_at = utcnow() - timedelta(seconds=1)
    with runtime.transaction() as session:
        assert sessions.resolve(session, settings, started.token) is None
    with runtime.sessions() as session:
        assert session.get(UserSession, started.row.id) is None


def test_disabling_a_user_ends_their_sessions(runtime: Runtime) -> None:
    user = create_user(runtime, "gina", Role.VIEWER)
    started = _start(runtime, user)
    with runtime.transaction() as session:
        users.set_disabled(session, ACTOR, "gina", True)
    with runtime.transaction() as session:
        assert sessions.resolve(session, runtime.settings, started.token) is None


def test_api_token_lifecycle(runtime: Runtime) -> None:
    settings = runtime.settings
    create_user(runtime, "bot", Role.OPERATOR)
    with runtime.transaction() as session:
        created = tokens.create(session, settings, ACTOR, name="ci", username="bot")
    assert created.secret.startswith(tokens.PREFIX)
    with runtime.transaction() as session:
        row = session.get(type(created.row), created.row.id)
        assert row is not None and created.secret not in (row.token_hash, row.prefix)
        found = tokens.authenticate(session, settings, created.secret)
        assert found is not None and found.user.username == "bot"
        assert found.last_used_at is not None
    with runtime.transaction() as session:
        tokens.revoke(session, ACTOR, created.row.id)
    with runtime.transaction() as session:
        assert tokens.authenticate(session, settings, created.secret) is None
    assert [e.action for e in _events(runtime, "api-token-created")] == ["api-token-created"]
    assert len(_events(runtime, "api-token-revoked")) == 1


def test_expired_api_token_is_refused(runtime: Runtime) -> None:
    create_user(runtime, "bot2", Role.VIEWER)
    with runtime.transaction() as session:
        created = tokens.create(
            session, runtime.settings, ACTOR, name="short", username="bot2", expires_in_days=1
        )
    with runtime.transaction() as session:
        later = utcnow() + timedelta(days=2)
        assert tokens.authenticate(session, runtime.settings, created.secret, now=later) is None


def test_services_do_not_import_the_web_framework() -> None:
    import subprocess
    import sys

    code = (
        "import sys; import admin.auth.login, admin.auth.sessions, admin.auth.tokens, "
        "admin.auth.throttle, admin.auth.csrf, admin.auth.users; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('fastapi', 'starlette')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
