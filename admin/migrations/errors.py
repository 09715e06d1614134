"""The engine's errors, said so a person can act on them."""

from __future__ import annotations

from admin.errors import AdminError, NotFound


class MigrationError(AdminError):
    """A request the engine cannot carry out, said so a person can act on it."""

    status = 400
    title = "Migration error"


class UnknownRevision(MigrationError, NotFound):
    status = 404
    title = "Unknown revision"
