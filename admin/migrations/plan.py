"""Plans: the ordered steps Alembic will run for a target, and their fingerprint."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from enum import StrEnum

from alembic.runtime.migration import RevisionStep
from alembic.script import ScriptDirectory

from admin.migrations.errors import MigrationError
from admin.migrations.graph import Graph
from admin.migrations.pending import light_steps
from admin.migrations.project import Project

# What Alembic places as a target: an id or a prefix, head, heads, base, branch@head,
# branch@rev, a relative step (+N, -N, rev+N, branch@-N). Anything else is refused before
# it reaches Alembic, whose parser asserts on some of it.
_TARGET = re.compile(r"^(?:(?P<branch>\w{1,64})@)?(?P<symbol>\w{1,64})?(?P<relative>[+-]\d{1,6})?$")
_NOT_A_BRANCH = ("head", "heads", "base")
_HELP = (
    "use a revision id (or a unique prefix), head, heads, base, branch@head, or a relative "
    "step such as +1 / -2"
)


class BadTarget(MigrationError):
    """A target no revision can be: a usage error (exit 2 in the CLI)."""

    status = 400
    title = "Not a revision target"
    exit_code = 2


class Direction(StrEnum):
    UPGRADE = "upgrade"
    DOWNGRADE = "downgrade"


@dataclass(frozen=True)
class Step:
    """One revision applied or reverted."""

    revision: str
    direction: Direction
    message: str
    sha256: str
    from_revisions: tuple[str, ...]
    to_revisions: tuple[str, ...]

    @property
    def label(self) -> str:
        src = ",".join(self.from_revisions) or "base"
        dst = ",".join(self.to_revisions) or "base"
        return f"{self.direction.value} {src} -> {dst}"


@dataclass(frozen=True)
class Plan:
    """What a run from ``current`` to ``target`` will do, in order."""

    direction: Direction
    target: str
    current: tuple[str, ...]
    steps: tuple[Step, ...]
    fingerprint: str

    @property
    def revision_ids(self) -> list[str]:
        return [step.revision for step in self.steps]

    @property
    def is_empty(self) -> bool:
        return not self.steps


def shown(value: str) -> str:
    """A value someone typed, quoted for a one-line message (cut, control characters escaped)."""
    text = repr(value[:60])
    return text + ("…" if len(value) > 60 else "")


def check_target(target: str) -> str:
    """The target, stripped; BadTarget for anything Alembic's parser cannot place."""
    target = (target or "").strip()
    match = _TARGET.match(target) if len(target) <= 140 else None
    if match is None or not (match["symbol"] or match["relative"]):
        raise BadTarget(f"{shown(target)} is not a revision target: {_HELP}")
    if match["branch"] in _NOT_A_BRANCH:
        raise BadTarget(
            f"{shown(target)} is not a revision target: {match['branch']!r} is not a branch "
            f"name; {_HELP}"
        )
    if match["relative"] and match["symbol"] == "heads":
        raise BadTarget(
            f"{shown(target)} is not a revision target: a relative step needs one starting "
            "point, and 'heads' may be several; name a revision or a branch (branch@+1)"
        )
    return target


def fingerprint(direction: Direction, steps: tuple[Step, ...]) -> str:
    """sha256 of the direction and the ordered revision ids with their file hashes."""
    digest = hashlib.sha256(direction.value.encode())
    for step in steps:
        digest.update(f"\n{step.revision}:{step.sha256}".encode())
    return digest.hexdigest()


def alembic_steps(
    script: ScriptDirectory, direction: Direction, target: str, current: tuple[str, ...]
) -> list[object]:
    """Alembic's own step objects for a run, exactly what its commands would execute."""
    if direction is Direction.UPGRADE:
        return list(script._upgrade_revs(target, current))  # type: ignore[arg-type]
    return [
        DowngradeStep(step.revision_map, step.revision, False)
        for step in script._downgrade_revs(target, current)  # type: ignore[arg-type]
    ]


class DowngradeStep(RevisionStep):
    """Alembic's downgrade step, without a walk of the whole history where none is needed.

    At each downgrade step Alembic asks what the reverted revision leaves as heads
    (``_unmerge_to_revisions``): the revisions it goes down to, less those below another
    head or below one another, found by collecting every ancestor of each: a walk down to
    the base at every step, O(N²) over a downgrade to base (0.4–0.5 s of CPU at 1,000
    revisions, in the worker and again in the child rendering the job's script). When the
    step leaves one revision and no other head, that revision is the answer (no revision
    is its own ancestor), as the walk would find; any other case is Alembic's own.
    """

    def _unmerge_to_revisions(self, heads: set[str]) -> tuple[str, ...]:
        to_revisions = self.to_revisions
        if len(to_revisions) == 1 and set(heads) <= {self.revision.revision}:
            return tuple(to_revisions)
        return super()._unmerge_to_revisions(heads)


def plan_steps(
    project: Project,
    direction: Direction,
    target: str,
    current: tuple[str, ...],
    *,
    max_age: float = 1.0,
) -> tuple[Step, ...]:
    """The ordered steps for ``direction`` to ``target`` from the ``current`` heads."""
    target = check_target(target)
    graph = project.graph(max_age)
    unknown = [rev for rev in current if rev not in graph.by_id]
    if unknown:
        raise MigrationError(
            f"the database is at {', '.join(unknown)}, which no revision file has: "
            "deploy the missing revision files or stamp the database"
        )
    if direction is Direction.DOWNGRADE and not current and target != "base":
        raise MigrationError("the database is at base: there is nothing to downgrade")
    light = light_steps(graph, direction is Direction.UPGRADE, target, current)
    if light is not None:
        # Without Alembic's revision map (its time and memory, kept by the web process).
        return tuple(
            Step(rid, direction, graph.by_id[rid].message, graph.by_id[rid].sha256, src, dst)
            for rid, src, dst in light
        )
    script = project.script(max_age)
    with project.planning_errors(target):
        raw = alembic_steps(script, direction, target, current)
    steps = tuple(_step(graph, direction, item) for item in raw)
    if not steps and direction is Direction.UPGRADE:
        _check_not_behind(project, script, target, current)
    return steps


def make_plan(
    project: Project,
    direction: Direction,
    target: str,
    current: tuple[str, ...],
    *,
    max_age: float = 1.0,
) -> Plan:
    """The plan for ``direction`` to ``target`` from the ``current`` heads."""
    steps = plan_steps(project, direction, target, current, max_age=max_age)
    target = target.strip()
    return Plan(
        direction=direction,
        target=target,
        current=current,
        steps=steps,
        fingerprint=fingerprint(direction, steps),
    )


def _check_not_behind(
    project: Project, script: ScriptDirectory, target: str, current: tuple[str, ...]
) -> None:
    """An upgrade to a revision the database is already past says so (Alembic is silent)."""
    if target in ("head", "heads") or target.startswith(("+", "-")) or "@" in target:
        return
    with project.planning_errors(target):
        wanted = {s.revision for s in script.get_revisions(target) if s is not None}
    if wanted - set(current):
        raise MigrationError(
            f"the database is already past {target}: to go back to it, downgrade instead"
        )


def _step(graph: Graph, direction: Direction, item: object) -> Step:
    revision = item.revision.revision  # type: ignore[attr-defined]
    known = graph.by_id[revision]
    return Step(
        revision=revision,
        direction=direction,
        message=known.message,
        sha256=known.sha256,
        from_revisions=tuple(item.from_revisions),  # type: ignore[attr-defined]
        to_revisions=tuple(item.to_revisions),  # type: ignore[attr-defined]
    )
