"""Everything that changes something is audited: every route and every command, walked.

The routes come from the app itself (``app.routes``) and the commands from the argparse
parser, so a route or a command added later is covered without anyone remembering to:

- every POST/PUT/PATCH/DELETE route, and every GET route whose path says it hands out
  data or SQL (``AUDITED_GET_WORDS``: downloads, exports, previews, SQL), needs a recipe
  in ``WEB_RECIPES``: how to call it, and the audit action the call must record;
- every command needs a recipe in ``CLI_RECIPES``, or a line in ``CLI_READ_ONLY`` saying
  why it changes nothing;
- a route or command without either fails ``test_every_*_has_a_recipe`` with its name.

A recipe's test runs it once and checks that the action was appended to the chain.
Separately, every unsafe route refuses a cross-site request, and that refusal is audited.

To cover a new route: add ``("POST", "/things/{thing_id}"): Recipe("thing-changed",
make_a_thing_and_change_it)`` below, where the function gets the ``Web`` helper (clients
signed in per role, CSRF-aware ``post``, the runtime, the runner) and returns the response.
"""

from __future__ import annotations

import argparse
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from audit_support import InProcessCli, events_after, last_id
from fastapi.routing import iter_route_contexts
from fastapi.testclient import TestClient
from helpers import PASSWORD, create_user, csrf_token, login
from projects import PROJECT_ENV, Rev, write_revision
from sqlalchemy import create_engine, select, text
from sqlalchemy.engine import make_url

from admin import audit, migrations
from admin.auth import tokens, users
from admin.backups import actions
from admin.cli import build_parser
from admin.config import Settings
from admin.jobs import queue
from admin.runtime import Runtime
from admin.store.models import AppliedFile, Backup, BackupStatus, Role, Source
from admin.web.app import create_app
from tests.conftest import TEST_SECRET_KEY

MUTATING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# A GET whose path has one of these hands out data or SQL: reading it is audited by design.
AUDITED_GET_WORDS = ("download", "export", "preview", "/sql")

FAST, SLOW = "c1c1c1c1c1c1", "c2c2c2c2c2c2"
WEB_PROJECT = [
    Rev(FAST, None, "runs no DDL", "op.execute('SELECT 1')"),
    # Long enough to cancel while it runs (Python in the revision: SQLite has no pg_sleep).
    Rev(SLOW, FAST, "slow", "import time\ntime.sleep(3)"),
]
CLI_PROJECT = [WEB_PROJECT[0], Rev(SLOW, FAST, "fast too", "op.execute('SELECT 2')")]


def _settings(root: Path, revisions: list[Rev], **overrides: Any) -> Settings:
    versions = root / "project" / "migrations" / "versions"
    versions.mkdir(parents=True, exist_ok=True)
    (versions.parent / "env.py").write_text(PROJECT_ENV)
    for rev in revisions:
        write_revision(versions, rev)
    ini = root / "project" / "alembic.ini"
    ini.write_text("[alembic]\nscript_location = %(here)s/migrations\n")
    values: dict[str, Any] = {
        "database_url": f"sqlite:///{root / 'target.sqlite3'}",
        "admin_database_url": f"sqlite:///{root / 'store.sqlite3'}",
        "var_dir": root / "var",
        "backup_dir": root / "backups",
        "secret_key": TEST_SECRET_KEY,
        "alembic_config": ini,
        **overrides,
    }
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


def set_target(url: str, revision: str | None) -> None:
    """Put the target at ``revision`` (or base) without running anything (no revision of
    these projects creates a table)."""
    migrations.create_database(url)
    engine = create_engine(url)
    try:
        with engine.begin() as connection:
            connection.execute(text("DROP TABLE IF EXISTS alembic_version"))
            if revision is not None:
                connection.execute(
                    text("CREATE TABLE alembic_version (version_num VARCHAR(32) PRIMARY KEY)")
                )
                connection.execute(text("INSERT INTO alembic_version VALUES (:r)"), {"r": revision})
    finally:
        engine.dispose()
    migrations.dispose_engines()


# The web.


def audited_routes(app: Any) -> set[tuple[str, str]]:
    """(method, path) of every route that must write an audit event."""
    found: set[tuple[str, str]] = set()
    for route in iter_route_contexts(app.routes):
        path = route.path
        if not path or not route.methods:
            continue
        for method in route.methods:
            if method in MUTATING or (
                method == "GET" and any(word in path for word in AUDITED_GET_WORDS)
            ):
                found.add((method, path))
    return found


def _collection_app() -> Any:
    """The app as built (routes only: no lifespan runs, nothing connects)."""
    return create_app(Settings(_env_file=None, secret_key=TEST_SECRET_KEY))  # type: ignore[call-arg]


@dataclass
class Web:
    """One app for every recipe: a SQLite store, a small project as the target."""

    client: TestClient
    settings: Settings
    clients: dict[str, TestClient] = field(default_factory=dict)
    serial: int = 0

    @property
    def runtime(self) -> Runtime:
        runtime: Runtime = self.client.app.state.runtime  # type: ignore[attr-defined]
        return runtime

    def unique(self, prefix: str) -> str:
        self.serial += 1
        return f"{prefix}{self.serial}"

    def user(self, role: str = "viewer", name: str | None = None) -> str:
        username = name or self.unique(f"{role}-")
        create_user(self.runtime, username, Role(role))
        return username

    def new_client(self) -> TestClient:
        return TestClient(self.client.app)  # type: ignore[arg-type]

    def as_role(self, role: str) -> TestClient:
        """A client signed in as a user of ``role`` (one per role, reused)."""
        if role not in self.clients:
            client = self.new_client()
            assert login(client, self.user(role, f"{role}-cover")).status_code == 303
            self.clients[role] = client
        return self.clients[role]

    def post(self, client: TestClient, path: str, **form: str) -> httpx.Response:
        return client.post(
            path, data={"csrf_token": csrf_token(client), **form}, follow_redirects=False
        )

    def fingerprint(self, target: str) -> str:
        project = migrations.open_project(self.settings.alembic_config)
        _, current = migrations.read_current(project, self.settings.database_url)
        plan = migrations.make_plan(
            project, migrations.Direction.UPGRADE, target, current, max_age=0
        )
        return plan.fingerprint

    def wait(self, job_id: int) -> None:
        assert self.client.app.state.runner.wait(job_id, timeout=60)  # type: ignore[attr-defined]

    def apply(self, target: str) -> int:
        """An upgrade job from the Apply form (the target reset to base first)."""
        set_target(self.settings.database_url, None)
        answer = self.post(
            self.as_role("operator"),
            "/jobs",
            kind="upgrade",
            target=target,
            plan_fingerprint=self.fingerprint(target),
        )
        assert answer.status_code == 303, answer.text[:300]
        return int(answer.headers["location"].rsplit("/", 1)[1])

    def api_token(self, role: str) -> str:
        actor = audit.Actor("tests", None, Source.CLI)
        with self.runtime.transaction() as session:
            created = tokens.create(
                session,
                self.settings,
                actor,
                name=self.unique("token "),
                username=self.user(role),
            )
        return created.secret


@dataclass(frozen=True)
class Recipe:
    """How to call a route, and the audit action the call must record."""

    expect: str
    call: Callable[[Web], httpx.Response]


def _login(web: Web) -> httpx.Response:
    username = web.user("viewer")
    return login(web.new_client(), username)


def _logout(web: Web) -> httpx.Response:
    client = web.new_client()
    login(client, web.user("viewer"))
    return web.post(client, "/logout")


def _change_password(web: Web) -> httpx.Response:
    client = web.new_client()
    login(client, web.user("viewer"))
    new = "another-horse-battery-7"
    return web.post(
        client,
        "/account/password",
        current_password=PASSWORD,
        new_password=new,
        confirm_password=new,
    )


def _disabled_user(web: Web) -> str:
    username = web.user("viewer")
    with web.runtime.transaction() as session:
        users.set_disabled(session, audit.Actor("tests", None, Source.CLI), username, True)
    return username


def _revoke(web: Web) -> httpx.Response:
    web.api_token("viewer")
    with web.runtime.reads() as session:
        newest = max(row.id for row in tokens.list_tokens(session))
    return web.post(web.as_role("admin"), f"/tokens/{newest}/revoke")


def _submit(web: Web) -> httpx.Response:
    set_target(web.settings.database_url, None)
    answer = web.post(
        web.as_role("operator"),
        "/jobs",
        kind="upgrade",
        target=FAST,
        plan_fingerprint=web.fingerprint(FAST),
    )
    web.wait(int(answer.headers["location"].rsplit("/", 1)[1]))
    return answer


def _api_submit(web: Web) -> httpx.Response:
    set_target(web.settings.database_url, None)
    answer = web.new_client().post(
        "/api/v1/jobs",
        json={"kind": "upgrade", "target": FAST},
        headers={"Authorization": f"Bearer {web.api_token('operator')}"},
    )
    web.wait(int(answer.json()["id"]))
    return answer


def _rehearse(web: Web) -> httpx.Response:
    set_target(web.settings.database_url, None)
    answer = web.post(
        web.as_role("operator"), "/rehearsals", target=FAST, plan_fingerprint=web.fingerprint(FAST)
    )
    web.wait(_job_of(answer))
    return answer


def _api_rehearse(web: Web) -> httpx.Response:
    set_target(web.settings.database_url, None)
    answer = web.new_client().post(
        "/api/v1/rehearsals",
        json={"target": FAST},
        headers={"Authorization": f"Bearer {web.api_token('operator')}"},
    )
    web.wait(int(answer.json()["job_id"]))
    return answer


def _cancel(web: Web) -> httpx.Response:
    job_id = web.apply(SLOW)
    # Cancel while the slow step runs (the job exists, queued or running).
    answer = web.post(web.as_role("operator"), f"/jobs/{job_id}/cancel")
    web.wait(job_id)
    return answer


def _preview(web: Web) -> httpx.Response:
    set_target(web.settings.database_url, None)
    return web.as_role("reviewer").get("/preview", params={"target": FAST})


def _download(web: Web) -> httpx.Response:
    set_target(web.settings.database_url, None)
    return web.as_role("reviewer").get("/preview/download", params={"target": FAST})


def _api_sql(web: Web) -> httpx.Response:
    set_target(web.settings.database_url, None)
    return web.as_role("reviewer").get("/api/v1/sql", params={"target": FAST})


def _job_of(answer: httpx.Response) -> int:
    assert answer.status_code == 303, answer.text[:300]
    return int(answer.headers["location"].rsplit("/", 1)[1])


def _take_backup(web: Web) -> httpx.Response:
    answer = web.post(web.as_role("operator"), "/backups")
    web.wait(_job_of(answer))
    return answer


def _backup_id(web: Web, *, fresh: bool = False) -> int:
    """A verified backup of the target (taken through the page when there is none)."""
    with web.runtime.reads() as session:
        kept = session.scalar(
            select(Backup.id)
            .where(Backup.status == BackupStatus.VERIFIED.value)
            .order_by(Backup.id.desc())
            .limit(1)
        )
    if kept is not None and not fresh:
        return int(kept)
    job_id = _job_of(_take_backup(web))
    with web.runtime.reads() as session:
        backup_id = queue.get(session, job_id).backup_id
    assert backup_id is not None
    return backup_id


def _verify_backup(web: Web) -> httpx.Response:
    answer = web.post(web.as_role("operator"), f"/backups/{_backup_id(web)}/verify")
    web.wait(_job_of(answer))
    return answer


def _restore_backup(web: Web) -> httpx.Response:
    answer = web.post(
        web.as_role("operator"),
        f"/backups/{_backup_id(web)}/restore",
        mode="new",
        confirm=actions.confirmation_name(web.settings),
    )
    web.wait(_job_of(answer))
    return answer


def _delete_backup(web: Web) -> httpx.Response:
    backup_id = _backup_id(web, fresh=True)
    return web.post(web.as_role("admin"), f"/backups/{backup_id}/delete", confirm="yes")


def _verify_chain(web: Web) -> httpx.Response:
    return web.post(web.as_role("admin"), "/audit/verify")


def _export(web: Web) -> httpx.Response:
    return web.as_role("admin").get("/audit/export", params={"format": "jsonl"})


def _acknowledge(web: Web) -> httpx.Response:
    """An applied file recorded with another hash than the file has now, acknowledged."""
    with web.runtime.transaction() as session:
        session.add(
            AppliedFile(
                target_key=migrations.target_key(web.settings.database_url),
                revision=FAST,
                path="c1.py",
                sha256="0" * 64,
                content="",
                matches_plan=True,
                job_id=1,
            )
        )
    return web.post(
        web.as_role("admin"), f"/revisions/{FAST}/acknowledge", reason="reviewed the change"
    )


WEB_RECIPES: dict[tuple[str, str], Recipe] = {
    ("POST", "/login"): Recipe("login-succeeded", _login),
    ("POST", "/logout"): Recipe("logout", _logout),
    ("POST", "/account/password"): Recipe("password-changed", _change_password),
    ("POST", "/users"): Recipe(
        "user-created",
        lambda w: w.post(w.as_role("admin"), "/users", username=w.unique("new-"), role="viewer"),
    ),
    ("POST", "/users/{username}/role"): Recipe(
        "role-changed",
        lambda w: w.post(w.as_role("admin"), f"/users/{w.user()}/role", role="reviewer"),
    ),
    ("POST", "/users/{username}/disable"): Recipe(
        "user-disabled", lambda w: w.post(w.as_role("admin"), f"/users/{w.user()}/disable")
    ),
    ("POST", "/users/{username}/enable"): Recipe(
        "user-enabled",
        lambda w: w.post(w.as_role("admin"), f"/users/{_disabled_user(w)}/enable"),
    ),
    ("POST", "/users/{username}/reset-password"): Recipe(
        "password-reset",
        lambda w: w.post(w.as_role("admin"), f"/users/{w.user()}/reset-password"),
    ),
    ("POST", "/tokens"): Recipe(
        "api-token-created",
        lambda w: w.post(w.as_role("admin"), "/tokens", name=w.unique("deploy "), username=""),
    ),
    ("POST", "/tokens/{token_id}/revoke"): Recipe("api-token-revoked", _revoke),
    ("POST", "/jobs"): Recipe("job-queued", _submit),
    ("POST", "/jobs/{job_id}/cancel"): Recipe("job-cancel-requested", _cancel),
    ("POST", "/api/v1/jobs"): Recipe("job-queued", _api_submit),
    ("GET", "/preview"): Recipe("sql-previewed", _preview),
    ("GET", "/preview/download"): Recipe("sql-downloaded", _download),
    ("GET", "/api/v1/sql"): Recipe("sql-previewed", _api_sql),
    ("POST", "/backups"): Recipe("job-queued", _take_backup),
    ("POST", "/rehearsals"): Recipe("job-queued", _rehearse),
    ("POST", "/api/v1/rehearsals"): Recipe("job-queued", _api_rehearse),
    ("POST", "/backups/{backup_id}/verify"): Recipe("job-queued", _verify_backup),
    ("GET", "/backups/{backup_id}/download"): Recipe(
        "backup-downloaded", lambda w: w.as_role("admin").get(f"/backups/{_backup_id(w)}/download")
    ),
    ("POST", "/backups/{backup_id}/delete"): Recipe("backup-deleted", _delete_backup),
    ("POST", "/backups/{backup_id}/restore"): Recipe("job-queued", _restore_backup),
    ("POST", "/audit/verify"): Recipe("audit-verified", _verify_chain),
    ("GET", "/audit/export"): Recipe("audit-exported", _export),
    ("POST", "/revisions/{revision_id}/acknowledge"): Recipe(
        "applied-file-acknowledged", _acknowledge
    ),
}


@pytest.fixture(scope="module")
def web(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Web]:
    settings = _settings(tmp_path_factory.mktemp("coverage-web"), WEB_PROJECT)
    set_target(settings.database_url, None)
    with TestClient(create_app(settings)) as client:
        yield Web(client, settings)


def test_every_audited_route_has_a_recipe() -> None:
    routes = audited_routes(_collection_app())
    missing = sorted(routes - WEB_RECIPES.keys())
    stale = sorted(WEB_RECIPES.keys() - routes)
    assert not missing, (
        "these routes change something (or hand out data) but no test proves they write an "
        f"audit event: {', '.join(f'{m} {p}' for m, p in missing)}. Add a recipe for each to "
        "WEB_RECIPES in tests/test_audit_coverage.py (how to call it, the action it records)."
    )
    assert not stale, f"recipes for routes that no longer exist: {stale}"


@pytest.mark.parametrize("route", sorted(WEB_RECIPES), ids=lambda r: f"{r[0]} {r[1]}")
def test_route_writes_its_audit_event(web: Web, route: tuple[str, str]) -> None:
    recipe = WEB_RECIPES[route]
    mark = last_id(web.runtime)
    response = recipe.call(web)
    assert response.status_code < 400, (route, response.status_code, response.text[:300])
    actions = [e.action for e in events_after(web.runtime, mark)]
    assert recipe.expect in actions, (route, actions)


def _concrete(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "1", path)


def test_every_unsafe_route_audits_a_refused_cross_site_request(web: Web) -> None:
    unsafe = sorted(r for r in audited_routes(web.client.app) if r[0] in MUTATING)
    assert unsafe
    client = web.new_client()
    for method, path in unsafe:
        mark = last_id(web.runtime)
        concrete = _concrete(path)
        answer = client.request(
            method, concrete, headers={"Origin": "https://evil.example"}, data={"x": "1"}
        )
        assert answer.status_code == 403, (method, path, answer.status_code)
        denied = [e for e in events_after(web.runtime, mark) if e.action == "access-denied"]
        assert [(e.details["path"], e.details["status"]) for e in denied] == [(concrete, 403)], (
            method,
            path,
        )


# The command line.


def leaf_commands(parser: argparse.ArgumentParser | None = None) -> Iterator[tuple[str, ...]]:
    """Every runnable command of the parser (``("user", "add")``, ``("migrate",)``, ...)."""

    def walk(node: argparse.ArgumentParser, prefix: tuple[str, ...]) -> Iterator[tuple[str, ...]]:
        groups = [a for a in node._actions if isinstance(a, argparse._SubParsersAction)]
        if not groups:
            yield prefix
            return
        for group in groups:
            for name, child in group.choices.items():
                yield from walk(child, (*prefix, name))

    yield from walk(parser or build_parser(), ())


# Commands that change nothing, and why (a new command that does not belong here needs a
# recipe in CLI_RECIPES).
CLI_READ_ONLY: dict[tuple[str, ...], str] = {
    ("serve",): "runs the panel; what it changes goes through the web routes above, and its "
    "start (store upgrade, first admin) is audited by the app's lifespan",
    ("store", "status"): "reads the store's schema revision",
    ("user", "list"): "reads the users",
    ("status",): "reads where the target stands",
    ("history",): "reads the revision files and the target's revision",
    ("lint",): "lints SQL rendered from the revision files (a CI check); nothing changes",
    ("sql",): "renders SQL from the revision files, which the person at the terminal can "
    "read already; the panel's previews are audited because they answer reviewers",
    ("backups", "list"): "reads the backups' records",
    ("create-migration",): "writes a new revision file into the project's source tree, "
    "which version control records and reviews; neither database changes, and applying "
    "the file later is an audited job",
}


@dataclass(frozen=True)
class CliRecipe:
    """Arguments (or a function making them), the action they must record, and what to
    prepare first."""

    argv: tuple[str, ...] | Callable[[Cli], tuple[str, ...]]
    expect: str
    setup: Callable[[Cli], None] | None = None
    fresh_store: bool = False
    stdin: str = ""
    env: dict[str, str] = field(default_factory=dict)


@dataclass
class Cli:
    root: Path
    settings: Settings
    runtime: Runtime

    def user(self, name: str, *, disabled: bool = False) -> None:
        with self.runtime.transaction() as session:
            actor = audit.Actor("tests", None, Source.CLI)
            if users.find(session, name) is None:
                users.create(session, actor, name, Role.VIEWER, PASSWORD)
            users.set_disabled(session, actor, name, disabled)

    def at(self, revision: str | None) -> None:
        set_target(self.settings.database_url, revision)

    def no_target(self) -> None:
        """The target database is missing (its SQLite file and journals removed)."""
        migrations.dispose_engines()
        path = Path(make_url(self.settings.database_url).database or "")
        for name in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
            name.unlink(missing_ok=True)

    def backup_id(self, *, fresh: bool = False) -> int:
        """A verified backup of the target (``schema-admin backup`` when there is none)."""
        with self.runtime.reads() as session:
            kept = session.scalar(
                select(Backup.id)
                .where(Backup.status == BackupStatus.VERIFIED.value)
                .order_by(Backup.id.desc())
                .limit(1)
            )
        if kept is not None and not fresh:
            return int(kept)
        self.at(FAST)
        assert InProcessCli(self.settings, self.root)("backup").code == 0
        return self.backup_id()

    def two_backups(self) -> None:
        self.backup_id(fresh=True)
        self.backup_id(fresh=True)


CLI_RECIPES: dict[tuple[str, ...], CliRecipe] = {
    ("store", "upgrade"): CliRecipe(("store", "upgrade"), "store-upgraded", fresh_store=True),
    ("user", "add"): CliRecipe(("user", "add", "cli-added", "--role", "viewer"), "user-created"),
    ("user", "set-role"): CliRecipe(
        ("user", "set-role", "cli-role", "operator"),
        "role-changed",
        setup=lambda c: c.user("cli-role"),
    ),
    ("user", "disable"): CliRecipe(
        ("user", "disable", "cli-off"), "user-disabled", setup=lambda c: c.user("cli-off")
    ),
    ("user", "enable"): CliRecipe(
        ("user", "enable", "cli-on"),
        "user-enabled",
        setup=lambda c: c.user("cli-on", disabled=True),
    ),
    ("user", "reset-password"): CliRecipe(
        ("user", "reset-password", "cli-reset"),
        "password-reset",
        setup=lambda c: c.user("cli-reset"),
    ),
    ("audit", "verify"): CliRecipe(("audit", "verify"), "audit-verified"),
    ("migrate",): CliRecipe(("migrate", FAST), "job-queued", setup=lambda c: c.at(None)),
    ("downgrade",): CliRecipe(("downgrade", "base"), "job-queued", setup=lambda c: c.at(FAST)),
    ("stamp",): CliRecipe(("stamp", FAST), "job-queued", setup=lambda c: c.at(None)),
    ("init-db",): CliRecipe(("init-db",), "database-created", setup=Cli.no_target),
    ("reset",): CliRecipe(("reset", "--yes"), "job-queued", setup=lambda c: c.at(FAST)),
    ("entrypoint",): CliRecipe(
        ("entrypoint", "--no-serve"), "entrypoint-started", setup=lambda c: c.at(None)
    ),
    ("backup",): CliRecipe(("backup",), "job-queued", setup=lambda c: c.at(FAST)),
    ("backups", "verify"): CliRecipe(
        lambda c: ("backups", "verify", str(c.backup_id())), "job-queued"
    ),
    ("backups", "prune"): CliRecipe(
        ("backups", "prune"),
        "backups-pruned",
        setup=Cli.two_backups,
        env={"BACKUP_KEEP_LAST": "1", "BACKUP_KEEP_DAYS": "0"},
    ),
    ("restore",): CliRecipe(lambda c: ("restore", str(c.backup_id())), "job-queued"),
    ("rehearse",): CliRecipe(("rehearse", FAST), "job-queued", setup=lambda c: c.at(None)),
}


@pytest.fixture(scope="module")
def cli_world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cli]:
    root = tmp_path_factory.mktemp("coverage-cli")
    settings = _settings(root, CLI_PROJECT)
    runtime = Runtime.open(settings)
    runtime.upgrade_store(audit.Actor("tests", None, Source.CLI))
    yield Cli(root, settings, runtime)
    runtime.close()


def test_every_command_has_a_recipe_or_is_read_only() -> None:
    commands = set(leaf_commands())
    missing = sorted(commands - CLI_RECIPES.keys() - CLI_READ_ONLY.keys())
    assert not missing, (
        "these commands have no recipe proving they write an audit event, and are not listed "
        f"as read-only: {', '.join(' '.join(c) for c in missing)}. Add each to CLI_RECIPES "
        "(or, with the reason, to CLI_READ_ONLY) in tests/test_audit_coverage.py."
    )
    stale = sorted((CLI_RECIPES.keys() | CLI_READ_ONLY.keys()) - commands)
    assert not stale, f"recipes or exemptions for commands that no longer exist: {stale}"
    assert not CLI_RECIPES.keys() & CLI_READ_ONLY.keys()
    assert all(reason.strip() for reason in CLI_READ_ONLY.values())


@pytest.mark.parametrize("command", sorted(CLI_RECIPES), ids=" ".join)
def test_command_writes_its_audit_event(cli_world: Cli, command: tuple[str, ...]) -> None:
    recipe = CLI_RECIPES[command]
    settings = cli_world.settings
    runtime = cli_world.runtime
    fresh: Runtime | None = None
    if recipe.fresh_store:
        store = cli_world.root / f"fresh-{time.monotonic_ns()}.sqlite3"
        settings = settings.model_copy(update={"admin_database_url": f"sqlite:///{store}"})
        fresh = runtime = Runtime.open(settings)
    try:
        if recipe.setup is not None:
            recipe.setup(cli_world)
        argv = recipe.argv(cli_world) if callable(recipe.argv) else recipe.argv
        mark = last_id(runtime) if fresh is None else 0
        run = InProcessCli(settings, cli_world.root)(*argv, stdin=recipe.stdin, **recipe.env)
        assert run.code == 0, (command, run.stdout[-500:])
        events = events_after(runtime, mark)
        assert recipe.expect in [e.action for e in events], (command, [e.action for e in events])
        assert {e.source for e in events if e.action == recipe.expect} <= {"cli", "entrypoint"}
    finally:
        if fresh is not None:
            fresh.close()


def test_refused_commands_are_audited_once(cli_world: Cli) -> None:
    """A 409 or 403 at the terminal is an event like a refused request; a service that
    recorded its own refusal (reset in production: job-refused) is not recorded twice."""
    cli = InProcessCli(cli_world.settings, cli_world.root)
    assert cli("user", "add", "cli-twice").code == 0
    mark = last_id(cli_world.runtime)
    assert cli("user", "add", "cli-twice").code == 1
    [event] = events_after(cli_world.runtime, mark)
    assert (event.action, event.source, event.outcome) == ("access-denied", "cli", "denied")
    assert event.details["status"] == 409
    assert event.details["path"] == "schema-admin user add cli-twice"
    assert "exists already" in event.details["reason"]

    cli_world.at(FAST)
    mark = last_id(cli_world.runtime)
    assert cli("reset", "--yes", ENVIRONMENT="production").code == 1
    assert [e.action for e in events_after(cli_world.runtime, mark)] == ["job-refused"]
