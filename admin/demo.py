"""The embedded default's demo target: the CRM's database at an early revision, with rows.

A first ``make run`` (``schema-admin serve`` on the embedded default) finds no target
database. Rather than a dashboard that says *Database missing*, the panel creates the SQLite
demo target, migrates it to ``DEMO_REVISION`` as an ordinary job (worker, lock, log, audit:
it is job 1 on the jobs page) and adds a few rows, so the dashboard shows pending revisions
and *Apply* works at once. ``make init-db`` (``schema-admin init-db``) stays the way to
create a real target; nothing here runs for a DATABASE_URL someone set.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from admin import audit, jobs, migrations
from admin.config import Environment, Settings, normalize_database_url
from admin.errors import AdminError
from admin.migrations.database import sqlite_path
from admin.runtime import Runtime
from admin.store.models import Job, JobKind, JobStatus

# The CRM project's second revision (users, agents, clients, properties, deals, activities
# and amoCRM tokens exist): six revisions, a branch and its merge among them, stay pending.
DEMO_REVISION = "20240101000000"

# A few rows in the tables that exist at DEMO_REVISION (the later revisions move them: one
# drops clients.passport_number, one backfills deals' commission).
_ROWS: tuple[tuple[str, list[dict[str, object]]], ...] = (
    (
        "INSERT INTO users (id, email, password_hash, full_name, role) "
        "VALUES (:id, :email, 'demo-no-login', :name, :role)",
        [
            {"id": 1, "email": "anna@apex.example", "name": "Anna Lim", "role": "manager"},
            {"id": 2, "email": "bao@apex.example", "name": "Bao Tran", "role": "agent"},
        ],
    ),
    (
        "INSERT INTO agents (id, user_id, phone, commission_rate) "
        "VALUES (:id, :user, :phone, :rate)",
        [
            {"id": 1, "user": 1, "phone": "+66 2 000 0101", "rate": 2.5},
            {"id": 2, "user": 2, "phone": "+84 28 000 0202", "rate": 3.0},
        ],
    ),
    (
        "INSERT INTO clients (id, full_name, email, passport_number, nationality, agent_id) "
        "VALUES (:id, :name, :email, :passport, :nat, :agent)",
        [
            {
                "id": 1,
                "name": "Kenji Sato",
                "email": "kenji@example.jp",
                "passport": "TZ1234567",
                "nat": "JP",
                "agent": 1,
            },
            {
                "id": 2,
                "name": "Mai Nguyen",
                "email": "mai@example.vn",
                "passport": "C7654321",
                "nat": "VN",
                "agent": 2,
            },
            {
                "id": 3,
                "name": "Olivia Brown",
                "email": "olivia@example.au",
                "passport": None,
                "nat": "AU",
                "agent": 2,
            },
        ],
    ),  # fmt: skip
    (
        "INSERT INTO properties (id, title, property_type, price, city, district, bedrooms, "
        "agent_id) VALUES (:id, :title, :kind, :price, :city, :district, :beds, :agent)",
        [
            {
                "id": 1,
                "title": "Riverside condo, 2 bedrooms",
                "kind": "condo",
                "price": 245000,
                "city": "Bangkok",
                "district": "Khlong San",
                "beds": 2,
                "agent": 1,
            },
            {
                "id": 2,
                "title": "Villa with pool",
                "kind": "villa",
                "price": 890000,
                "city": "Phuket",
                "district": "Kamala",
                "beds": 4,
                "agent": 1,
            },
            {
                "id": 3,
                "title": "Studio near the park",
                "kind": "apartment",
                "price": 98000,
                "city": "Ho Chi Minh City",
                "district": "District 3",
                "beds": 1,
                "agent": 2,
            },
        ],
    ),  # fmt: skip
    (
        "INSERT INTO deals (id, property_id, client_id, agent_id, stage, amount) "
        "VALUES (:id, :property, :client, :agent, :stage, :amount)",
        [
            {
                "id": 1,
                "property": 1,
                "client": 1,
                "agent": 1,
                "stage": "negotiation",
                "amount": 238000,
            },
            {"id": 2, "property": 3, "client": 2, "agent": 2, "stage": "won", "amount": 96500},
        ],
    ),  # fmt: skip
    (
        "INSERT INTO activities (client_id, deal_id, agent_id, kind, subject, occurred_at) "
        "VALUES (:client, :deal, :agent, :kind, :subject, CURRENT_TIMESTAMP)",
        [
            {"client": 1, "deal": 1, "agent": 1, "kind": "viewing", "subject": "Second viewing"},
            {"client": 2, "deal": 2, "agent": 2, "kind": "call", "subject": "Contract signed"},
            {"client": 3, "deal": None, "agent": 2, "kind": "email", "subject": "First enquiry"},
        ],
    ),
)


@dataclass(frozen=True)
class Demo:
    """What ``create`` did: the job that migrated the demo, and the rows it added."""

    job: Job
    rows: int

    @property
    def succeeded(self) -> bool:
        return self.job.status == JobStatus.SUCCEEDED.value


def default_target() -> str:
    """The embedded default's DATABASE_URL, as the settings hold it."""
    default = Settings.model_fields["database_url"].default
    return normalize_database_url(str(default))


def wanted(settings: Settings) -> bool:
    """The demo is made for the embedded default target only, in development, once."""
    if settings.environment is not Environment.DEVELOPMENT:
        return False
    if settings.database_url != default_target():
        return False
    path = sqlite_path(settings.database_url)
    return path is not None and not path.exists()


def _add_rows(url: str) -> int:
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.begin() as connection:
            for statement, rows in _ROWS:
                connection.execute(text(statement), rows)
    finally:
        engine.dispose()
    return sum(len(rows) for _, rows in _ROWS)


def create(settings: Settings, actor: audit.Actor, echo: Callable[[str], None] = print) -> Demo:
    """Create the demo target, migrate it to DEMO_REVISION as a job, add its rows."""
    url = settings.database_url
    rt = Runtime.open(settings)
    try:
        rt.upgrade_store(actor)
        if migrations.create_database(url):
            with rt.transaction() as session:
                created = audit.DatabaseCreated(
                    name=migrations.database_name(url), url=migrations.masked(url)
                )
                audit.record(session, created, actor)
        project = migrations.open_project(settings.alembic_config, settings.cache_dir)
        _, current = migrations.read_current(project, url)
        plan = migrations.make_plan(project, migrations.Direction.UPGRADE, DEMO_REVISION, current)
        request = jobs.JobRequest(JobKind.UPGRADE, DEMO_REVISION, plan.fingerprint)
        job = jobs.run_in_foreground(rt, request, actor, echo=echo, echo_levels={"error"})
    finally:
        rt.close()
    rows = _add_rows(url) if job.status == JobStatus.SUCCEEDED.value else 0
    return Demo(job, rows)


def create_for_serve(settings: Settings, actor: audit.Actor) -> None:
    """``serve``'s part: make the demo when it is wanted and say in one line what happened."""
    if not wanted(settings):
        return
    try:
        demo = create(settings, actor)
    except AdminError as exc:
        print(f"the demo target could not be created: {exc}", flush=True)
        return
    if not demo.succeeded:
        print(
            f"the demo target's migration (job {demo.job.id}) {demo.job.status}: "
            f"{demo.job.error or 'see its log in the panel'}",
            flush=True,
        )
        return
    print(
        f"\n  Demo target created: {migrations.masked(settings.database_url)} at revision "
        f"{DEMO_REVISION} (job {demo.job.id}) with {demo.rows} rows.\n  Sign in, then on the "
        "dashboard click Apply… to review the pending revisions and run them.\n",
        flush=True,
    )
