"""What a backup, a verification and a restore report back: plain facts for the store."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from pathlib import Path

from admin.errors import InvalidInput


class BackupFormat(StrEnum):
    CUSTOM = "custom"  # pg_dump -Fc, restored with pg_restore
    PLAIN = "plain"  # pg_dump plain SQL, gzip-compressed, restored with psql
    SQLITE = "sqlite"  # a copy of the SQLite file made with the online backup API

    @classmethod
    def parse(cls, value: str) -> BackupFormat:
        """The format named by ``value``; InvalidInput for anything else."""
        try:
            return cls(str(value).strip().lower())
        except ValueError:
            names = ", ".join(f.value for f in cls)
            raise InvalidInput(
                f"unknown backup format {value!r}: expected one of {names}"
            ) from None


class RestoreMode(StrEnum):
    NEW = "new"  # into a new database: the target is not touched
    REPLACE = "replace"  # over the target itself

    @classmethod
    def parse(cls, value: str) -> RestoreMode:
        """The mode named by ``value``; InvalidInput for anything else."""
        try:
            return cls(str(value).strip().lower())
        except ValueError:
            raise InvalidInput(f"unknown restore mode {value!r}: expected new or replace") from None


@dataclass(frozen=True)
class BackupFile:
    """A finished backup: renamed into place, fsynced, mode 0600."""

    file_name: str
    path: Path
    format: BackupFormat
    size_bytes: int
    sha256: str
    duration_ms: int
    database_name: str
    server_version: str | None
    tool_version: str
    created_at: datetime


@dataclass(frozen=True)
class Verification:
    """A backup file read in full and found complete."""

    file_name: str
    format: BackupFormat
    size_bytes: int
    sha256: str
    duration_ms: int
    detail: str
    # What the file says about itself (None when the format does not record it).
    database_name: str | None = None
    server_version: str | None = None
    tool_version: str | None = None
    toc_entries: int | None = None


@dataclass(frozen=True)
class RestoreResult:
    """A finished restore and where the data went."""

    mode: RestoreMode
    format: BackupFormat
    database_name: str
    target_display: str  # the restored database's URL with the password masked
    created: bool  # a new database (or file) was made for this restore
    duration_ms: int
    tool_version: str
    # Replace mode: tables the database has that the backup does not (left in place).
    leftover_tables: tuple[str, ...] = ()
