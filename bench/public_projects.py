"""Real public Alembic projects: the panel side by side with `alembic` (issue 14).

``BENCH_PUBLIC_REPOS`` lists fetched copies of their repositories (bare git directories,
separated by commas); each is recognised by its versions folder (``bench.public_specs``),
extracted into the bench's temporary directory, and checked against real PostgreSQL:

- the graph (ids, parents, dependencies, labels, heads, bases, flags, walk order) equals
  Alembic's ``ScriptDirectory.walk_revisions()``, and `schema-admin history` prints what
  `alembic history` prints (the panel reads the graph twice: cold, then after a restart);
- where the database stands (`schema-admin status` and ``read_status``) equals
  `alembic current` on an empty database, at a revision in the middle, and at the heads;
- `schema-admin sql upgrade X --from base` equals `alembic upgrade base:X --sql` (alembic
  with ``PYTHONHASHSEED=0``, the panel with its own) for the whole history or, where a step
  needs a live database, the longest range from base that Alembic renders;
- `schema-admin migrate heads` records every step (``steps_done == N``, ``[i/N]`` lines,
  no error-level line), ends where `alembic current` says, and leaves the same schema
  (`pg_dump --schema-only`) as `alembic upgrade heads` on another database.

The projects' own imports (``Spec.needs``) must be importable: ``BENCH_PUBLIC_SITE`` names a
folder they were installed into (``pip install --target DIR ...``), added to the children's
``PYTHONPATH`` only. A project whose repository or packages are missing is skipped, saying so.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, func, select
from sqlalchemy.engine import make_url

from bench import public_specs
from bench.context import Context, Databases
from bench.job_upgrade import SECRET
from bench.report import Row, Section
from bench.timing import ALEMBIC

SCHEMA_ADMIN = str(Path(sys.executable).with_name("schema-admin"))
REPOS_ENV, SITE_ENV = "BENCH_PUBLIC_REPOS", "BENCH_PUBLIC_SITE"
_STEP = re.compile(r"^\[(\d+)/(\d+)\] ")
_CURRENT = re.compile(r"^([0-9A-Za-z_]+)(?: \(.*\))?$")

ALEMBIC_GRAPH = """
import json, sys
from alembic.config import Config
from alembic.script import ScriptDirectory
from alembic.util import to_tuple
s = ScriptDirectory.from_config(Config(sys.argv[1]))
revs = [dict(id=r.revision, down=list(to_tuple(r.down_revision, ())),
    depends=list(to_tuple(r.dependencies, ())), labels=sorted(r.branch_labels),
    head=r.is_head, base=r.is_base, branch=r.is_branch_point, merge=r.is_merge_point)
    for r in s.walk_revisions()]
print(json.dumps(dict(revisions=revs, heads=sorted(s.get_heads()), bases=sorted(s.get_bases()))))
"""
PANEL_GRAPH = """
import json, sys
from pathlib import Path
from admin import migrations
g = migrations.open_project(Path(sys.argv[1]), Path(sys.argv[2])).graph()
revs = [dict(id=r.id, down=list(r.down_revisions), depends=list(r.dependencies),
    labels=sorted(r.branch_labels), head=r.is_head, base=r.is_base,
    branch=r.is_branch_point, merge=r.is_merge_point) for r in g.revisions]
print(json.dumps(dict(revisions=revs, heads=sorted(g.heads), bases=sorted(g.bases))))
"""
PANEL_STATUS = """
import json, sys
from pathlib import Path
from admin import migrations
s = migrations.read_status(migrations.open_project(Path(sys.argv[1]), Path(sys.argv[2])),
    sys.argv[3])
print(json.dumps(dict(state=s.state.value, current=sorted(s.current))))
"""


@dataclass
class Run:
    """One extracted project and the commands run on it."""

    spec: public_specs.Spec
    laid: public_specs.Laid
    workdir: Path
    env: dict[str, str]
    section: Section
    findings: list[str] = field(default_factory=list)
    revisions: int = 0

    def _run(self, args: list[str], url: str | None, seed: str | None) -> tuple[Any, float]:
        env = dict(self.env)
        if url is not None:
            env["DATABASE_URL"] = plain(url)
        if seed is not None:
            env["PYTHONHASHSEED"] = seed
        started = time.perf_counter()
        done = subprocess.run(
            args, cwd=self.laid.cwd, env=env, capture_output=True, text=True, timeout=1800
        )
        return done, (time.perf_counter() - started) * 1000

    def alembic(self, *args: str, url: str | None = None) -> tuple[Any, float]:
        config = self.laid.config
        if url is not None and self.laid.url_in_ini:
            config = self.ini_for(url)
        return self._run([ALEMBIC, "-c", str(config), *args], url, "0")

    def panel(self, *args: str, url: str | None = None) -> tuple[Any, float]:
        return self._run([SCHEMA_ADMIN, *args], url, None)

    def python(self, code: str, *args: str, seed: str | None = None) -> tuple[Any, float]:
        return self._run([sys.executable, "-c", code, *args], None, seed)

    def ini_for(self, url: str) -> Path:
        """A copy of the project's alembic.ini beside it, naming ``url`` (for `alembic`)."""
        copy = self.laid.config.with_name(f"bench-{make_url(url).database}.ini")
        text = self.laid.config.read_text().replace(public_specs.UNUSED_URL, plain(url))
        copy.write_text(text)
        return copy

    def row(self, ours: str, ms: float, theirs: str, their_ms: float, met: bool) -> None:
        name = self.spec.repo.split("/")[-1]
        self.section.rows.append(
            Row(self.revisions, f"{name}: {ours}", ms, theirs, their_ms, "identical", met)
        )


def plain(url: str) -> str:
    """The URL as a person writes it (``postgresql://``: env.py picks its own driver)."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def _check(done: Any, what: str) -> str:
    if done.returncode != 0:
        raise RuntimeError(f"{what} failed ({done.returncode}): {done.stderr.strip()[-800:]}")
    return str(done.stdout)


def _current(stdout: str) -> list[str]:
    return sorted(m.group(1) for line in stdout.splitlines() if (m := _CURRENT.match(line)))


def check_graph(run: Run, cache: Path) -> list[str]:
    """The graph and the history listing; returns the revisions base first."""
    theirs, their_ms = run.python(ALEMBIC_GRAPH, str(run.laid.config), seed="0")
    expected = json.loads(_check(theirs, "Alembic's walk"))
    run.revisions = len(expected["revisions"])
    for when in ("cold", "restart"):
        ours, ms = run.python(PANEL_GRAPH, str(run.laid.config), str(cache))
        got = json.loads(_check(ours, "the panel's graph"))
        same = got == expected
        if not same:
            diff = [
                (a, b)
                for a, b in zip(got["revisions"], expected["revisions"], strict=False)
                if a != b
            ][:2]
            run.findings.append(f"graph ({when}) differs from Alembic's walk: {diff}")
        run.row(f"graph, {when} (process)", ms, "`ScriptDirectory` walk (process)", their_ms, same)
    listing, ms = run.panel("history", url=public_specs.UNUSED_URL)
    alembic_listing, their_ms = run.alembic("history")
    same = _check(listing, "schema-admin history") == _check(alembic_listing, "alembic history")
    if not same:
        run.findings.append("`schema-admin history` differs from `alembic history`")
    run.row("`schema-admin history`", ms, "`alembic history`", their_ms, same)
    heads = expected["heads"]
    merges = sum(1 for r in expected["revisions"] if r["merge"])
    run.findings.append(
        f"{run.revisions} revisions, {len(heads)} head(s), {merges} merge point(s), "
        f"{sum(1 for r in expected['revisions'] if r['branch'])} branch point(s)"
    )
    return [r["id"] for r in reversed(expected["revisions"])]


def check_status(run: Run, url: str, cache: Path, what: str) -> bool:
    theirs, their_ms = run.alembic("current", url=url)
    expected = _current(_check(theirs, "alembic current"))
    ours, _ = run.python(PANEL_STATUS, str(run.laid.config), str(cache), url)
    got = json.loads(_check(ours, "read_status"))
    cli, ms = run.panel("status", url=url)
    at_heads = got["state"] == "up-to-date"
    same = got["current"] == expected and cli.returncode == (0 if at_heads else 3)
    if not same:
        run.findings.append(
            f"status {what}: panel {got} (exit {cli.returncode}), `alembic current` {expected}"
        )
    run.row(f"`schema-admin status`, {what}", ms, "`alembic current`", their_ms, same)
    return same


def check_sql(run: Run, order: list[str]) -> None:
    """The longest range from base that Alembic renders offline, both sides."""
    url = public_specs.UNUSED_URL  # offline: its dialect only, never connected to
    full, _ = run.alembic("upgrade", "base:heads", "--sql", url=url)
    last = len(order) - 1
    if full.returncode != 0:
        low, high = -1, last  # order[low] renders (or none does), order[high] does not
        while high - low > 1:
            mid = (low + high) // 2
            done, _ = run.alembic("upgrade", f"base:{order[mid]}", "--sql", url=url)
            if done.returncode == 0:
                low = mid
            else:
                high, failed = mid, done
        alembic_says = failed.stderr.strip().splitlines()[-1:] if high < last else []
        whole, _ = run.panel("sql", "upgrade", "heads", "--from", "base", url=url)
        reasons = [line for line in whole.stderr.splitlines() if line.strip()]
        run.findings.append(
            f"offline SQL: Alembic renders base:{order[low] if low >= 0 else 'base'} "
            f"({low + 1} of {len(order)} steps), not {order[high]} "
            f"(`alembic --sql`: {alembic_says[0] if alembic_says else full.stderr[-200:]!s}); "
            f"the panel on the whole range exits {whole.returncode}, naming "
            f"{len(reasons)} line(s) on stderr, the first: "
            f"{reasons[0] if reasons else '(nothing)'}"
        )
        last = low
    if last < 0:
        return
    target = "heads" if last == len(order) - 1 else order[last]
    theirs, their_ms = run.alembic("upgrade", f"base:{target}", "--sql", url=url)
    ours, ms = run.panel("sql", "upgrade", target, "--from", "base", url=url)
    same = _check(ours, "schema-admin sql") == _check(theirs, "alembic --sql")
    if not same:
        run.findings.append(f"offline SQL of base:{target} differs from `alembic --sql`")
    run.row(
        f"`schema-admin sql upgrade {target[:12]} --from base` ({last + 1} steps)",
        ms,
        "`alembic upgrade base:X --sql`",
        their_ms,
        same,
    )


def _schema(url: str) -> str:
    dump = subprocess.run(
        ["pg_dump", "--schema-only", "--no-owner", plain(url)], capture_output=True, text=True
    )
    _check(dump, "pg_dump")
    # pg_dump writes a random key on its \restrict lines: not part of the schema.
    return "\n".join(line for line in dump.stdout.splitlines() if not line.startswith("\\"))


def check_job(run: Run, databases: Databases, order: list[str], cache: Path, store: str) -> None:
    from admin.store.models import Job, JobLine

    ours_db, theirs_db = databases.create("pubjob"), databases.create("pubraw")
    check_status(run, ours_db, cache, "empty database")
    migrate, ms = run.panel("migrate", "heads", url=ours_db)
    _check(migrate, "schema-admin migrate")
    engine = create_engine(store)
    try:
        with engine.connect() as connection:
            job = connection.execute(select(Job).order_by(Job.id.desc()).limit(1)).one()
            levels = dict(
                connection.execute(
                    select(JobLine.level, func.count())
                    .where(JobLine.job_id == job.id)
                    .group_by(JobLine.level)
                ).all()
            )
    finally:
        engine.dispose()
    steps = [m for line in migrate.stdout.splitlines() if (m := _STEP.match(line))]
    numbered = {int(m.group(1)) for m in steps if int(m.group(2)) == len(order)}
    every = (
        job.status == "succeeded"
        and job.steps_done == job.steps_total == len(order)
        and numbered == set(range(1, len(order) + 1))
        and not levels.get("error")
    )
    run.findings.append(
        f"upgrade job {job.id}: {job.status}, steps {job.steps_done}/{job.steps_total}, "
        f"{len(numbered)} numbered steps in the terminal, lines by level {levels}, "
        f"revision after {job.revision_after}"
    )
    middle = order[len(order) // 2]
    first, first_ms = run.alembic("upgrade", middle, url=theirs_db)
    _check(first, f"alembic upgrade {middle}")
    check_status(run, theirs_db, cache, "a revision in the middle")
    raw, their_ms = run.alembic("upgrade", "heads", url=theirs_db)
    _check(raw, "alembic upgrade heads")
    where = check_status(run, ours_db, cache, "after the job")
    same_schema = _schema(ours_db) == _schema(theirs_db)
    if not same_schema:
        run.findings.append("the job's schema differs from `alembic upgrade heads`'s (pg_dump)")
    run.row(
        "`schema-admin migrate heads`: every step recorded, same end, same schema",
        ms,
        "`alembic upgrade MIDDLE` + `upgrade heads`",
        first_ms + their_ms,
        every and where and same_schema,
    )


def _repos() -> list[Path]:
    return [Path(p) for p in os.environ.get(REPOS_ENV, "").split(",") if p.strip()]


def _missing(run_env: dict[str, str], needs: tuple[str, ...], cwd: Path) -> list[str]:
    missing = []
    for module in needs:
        done = subprocess.run(
            [sys.executable, "-c", f"import {module}"], env=run_env, cwd=cwd, capture_output=True
        )
        if done.returncode != 0:
            missing.append(module)
    return missing


def measure(ctx: Context) -> Section:
    section = Section("public projects")
    repos = _repos()
    if not repos:
        section.notes.append(
            f"Skipped: {REPOS_ENV} names no repository (fetched copies of "
            + ", ".join(s.repo for s in public_specs.SPECS)
            + ", as bare git directories separated by commas)."
        )
        print(f"bench: public: skipped, {REPOS_ENV} is not set", file=sys.stderr)
        return section
    section.notes.append(
        "The check is the *met* column: *identical* (graph, listing, status, SQL, steps and "
        "schema, as the module's docstring says). The times are of one run of each command, "
        "beside each other for orientation: they include the projects' own imports."
    )
    databases = Databases(ctx.server_url)
    try:
        for git_dir in repos:
            _measure_one(ctx, section, databases, git_dir)
    finally:
        databases.drop_all()
    return section


def _measure_one(ctx: Context, section: Section, databases: Databases, git_dir: Path) -> None:
    spec = public_specs.recognise(git_dir) if git_dir.is_dir() else None
    if spec is None:
        section.notes.append(f"Skipped {git_dir}: not one of the known projects' repositories.")
        return
    name = spec.repo.split("/")[-1]
    root = ctx.workdir / f"public-{name}"
    laid = public_specs.extract(git_dir, spec, root)
    site = os.environ.get(SITE_ENV, "")
    path = [p for p in (site, *map(str, laid.python_path)) if p]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(path),
        "PYTHONWARNINGS": "ignore",
        "ALEMBIC_CONFIG": str(laid.config),
        "ADMIN_DATABASE_URL": f"sqlite:///{root / 'store.sqlite3'}",
        "VAR_DIR": str(root / "var"),
        "SECRET_KEY": SECRET,
    }
    missing = _missing(env, spec.needs, laid.cwd)
    if missing:
        section.notes.append(
            f"Skipped {spec.repo}: its code imports {', '.join(missing)}, not importable "
            f"here (install into a folder with `pip install --target DIR` and set {SITE_ENV})."
        )
        return
    run = Run(spec, laid, root, env, section)
    run.findings.append(f"commit {public_specs.head_commit(git_dir)}")
    cache = root / "var" / "cache"
    print(f"bench: public: {spec.repo} ...", file=sys.stderr, flush=True)
    order = check_graph(run, cache)
    check_sql(run, order)
    check_job(run, databases, order, cache, env["ADMIN_DATABASE_URL"])
    section.notes.append(f"**{spec.repo}**: " + "; ".join(run.findings) + ".")
    section.notes.extend(spec.notes)
