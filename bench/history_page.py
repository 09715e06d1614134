"""The history page (/revisions) at N revisions: server time, warm, against `alembic history`.

The panel runs in-process (``create_app`` under Starlette's TestClient, lifespan included)
with a SQLite store and the size's PostgreSQL database (stamped at the head) as its
target, signed in as a viewer: each request resolves the session in the store, reads the
database's heads, and renders one page of 100 rows with its graph column. The time is
server time: measured by an outermost ASGI middleware from the request's arrival to the
last byte of its answer (TestClient's own overhead is left out).
"""

from __future__ import annotations

import secrets
import statistics
import time
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from admin import audit
from admin.auth import users
from admin.config import Settings
from admin.store.models import Role, Source
from admin.web.app import create_app
from bench.context import Context
from bench.report import Row, Section
from bench.timing import ALEMBIC, Timing, time_tool

TARGET_MS = 50.0
PASSWORD = "bench-history-page-1"


class ServerTime:
    """Pure ASGI middleware: how long the app took for each request, in seconds."""

    def __init__(self, app: Any, samples: list[float]) -> None:
        self.app = app
        self.samples = samples

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        started = time.perf_counter()
        try:
            await self.app(scope, receive, send)
        finally:
            if scope["type"] == "http":
                self.samples.append(time.perf_counter() - started)


def settings_for(workdir: Path, size: int, ini: Path, url: str) -> Settings:
    root = workdir / f"history-page-{size}"
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        database_url=url,
        admin_database_url=f"sqlite:///{root / 'store.sqlite3'}",
        var_dir=root / "var",
        backup_dir=root / "backups",
        secret_key=secrets.token_urlsafe(48),
        alembic_config=ini,
        log_level="WARNING",
    )


def signed_in(client: TestClient, role: Role = Role.VIEWER) -> None:
    runtime = client.app.state.runtime  # type: ignore[attr-defined]
    with runtime.transaction() as session:
        users.create(
            session,
            audit.Actor("bench", None, Source.CLI),
            "bench",
            role,
            PASSWORD,
            must_change_password=False,
        )
    answer = client.post(
        "/login",
        data={"username": "bench", "password": PASSWORD, "next": "/"},
        follow_redirects=False,
    )
    if answer.status_code != 303:
        raise RuntimeError(f"the bench could not sign in: {answer.status_code}")


def get(client: TestClient, path: str, hx: bool = False) -> int:
    headers = {"HX-Request": "true"} if hx else {}
    answer = client.get(path, headers=headers, follow_redirects=False)
    if answer.status_code != 200:
        raise RuntimeError(f"GET {path} answered {answer.status_code}: {answer.text[:300]}")
    return len(answer.content)


def _timed(
    client: TestClient, samples: list[float], runs: int, requests: list[tuple[str, bool]]
) -> list[Timing]:
    """Server time of ``runs`` rounds of ``requests`` (path, as htmx), one timing each.

    The requests take turns within each round, so a burst of load from other processes
    falls on all of them alike rather than on whichever series happened to run then.
    """
    per_request: list[list[float]] = [[] for _ in requests]
    for path, hx in requests:
        get(client, path, hx)
    for _ in range(runs):
        for seconds, (path, hx) in zip(per_request, requests, strict=True):
            samples.clear()
            get(client, path, hx)
            seconds.append(samples[-1])
    return [Timing(statistics.median(s), min(s), runs) for s in per_request]


def measure(ctx: Context) -> Section:
    section = Section("history page")
    for size in ctx.sizes:
        generated = ctx.project(size)
        url = ctx.database_at_head(size)
        app = create_app(settings_for(ctx.workdir, size, generated.ini, url))
        samples: list[float] = []
        app.add_middleware(ServerTime, samples=samples)
        runs = ctx.runs * 10
        middle = size // 200 or 1
        with TestClient(app) as client:
            signed_in(client)
            first = get(client, "/revisions")
            timings = _timed(
                client,
                samples,
                runs,
                [
                    ("/revisions", False),
                    (f"/revisions?page={middle}", False),
                    ("/revisions?q=merge", True),
                ],
            )
        cli, output = time_tool(
            [ALEMBIC, "-c", str(generated.ini), "history"], cwd=ctx.workdir, runs=ctx.runs
        )
        first_page, deep_page, fragment = timings
        section.rows += [
            Row(
                size=size,
                ours="`GET /revisions` (page 1 of 100 rows), warm",
                ours_ms=first_page.ms,
                ours_best=first_page.best * 1000,
                theirs="`alembic history`",
                theirs_ms=cli.ms,
                target=f"≤ {TARGET_MS:g} ms",
                met=first_page.ms <= TARGET_MS,
            ),
            Row(
                size=size,
                ours=f"`GET /revisions?page={middle}`, warm",
                ours_ms=deep_page.ms,
                ours_best=deep_page.best * 1000,
            ),
            Row(
                size=size,
                ours="filter `?q=merge` as an htmx fragment, warm",
                ours_ms=fragment.ms,
                ours_best=fragment.best * 1000,
            ),
        ]
        section.notes.append(
            f"{size} revisions: a page of the history is {first / 1024:.0f} KiB of HTML "
            f"(100 rows with their SVG graph cells); `alembic history` prints all "
            f"{len(output.splitlines())} lines ({len(output.encode()) / 1024:.0f} KiB) each time."
        )
    section.notes.append(
        "Cached per graph fingerprint: the lanes of the graph column and the search keys; per "
        "database position: the set of applied revisions. Per request: the session lookup in "
        "the store, one query of the target's version table, filtering and slicing the list, "
        "and rendering 100 rows. Server time (an outermost ASGI middleware's clock) of requests "
        "sent through TestClient in the same process, the three kinds taking turns: median and "
        "best of the runs, after one warm-up."
    )
    return section
