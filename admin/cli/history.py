"""schema-admin history: the revision graph, newest first, like ``alembic history``."""

from __future__ import annotations

import argparse

from admin import migrations
from admin.cli import target
from admin.cli.base import Commands
from admin.config import Settings
from admin.errors import AdminError
from admin.migrations import Revision


def register(commands: Commands) -> None:
    parser = commands.add_parser(
        "history",
        help="the revision history, newest first",
        description="List the revisions newest first, as `alembic history` does, marking "
        "the head(s), branch points, merge points and the revision(s) the target database "
        "(DATABASE_URL) is at. When the database cannot be read the list is printed "
        "without the current mark and a note goes to stderr.",
    )
    parser.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="one block per revision: parents, branches, path, file hash, docstring",
    )
    parser.set_defaults(handler=show)


def _parents(rev: Revision) -> str:
    return ", ".join(rev.down_revisions) if rev.down_revisions else "<base>"


def _marks(rev: Revision, current: frozenset[str]) -> str:
    return "".join(
        (
            " (head)" if rev.is_head else "",
            " (current)" if rev.id in current else "",
            " (branchpoint)" if rev.is_branch_point else "",
            " (mergepoint)" if rev.is_merge_point else "",
        )
    )


def line(rev: Revision, current: frozenset[str]) -> str:
    """One revision in `alembic history`'s own format."""
    parents = _parents(rev)
    if rev.dependencies:
        parents = f"{parents} ({', '.join(rev.dependencies)})"
    labels = f" ({', '.join(rev.branch_labels)})" if rev.branch_labels else ""
    return f"{parents} -> {rev.id}{labels}{_marks(rev, current)}, {rev.message}"


def block(rev: Revision, current: frozenset[str]) -> str:
    """One revision in `alembic history --verbose`'s format, plus the file's sha256."""
    out = [f"Rev: {rev.id}{_marks(rev, current)}"]
    out.append(f"{'Merges' if rev.is_merge_point else 'Parent'}: {_parents(rev)}")
    if rev.dependencies:
        out.append(f"Also depends on: {', '.join(rev.dependencies)}")
    if rev.is_branch_point:
        out.append(f"Branches into: {', '.join(rev.children)}")
    if rev.branch_labels:
        out.append(f"Branch names: {', '.join(rev.branch_labels)}")
    out.append(f"Path: {rev.path}")
    out.append(f"sha256: {rev.sha256}")
    out.append("")
    out.extend(f"    {para}" for para in rev.docstring.splitlines())
    return "\n".join(out) + "\n"


def show(args: argparse.Namespace, settings: Settings) -> int:
    project = target.project(settings)
    graph = project.graph()
    try:
        _, heads = migrations.read_current(project, settings.database_url)
        current = frozenset(heads)
    except AdminError as exc:
        target.note(f"the current revision is not marked: {exc}")
        current = frozenset()
    if not graph.revisions:
        target.note(f"no revision files in {target.relative(project.config_path.parent)}")
        return 0
    if args.verbose:
        text = "\n".join(block(rev, current) for rev in graph.revisions) + "\n"
    else:
        text = "\n".join(line(rev, current) for rev in graph.revisions) + "\n"
    target.write(text)
    return 0
