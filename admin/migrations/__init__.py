"""The engine: the Alembic facade, and the only module that touches Alembic's internals.

- ``open_project(path, cache_dir)`` loads an Alembic project once and gives its revision
  ``graph()``, read from the revision files' text (``catalog``, kept across restarts in
  ``cache_dir``) without importing them; a revision module is imported only where it runs
  (``lazy``);
- ``read_status(project, url)`` says where a target database stands;
- ``make_plan(project, direction, target, current)`` gives the ordered steps of a run;
- ``render(project, plan, url, dialect)`` gives its offline SQL, whole and per step,
  rendered in a child process (``offline``) and kept per plan;
- ``run(project, connection, command, target, on_event=...)`` runs it online;
- ``migration_lock(url, wait=..., owner=...)`` keeps two runs on one target apart;
- ``configure(settings)`` sets how this process connects to targets (timeouts, keepalives);
  ``target_identity(url)`` says which database a URL reaches, as its server tells it.
"""

from __future__ import annotations

from admin.migrations.autogen import check_message, create_revision
from admin.migrations.database import (
    ConnectOptions,
    TargetMissing,
    configure,
    create_database,
    database_exists,
    database_name,
    dispose_engines,
    engine_for,
    identity_key,
    masked,
    new_engine,
    target_identity,
    target_key,
)
from admin.migrations.lock import LockHeld, describe_owner, migration_lock
from admin.migrations.online import Command, EngineEvent, EventKind, PlanChanged, Stopped, run
from admin.migrations.plan import Direction, Plan, Step, check_target, make_plan
from admin.migrations.project import (
    Graph,
    MigrationError,
    Project,
    Revision,
    UnknownRevision,
    on_new_graph,
    open_project,
)
from admin.migrations.reads import TargetBusy, TargetLocked
from admin.migrations.reasons import Cause
from admin.migrations.sql import (
    SqlScript,
    StepSql,
    close_renderers,
    release_renderer,
    render,
    render_many,
    renderer_for,
)
from admin.migrations.status import (
    State,
    Status,
    current_heads,
    read_current,
    read_status,
    recent_positions,
)

__all__ = [
    "Cause",
    "Command",
    "ConnectOptions",
    "Direction",
    "EngineEvent",
    "EventKind",
    "Graph",
    "LockHeld",
    "MigrationError",
    "Plan",
    "PlanChanged",
    "Project",
    "Revision",
    "SqlScript",
    "State",
    "Status",
    "Step",
    "Stopped",
    "StepSql",
    "TargetBusy",
    "TargetLocked",
    "TargetMissing",
    "UnknownRevision",
    "check_message",
    "check_target",
    "close_renderers",
    "release_renderer",
    "configure",
    "create_database",
    "create_revision",
    "current_heads",
    "database_exists",
    "database_name",
    "describe_owner",
    "dispose_engines",
    "engine_for",
    "identity_key",
    "make_plan",
    "on_new_graph",
    "masked",
    "migration_lock",
    "new_engine",
    "open_project",
    "read_current",
    "read_status",
    "recent_positions",
    "render",
    "render_many",
    "renderer_for",
    "run",
    "target_identity",
    "target_key",
]
