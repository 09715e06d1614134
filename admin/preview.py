"""SQL previews: the plan and the offline SQL of an upgrade or downgrade, before anyone runs it.

A preview starts where the target database stands (or at a revision the reviewer names),
makes the plan the engine will run, renders its SQL for the target's dialect, and is
audited (``SqlPreviewed``, or ``SqlDownloaded`` for the .sql file) with the plan's and the
SQL's fingerprints, so the audit shows what a reviewer saw before a job ran it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from sqlalchemy.orm import Session

from admin import audit, migrations
from admin.analysis.rendering import render_plan
from admin.errors import InvalidInput
from admin.history import dialect_of
from admin.migrations import (
    Direction,
    Graph,
    MigrationError,
    Plan,
    Project,
    SqlScript,
    UnknownRevision,
)

MAX_START = 400
_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9_.-]+")
_ID_PREFIX = re.compile(r"^[0-9A-Za-z_]+$")


class NotRenderable(MigrationError):
    """Some steps of the plan read the database in Python: no complete offline script."""

    status = 422
    title = "SQL cannot be rendered offline"


@dataclass(frozen=True)
class PreviewRequest:
    """What the reviewer asked for: direction, target as typed, and an optional start."""

    direction: Direction
    target: str
    start: str | None = None

    @classmethod
    def parse(cls, direction: str, target: str, start: str | None = None) -> PreviewRequest:
        try:
            chosen = Direction((direction or "").strip().lower())
        except ValueError:
            raise InvalidInput(
                f"{direction[:30]!r} is not a direction: choose upgrade or downgrade"
            ) from None
        start = (start or "").strip() or None
        if start is not None and len(start) > MAX_START:
            raise InvalidInput(f"'from' is too long: at most {MAX_START} characters")
        return cls(chosen, migrations.check_target(target), start)


@dataclass(frozen=True)
class Preview:
    request: PreviewRequest
    current: tuple[str, ...]
    from_database: bool
    plan: Plan
    script: SqlScript
    destination: tuple[str, ...]
    dialect: str

    @property
    def is_empty(self) -> bool:
        return self.plan.is_empty

    @property
    def renderable(self) -> bool:
        return not self.script.errors

    @property
    def sliced(self) -> bool:
        """Every step has its own SQL or its own reason (else show the script whole)."""
        return all(piece.sql is not None or piece.error for piece in self.script.steps)

    @property
    def from_label(self) -> str:
        return _label(self.current)

    @property
    def to_label(self) -> str:
        return _label(self.destination)

    @property
    def confirm_value(self) -> str:
        """What an operator types to confirm a downgrade: where the database will be."""
        return ",".join(self.destination) if self.destination else "base"

    @property
    def filename(self) -> str:
        """``upgrade_<from>_<to>_<dialect>.sql``, safe in any file system and header."""
        parts = [self.plan.direction.value, self.from_label, self.to_label, self.dialect]
        name = "_".join(_UNSAFE_NAME.sub("-", part)[:60] for part in parts)
        return f"{name}.sql"


def _label(revisions: tuple[str, ...]) -> str:
    return "+".join(revisions) if revisions else "base"


def resolve_target(graph: Graph, target: str) -> str:
    """A revision id prefix becomes the full id (Alembic wants 4 characters and says little
    when a prefix is ambiguous); keywords, relative steps and branch targets stay as given."""
    if target in ("head", "heads", "base") or target in graph.by_id:
        return target
    if not _ID_PREFIX.match(target):
        return target
    try:
        return graph.get(target).id
    except UnknownRevision:
        raise UnknownRevision(
            f"no revision matches {target!r}: give a revision id (or a unique prefix), "
            "head, heads, base, branch@head or a relative step such as +1 / -1"
        ) from None


def destination(plan: Plan) -> tuple[str, ...]:
    """The database's heads after the plan runs (walking its steps from ``plan.current``)."""
    heads = list(plan.current)
    for step in plan.steps:
        heads = [h for h in heads if h not in step.from_revisions]
        heads += [r for r in step.to_revisions if r not in heads]
    return tuple(heads)


def make_preview(project: Project, url: str, request: PreviewRequest) -> Preview:
    """The plan and its SQL (raises MigrationError / UnknownRevision / Unavailable)."""
    # Re-read the revision files now, as a job's submission will: its fingerprint check
    # compares against this plan.
    graph = project.graph(max_age=0)
    target = resolve_target(graph, request.target)
    if request.start is None:
        _, current = migrations.read_current(project, url)
    else:
        current = graph.resolve(request.start)
    plan = migrations.make_plan(project, request.direction, target, current)
    dialect = dialect_of(url)
    script = render_plan(project, plan, url, dialect)
    return Preview(
        request=request,
        current=current,
        from_database=request.start is None,
        plan=plan,
        script=script,
        destination=destination(plan),
        dialect=dialect,
    )


def _event(preview: Preview, downloaded: bool) -> audit.Event:
    kind = audit.SqlDownloaded if downloaded else audit.SqlPreviewed
    return kind(
        direction=preview.plan.direction.value,
        target_revision=preview.request.target,
        from_revisions=list(preview.current),
        from_database=preview.from_database,
        revisions=preview.plan.revision_ids,
        plan_fingerprint=preview.plan.fingerprint,
        sql_fingerprint=preview.script.fingerprint if not preview.is_empty else None,
        dialect=preview.dialect,
        renderable=preview.renderable,
    )


def show(
    session: Session,
    actor: audit.Actor,
    project: Project,
    url: str,
    request: PreviewRequest,
    *,
    download: bool = False,
) -> Preview:
    """Make a preview and audit it; a download also needs a complete, non-empty script."""
    preview = make_preview(project, url, request)
    if download and preview.is_empty:
        raise MigrationError(
            f"nothing to {preview.plan.direction.value}: from {preview.from_label} to "
            f"{request.target} no revision runs, so there is no SQL to download"
        )
    if download and not preview.renderable:
        names = ", ".join(piece.step.revision for piece in preview.script.errors)
        raise NotRenderable(
            f"the SQL of {names} cannot be rendered offline (it reads the database while it "
            "runs): a .sql file without it would be incomplete. Read the reasons on the "
            "preview page; those steps show their SQL in the job log when they run."
        )
    audit.record(session, _event(preview, download), actor)
    return preview
