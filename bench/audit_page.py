"""The audit page and its exports at 100,000 events, on a SQLite and a PostgreSQL store.

Each store gets 100,000 events bulk-inserted with correct chain hashes (they verify), spread
over 90 days, 25 actors, every source and outcome, the actions a panel really records.
The panel then runs in-process (``create_app`` under TestClient) signed in as an admin:
server time (an outermost ASGI middleware) of the first page, filtered pages, a deep page
by ``before=``, the htmx fragment, and both exports streamed in full. Beside the deep page,
the same page fetched the way keyset pagination avoids: ``OFFSET``; and the ``COUNT(*)`` a
page never runs. BENCH_AUDIT_EVENTS changes the number of events, BENCH_AUDIT_STORES the
stores (sqlite,postgresql).
"""

from __future__ import annotations

import os
import random
import secrets
import statistics
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import create_engine, func, insert, select, text
from sqlalchemy.engine import make_url

from admin import audit
from admin.auth import users
from admin.config import Settings
from admin.runtime import Runtime
from admin.store.models import AuditEvent, Role, Source
from admin.web.app import create_app
from bench.context import Context
from bench.history_page import ServerTime
from bench.report import Row, Section
from bench.timing import Timing, time_call

EVENTS = int(os.environ.get("BENCH_AUDIT_EVENTS", "100000"))
STORES = os.environ.get("BENCH_AUDIT_STORES", "sqlite,postgresql").split(",")
TARGET_MS = 50.0
PASSWORD = "bench-audit-page-1"
ACTORS = [f"user{i:02d}" for i in range(25)]
# Roughly what a panel records: most events are jobs' and sign-ins.
ACTIONS = [
    ("job-queued", 12),
    ("job-started", 12),
    ("job-finished", 12),
    ("login-succeeded", 20),
    ("login-failed", 4),
    ("logout", 10),
    ("sql-previewed", 14),
    ("sql-downloaded", 3),
    ("backup-verified", 4),
    ("access-denied", 3),
    ("role-changed", 1),
    ("api-token-created", 1),
]
REVISIONS = [uuid.UUID(int=random.Random(i).getrandbits(128)).hex[:12] for i in range(400)]


def _events(count: int, prev: str) -> Iterator[dict[str, Any]]:
    """Rows with chain hashes continuing from ``prev``; oldest first, 90 days up to now."""
    rng = random.Random(20261127)
    names = [name for name, weight in ACTIONS for _ in range(weight)]
    sources = [Source.WEB.value] * 6 + [Source.API.value] * 2 + [Source.CLI.value] * 2
    now = datetime.now(UTC)
    step = timedelta(days=90) / count
    for i in range(count):
        action = rng.choice(names)
        job = rng.randrange(1, count // 10) if action.startswith("job-") else None
        revision = rng.choice(REVISIONS) if action in ("job-queued", "job-finished") else None
        outcome = (
            audit.Outcome.DENIED.value
            if action == "access-denied"
            else audit.Outcome.FAILURE.value
            if action == "login-failed" or (action == "job-finished" and rng.random() < 0.1)
            else audit.Outcome.SUCCESS.value
        )
        row = AuditEvent(
            created_at=now - timedelta(days=90) + step * i,
            actor=rng.choice(ACTORS),
            actor_role=rng.choice([r.value for r in Role]),
            source=rng.choice(sources),
            client_addr=f"10.0.{rng.randrange(256)}.{rng.randrange(256)}",
            action=action,
            target=f"job:{job}" if job else None,
            outcome=outcome,
            job_id=job,
            backup_id=None,
            revision=revision,
            details={"note": "bench", "n": i, "revision": revision},
            prev_hash=prev,
        )
        row.hash = audit.row_hash(row)
        prev = row.hash
        # Without the id: the store's sequence numbers them in order (ids are not hashed).
        yield {c.name: getattr(row, c.name) for c in AuditEvent.__table__.columns if c.name != "id"}


def fill(runtime: Runtime, count: int) -> float:
    """Bulk-insert ``count`` chained events; returns the seconds it took."""
    started = time.perf_counter()
    with runtime.sessions() as session:
        last = session.scalar(select(AuditEvent.hash).order_by(AuditEvent.id.desc()).limit(1))
    prev = last or audit.GENESIS
    batch: list[dict[str, Any]] = []
    with runtime.transaction() as session:
        for values in _events(count, prev):
            batch.append(values)
            if len(batch) == 5000:
                session.execute(insert(AuditEvent), batch)
                batch = []
        if batch:
            session.execute(insert(AuditEvent), batch)
    if runtime.store_engine.dialect.name == "postgresql":
        with runtime.store_engine.connect() as connection:
            connection.execute(text("ANALYZE audit_events"))
            connection.commit()
    return time.perf_counter() - started


@contextmanager
def _store(ctx: Context, dialect: str) -> Iterator[str]:
    """A fresh store database: a SQLite file, or a database on the bench's server."""
    if dialect == "sqlite":
        yield f"sqlite:///{ctx.workdir / f'audit-{uuid.uuid4().hex[:8]}.sqlite3'}"
        return
    name = f"apex_bench_audit_{uuid.uuid4().hex[:8]}"
    admin = create_engine(ctx.server_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
        yield make_url(ctx.server_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def _settings(ctx: Context, store: str) -> Settings:
    root = ctx.workdir / f"audit-{uuid.uuid4().hex[:8]}"
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        database_url=f"sqlite:///{root / 'target.sqlite3'}",
        admin_database_url=store,
        var_dir=root / "var",
        backup_dir=root / "backups",
        secret_key=secrets.token_urlsafe(48),
        alembic_config=Path(__file__).resolve().parents[1] / "alembic.ini",
        log_level="WARNING",
    )


def _sign_in(client: TestClient) -> None:
    runtime = client.app.state.runtime  # type: ignore[attr-defined]
    with runtime.transaction() as session:
        users.create(
            session,
            audit.Actor("bench", None, Source.CLI),
            "bench-admin",
            Role.ADMIN,
            PASSWORD,
            must_change_password=False,
        )
    answer = client.post(
        "/login", data={"username": "bench-admin", "password": PASSWORD}, follow_redirects=False
    )
    if answer.status_code != 303:
        raise RuntimeError(f"the bench could not sign in: {answer.status_code}")


def _get(client: TestClient, path: str, hx: bool = False) -> bytes:
    answer = client.get(path, headers={"HX-Request": "true"} if hx else {})
    if answer.status_code != 200:
        raise RuntimeError(f"GET {path} answered {answer.status_code}: {answer.text[:300]}")
    return answer.content


def _timed(
    client: TestClient, samples: list[float], runs: int, path: str, hx: bool = False
) -> tuple[Timing, bytes]:
    body = _get(client, path, hx)
    samples.clear()
    for _ in range(runs):
        _get(client, path, hx)
    return Timing(statistics.median(samples), min(samples), runs), body


def _rows(body: bytes) -> int:
    return body.count(b'class="audit-event"')


def _measure_store(ctx: Context, section: Section, dialect: str) -> None:
    with _store(ctx, dialect) as url:
        settings = _settings(ctx, url)
        runtime = Runtime.open(settings)
        try:
            runtime.upgrade_store(audit.Actor("bench", None, Source.CLI))
            filled = fill(runtime, EVENTS)
            started = time.perf_counter()
            with runtime.reads() as session:
                report = audit.verify(session)
            verified = time.perf_counter() - started
            if not report.ok or report.count < EVENTS:
                raise RuntimeError(f"the bench's chain does not verify: {report}")
            with runtime.reads() as session:
                deep_id = session.scalar(
                    select(AuditEvent.id).order_by(AuditEvent.id).offset(60).limit(1)
                )
                offset = session.scalar(select(func.count()).select_from(AuditEvent)) - 110

            def keyset() -> None:
                with runtime.reads() as session:
                    list(
                        session.scalars(
                            select(AuditEvent)
                            .where(AuditEvent.id < deep_id)
                            .order_by(AuditEvent.id.desc())
                            .limit(51)
                        )
                    )

            def by_offset() -> None:
                with runtime.reads() as session:
                    list(
                        session.scalars(
                            select(AuditEvent)
                            .order_by(AuditEvent.id.desc())
                            .offset(offset)
                            .limit(51)
                        )
                    )

            def count_all() -> None:
                with runtime.reads() as session:
                    session.scalar(select(func.count()).select_from(AuditEvent))

            runs = ctx.runs * 10
            keyset_t = time_call(keyset, runs=runs)
            offset_t = time_call(by_offset, runs=runs)
            count_t = time_call(count_all, runs=runs)
        finally:
            runtime.close()

        app = create_app(settings)
        samples: list[float] = []
        app.add_middleware(ServerTime, samples=samples)
        pages = {
            "first page (50 newest)": ("/audit", False),
            "filtered: one actor's job events": ("/audit?actor=user07&action=job-*", False),
            "filtered: a rare combination (api, denied, a month)": (
                "/audit?source=api&outcome=denied&since="
                + (datetime.now(UTC) - timedelta(days=30)).date().isoformat(),
                False,
            ),
            "filtered: one revision": (f"/audit?revision={REVISIONS[7]}", False),
            "filtered: one day, a month ago": (
                "/audit?since={day}&until={day}".format(
                    day=(datetime.now(UTC) - timedelta(days=30)).date().isoformat()
                ),
                False,
            ),
            "filtered: `until` the first week (no other filter)": (
                "/audit?until=" + (datetime.now(UTC) - timedelta(days=83)).date().isoformat(),
                False,
            ),
            f"deep page (`before={deep_id}`, the oldest 50)": (f"/audit?before={deep_id}", False),
            "htmx fragment, filtered by source": ("/audit?source=cli", True),
        }
        with TestClient(app) as client:
            _sign_in(client)
            for label, (path, hx) in pages.items():
                timing, body = _timed(client, samples, runs, path, hx)
                deep = label.startswith("deep")
                section.rows.append(
                    Row(
                        size=EVENTS,
                        ours=f"{dialect}: `GET /audit` {label}, {_rows(body)} rows",
                        ours_ms=timing.ms,
                        ours_best=timing.best * 1000,
                        theirs="same page by `OFFSET` (query only)" if deep else None,
                        theirs_ms=offset_t.ms if deep else None,
                        target=f"≤ {TARGET_MS:g} ms",
                        met=timing.ms <= TARGET_MS,
                    )
                )
            for fmt in ("csv", "jsonl"):
                export_runs = max(ctx.runs, 1)
                timing, body = _timed(client, samples, export_runs, f"/audit/export?format={fmt}")
                lines = body.count(b"\n") - (1 if fmt == "csv" else 0)
                per_second = lines / timing.median
                section.rows.append(
                    Row(
                        size=EVENTS,
                        ours=f"{dialect}: export {fmt.upper()}, all {lines:,} events streamed "
                        f"({len(body) / 2**20:.1f} MiB, {per_second:,.0f} events/s)",
                        ours_ms=timing.ms,
                        ours_best=timing.best * 1000,
                    )
                )
        section.rows += [
            Row(
                size=EVENTS,
                ours=f"{dialect}: verify the whole chain (`audit.verify`)",
                ours_ms=verified * 1000,
            ),
            Row(
                size=EVENTS,
                ours=f"{dialect}: keyset page query (`id < :before ORDER BY id DESC LIMIT 51`)",
                ours_ms=keyset_t.ms,
                ours_best=keyset_t.best * 1000,
                theirs="`OFFSET` to the same page",
                theirs_ms=offset_t.ms,
            ),
            Row(
                size=EVENTS,
                ours=f"{dialect}: `COUNT(*)` (what a page never runs)",
                ours_ms=count_t.ms,
                ours_best=count_t.best * 1000,
            ),
        ]
        section.notes.append(
            f"{dialect} store: {EVENTS:,} events inserted in {filled:.1f} s (bulk, chained); "
            f"the whole chain verified in {verified:.1f} s (`audit.verify`, what the page's "
            "Verify button and `schema-admin audit verify` run)."
        )


def measure(ctx: Context) -> Section:
    section = Section("audit page")
    for dialect in STORES:
        _measure_store(ctx, section, dialect)
    section.notes.append(
        "Pages go by id (`WHERE <filters> AND id < :before ORDER BY id DESC LIMIT 51`) with an "
        "index on (column, id) per filter (store revisions 0001 to 0003), so a page costs the "
        "same at any depth and nothing counts the table. Server time of requests through "
        "TestClient in the same process (session lookup, the query, rendering 50 rows with "
        "their details); median and best of the runs after one warm-up. Exports stream in "
        "batches of 1,000 (each its own short read) and are timed to their last byte."
    )
    return section
