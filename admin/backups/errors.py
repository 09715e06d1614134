"""Errors of backups, verifications and restores: each says what failed and what to do."""

from __future__ import annotations

from admin.errors import AdminError


class BackupError(AdminError):
    """Base of every failure this package raises about a backup operation."""

    status = 500
    title = "Backup failed"


class BackupFailed(BackupError):
    """Taking a backup failed; no file was left behind."""


class BackupCancelled(BackupFailed):
    """The caller asked to stop; the dump was killed and its partial file removed."""

    title = "Backup cancelled"


class VerificationFailed(BackupError):
    """A backup file is incomplete, damaged or changed since it was taken."""

    status = 422
    title = "Backup verification failed"


class ChecksumMismatch(VerificationFailed):
    """The file is not the one that was taken: its sha256 differs from the recorded one."""

    def __init__(self, message: str, *, found: str) -> None:
        super().__init__(message)
        self.found = found


class RestoreFailed(BackupError):
    """A restore failed; the database restored into was left as it was (or dropped)."""

    title = "Restore failed"


class ToolMissing(BackupError):
    """pg_dump / pg_restore / psql is missing or too old for the server or the archive."""

    status = 503
    title = "PostgreSQL client tools missing"
