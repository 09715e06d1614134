"""A database URL turned into what libpq's programs take: a conninfo string and an environment.

The password never goes on a command line (``ps`` shows those to every local user): it
travels in PGPASSWORD, and every line a program prints is redacted before it is passed on.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from admin.config import mask_url, normalize_database_url
from admin.errors import InvalidInput

APPLICATION_NAME = "apex-schema-admin"


@dataclass(frozen=True)
class Target:
    """A target database, parsed once: dialect, name, and how to reach it."""

    url: URL
    display: str  # mask_url(url): the only form that may appear in a message
    password: str | None = field(repr=False)

    @property
    def is_sqlite(self) -> bool:
        return self.url.get_backend_name() == "sqlite"

    @property
    def database(self) -> str:
        return self.url.database or ""

    @property
    def sqlite_path(self) -> Path:
        """The file of a SQLite target (relative paths are relative to the working directory)."""
        if not self.database or self.database == ":memory:" or "mode=memory" in str(self.url):
            raise InvalidInput(f"{self.display} is an in-memory database: there is no file to copy")
        return Path(self.database)

    def with_database(self, name: str) -> Target:
        """The same server and credentials, another database."""
        url = self.url.set(database=name)
        return Target(url=url, display=_display(url), password=self.password)

    def conninfo(self, program: str) -> str:
        """libpq keyword/value connection string, without the password."""
        params: dict[str, str] = {}
        if self.url.host:
            params["host"] = self.url.host
        if self.url.port:
            params["port"] = str(self.url.port)
        if self.url.username:
            params["user"] = self.url.username
        params["dbname"] = self.database
        for key, value in self.url.query.items():
            if key == "password":
                continue  # kept out of argv; see environment()
            params[key] = value if isinstance(value, str) else ",".join(value)
        # Ours, whatever the URL says: the lock watch finds a restore's backend by it.
        params["application_name"] = f"{APPLICATION_NAME} {program}"[:63]
        return " ".join(f"{key}={_quote(value)}" for key, value in params.items())

    def environment(self) -> dict[str, str]:
        """The child's environment: ours (PATH, HOME for ~/.pgpass, PGSSL*...) plus the password."""
        env = tool_environment()
        if self.password:
            env["PGPASSWORD"] = self.password
        return env

    def redact(self, text: str) -> str:
        """``text`` with the password replaced by ***, should a program ever echo it."""
        if self.password and len(self.password) >= 3:
            return text.replace(self.password, "***")
        return text


def tool_environment() -> dict[str, str]:
    """The environment a client program runs with: ours, with its messages in English."""
    env = os.environ.copy()
    # English messages: errors are matched (version mismatch) and shown as they are.
    if "LC_ALL" in env:
        env.setdefault("LANG", env.pop("LC_ALL"))
    env["LC_MESSAGES"] = "C"
    return env


def parse_target(target_url: str) -> Target:
    """Parse a target URL; InvalidInput (with the password masked) when it is not one."""
    try:
        url = make_url(normalize_database_url(target_url))
    except (ValueError, ArgumentError) as exc:
        try:
            shown = mask_url(target_url)
        except (ValueError, ArgumentError):
            shown = "the target URL"
        raise InvalidInput(f"{shown} {exc}") from None
    password = url.password if isinstance(url.password, str) else None
    if password is None and "password" in url.query:
        value = url.query["password"]
        password = value if isinstance(value, str) else value[0]
    return Target(url=url, display=_display(url), password=password)


def _display(url: URL) -> str:
    """mask_url, and a password given as a query parameter dropped as well."""
    return mask_url(url.difference_update_query(["password"]))


def _quote(value: str) -> str:
    """A conninfo value: single-quoted, with backslash and quote escaped (libpq's rules)."""
    escaped = value.replace("\\", "\\\\").replace("'", "\\'")
    return f"'{escaped}'"
