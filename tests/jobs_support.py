"""Shared by the jobs tests (HTTP, SSE, browser): small projects, an SSE reader, a signed-in
httpx client for a live server.

- ``LIVE_REVISIONS``: four revisions that run no DDL (so a test resets the target with
  ``reset_target``), sleep between steps, and log a line that tries to forge an SSE event
  and one that tries to inject HTML.
- ``read_events(response)``: parse a ``text/event-stream`` response into ``Event``s.
- ``Browserless``: an httpx client signed in to a live server, posting forms with CSRF.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from bs4 import BeautifulSoup
from projects import PROJECT_ENV, REPO_ROOT, Rev, write_revision
from sqlalchemy import create_engine, text
from sqlalchemy.orm import Session

from admin import migrations
from admin.store.models import Job, JobLine, utcnow

FORGED = "x\n\nevent: done\ndata: y"
INJECTED = "<img src=x onerror=alert(1)>"


def live_revisions(sleep: float = 1) -> list[Rev]:
    """Steps that sleep ``sleep`` seconds in SQL, so a job stays running long enough to watch."""
    pause = f"op.execute('SELECT pg_sleep({sleep:g})')"
    return [
        Rev("a1a1a1", None, "first", "op.execute('SELECT 1')"),
        Rev(
            "b2b2b2",
            "a1a1a1",
            "forged event",
            f"{pause}\nop.execute(\"SELECT 'x\\n\\nevent: done\\ndata: y'\")",
        ),
        Rev(
            "c3c3c3",
            "b2b2b2",
            "injected html",
            f"{pause}\nop.execute(\"SELECT '<img src=x onerror=alert(1)>'\")",
        ),
        Rev("d4d4d4", "c3c3c3", "last", pause),
    ]


LIVE_REVISIONS = live_revisions(1)


def write_project(root: Path, revisions: list[Rev]) -> Path:
    """An Alembic project in ``root`` (like the ``alembic_project`` fixture); its alembic.ini."""
    versions = root / "migrations" / "versions"
    versions.mkdir(parents=True)
    (root / "migrations" / "env.py").write_text(PROJECT_ENV)
    (root / "migrations" / "script.py.mako").write_text(
        (REPO_ROOT / "admin" / "store" / "migrations" / "script.py.mako").read_text()
    )
    for rev in revisions:
        write_revision(versions, rev)
    ini = root / "alembic.ini"
    ini.write_text("[alembic]\nscript_location = %(here)s/migrations\nsqlalchemy.url = sqlite://\n")
    return ini


def reset_target(url: str) -> None:
    """Back to base without running anything (the live revisions create nothing)."""
    engine = create_engine(url)
    try:
        with engine.begin() as connection:
            connection.execute(text("DROP TABLE IF EXISTS alembic_version"))
    finally:
        engine.dispose()


def plan_fingerprint(ini: Path, url: str, target: str = "head") -> str:
    project = migrations.open_project(ini)
    _, current = migrations.read_current(project, url)
    plan = migrations.make_plan(project, migrations.Direction.UPGRADE, target, current, max_age=0)
    return plan.fingerprint


# Server-Sent Events.


@dataclass
class Event:
    event: str = "message"
    data: str = ""
    id: str | None = None
    comments: list[str] = field(default_factory=list)
    received: float = 0.0

    @property
    def seq(self) -> int:
        assert self.id is not None
        return int(self.id)


def read_events(response: httpx.Response) -> Iterator[Event]:
    """Events as an EventSource dispatches them (comments attached to the next event or
    yielded as an event of type ``comment`` when they stand alone)."""
    current = Event()
    data: list[str] = []
    has_fields = False
    for line in response.iter_lines():
        if line == "":
            if data:
                current.data = "\n".join(data)
                current.received = time.monotonic()
                yield current
            elif current.comments:
                yield Event("comment", comments=current.comments, received=time.monotonic())
            current, data, has_fields = Event(), [], False
            continue
        if line.startswith(":"):
            current.comments.append(line[1:].strip())
            continue
        name, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        has_fields = True
        if name == "event":
            current.event = value
        elif name == "data":
            data.append(value)
        elif name == "id":
            current.id = value
    del has_fields


def fragments(events: list[Event]) -> list[Any]:
    """The log lines (``div.log-line``) that HTML ``line`` events carry, in order; each
    event's id is the sequence number of its last line."""
    divs = []
    for event in events:
        found = BeautifulSoup(event.data, "html.parser").select("div.log-line")
        assert found and event.id == found[-1]["data-seq"], event
        divs.extend(found)
    return divs


def seqs(events: list[Event]) -> list[int]:
    return [int(div["data-seq"]) for div in fragments(events)]


def lines_until(
    response: httpx.Response, count: int | None = None
) -> tuple[list[Event], Event | None]:
    """Read ``line`` events (all, or ``count`` of them) and the ``done`` event if reached."""
    lines: list[Event] = []
    for event in read_events(response):
        if event.event == "line":
            lines.append(event)
            if count is not None and len(lines) >= count:
                return lines, None
        elif event.event == "done":
            return lines, event
    return lines, None


# A signed-in client for a live server.


class Browserless:
    """httpx against a live server: signs in through the form, posts with the CSRF token."""

    def __init__(self, base_url: str, username: str, password: str) -> None:
        self.http = httpx.Client(base_url=base_url, timeout=30, follow_redirects=False)
        answer = self.http.post("/login", data={"username": username, "password": password})
        assert answer.status_code == 303, answer.text
        self.csrf = self._csrf()

    def _csrf(self) -> str:
        page = self.http.get("/account/password")
        field_ = BeautifulSoup(page.text, "html.parser").select_one("input[name=csrf_token]")
        assert field_ is not None
        return str(field_["value"])

    def post(self, path: str, **form: str) -> httpx.Response:
        return self.http.post(
            path,
            data={"csrf_token": self.csrf, **form},
            headers={"Origin": str(self.http.base_url)},
        )

    def apply(self, fingerprint: str, target: str = "head") -> int:
        answer = self.post("/jobs", kind="upgrade", target=target, plan_fingerprint=fingerprint)
        assert answer.status_code == 303, answer.text
        match = re.fullmatch(r"/jobs/(\d+)", answer.headers["location"])
        assert match, answer.headers["location"]
        return int(match.group(1))

    def job(self, job_id: int) -> dict[str, Any]:
        answer = self.http.get(f"/api/v1/jobs/{job_id}")
        assert answer.status_code == 200, answer.text
        result: dict[str, Any] = answer.json()
        return result

    def log(self, job_id: int) -> list[dict[str, Any]]:
        answer = self.http.get(f"/api/v1/jobs/{job_id}/log")
        assert answer.status_code == 200, answer.text
        lines: list[dict[str, Any]] = answer.json()["lines"]
        return lines

    def wait(self, job_id: int, timeout: float = 60) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            job = self.job(job_id)
            if job["status"] not in ("queued", "running"):
                return job
            time.sleep(0.1)
        raise AssertionError(f"job {job_id} did not end within {timeout}s")

    def events(self, job_id: int, *, after: int = 0, **headers: str) -> Any:
        """A streaming GET of the job's live log (use as a context manager)."""
        return self.http.stream(
            "GET",
            f"/jobs/{job_id}/events",
            params={"after": after},
            headers={"Accept": "text/event-stream", **headers},
            timeout=httpx.Timeout(30, read=20),
        )

    def close(self) -> None:
        self.http.close()


# A long log.


def long_job(session: Session, steps: int) -> tuple[int, int]:
    """A finished job of ``steps`` steps (three lines each), stored with ``session``: its
    id and its line count (past logtext.FULL lines, the page folds its middle)."""
    now = utcnow()
    job = Job(
        kind="upgrade",
        status="succeeded",
        target_key="long",
        target_display="long",
        steps_total=steps,
        steps_done=steps,
        requested_by="bench",
        source="cli",
        started_at=now,
        finished_at=now,
        step_stats=[
            {"step": n, "revision": f"r{n}", "duration": 0.01, "rows": 1, "lock_wait": 0}
            for n in range(1, steps + 1)
        ],
    )
    session.add(job)
    session.flush()
    job_id = job.id
    texts = [("info", "job starts")]
    for n in range(1, steps + 1):
        texts += [
            ("step", f"[{n}/{steps}] Running upgrade r{n - 1} -> r{n}, step"),
            ("sql", f"CREATE TABLE t{n} (id int)"),
            ("step", f"[{n}/{steps}] upgrade r{n - 1} -> r{n} done in 0.010s"),
        ]
    session.add_all(
        JobLine(job_id=job_id, seq=i, level=level, stream="worker", text=text)
        for i, (level, text) in enumerate(texts, start=1)
    )
    return job_id, len(texts)
