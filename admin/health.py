"""Readiness: may this process take traffic? (Liveness is /healthz: no database touched.)

Ready when the store answers and its schema is the one this version expects, and the
target answers. A target that is behind, whose version table is locked, or a panel started
degraded, is still ready: the panel is the tool to fix it; the answer says so.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from admin import migrations
from admin.entrypoint import degraded_now
from admin.errors import AdminError, describe
from admin.runtime import Runtime
from admin.store import schema


@dataclass(frozen=True)
class Readiness:
    ready: bool
    reason: str | None = None
    checks: dict[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"status": "ready" if self.ready else "unavailable"}
        if self.reason:
            body["reason"] = self.reason
        body.update(self.checks)
        return body


def check(runtime: Runtime) -> Readiness:
    """The store, then the target; the first problem found is the reason."""
    settings = runtime.settings
    try:
        if not schema.is_current(runtime.store_engine):
            with runtime.store_engine.connect() as connection:
                current = schema.current_revision(connection)
            return Readiness(
                False,
                f"the store's schema is at {current or 'empty'} but this version needs "
                f"{schema.head_revision()}: run `schema-admin store upgrade` or restart",
                {"store": "behind"},
            )
    except SQLAlchemyError as exc:
        return Readiness(
            False,
            f"the store {settings.store_url_masked} does not answer: {describe(exc)}",
            {"store": "unreachable"},
        )
    try:
        project = migrations.open_project(settings.alembic_config, settings.cache_dir)
    except AdminError as exc:
        return Readiness(False, str(exc), {"store": "ok", "target": "no project"})
    status = migrations.read_status(project, settings.database_url)
    checks: dict[str, Any] = {
        "store": "ok",
        "target": status.state.value,
        "pending": len(status.pending),
    }
    if status.blocked:
        # The server answered; a lock on the version table (a restore, VACUUM FULL) must not
        # take every replica out of service at once.
        checks["target"] = "blocked"
        checks["target_message"] = status.message
    elif not status.reachable:
        return Readiness(False, status.message, checks)
    degraded = degraded_now(settings, status.state)
    checks["degraded"] = asdict(degraded) if degraded else None
    return Readiness(True, None, checks)
