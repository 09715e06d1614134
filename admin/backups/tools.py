"""The PostgreSQL client programs (pg_dump, pg_restore, psql): where they are, which version."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from admin.backups.errors import ToolMissing

_VERSION = re.compile(r"\(PostgreSQL\)\s+(\d+(?:\.\d+)*)(.*)$")
# pg_dump's own words when it refuses a newer server (PostgreSQL 9.x to 17).
_MISMATCH = re.compile(r"server version:\s*([\w.]+).*?pg_dump version:\s*([\w.]+)", re.DOTALL)
_ARCHIVE_TOO_NEW = re.compile(r"unsupported version \(([\d.]+)\) in file header")
# Debian / Ubuntu install every major version side by side here.
_DEBIAN_BIN = Path("/usr/lib/postgresql")


@dataclass(frozen=True)
class Tool:
    """One client program, found and asked for its version."""

    name: str
    path: Path
    version: str  # e.g. "15.20"; the distribution's suffix is dropped

    @property
    def major(self) -> int:
        return major_of(self.version)

    @property
    def label(self) -> str:
        return f"{self.name} {self.version}"


def major_of(version: str) -> int:
    """The major version: 15 for '15.4', 9 for '9.6.24' (the 9.x minor counts as 9 here)."""
    match = re.match(r"\d+", version.strip())
    if match is None:
        raise ValueError(f"not a version: {version!r}")
    return int(match.group())


def _install_hint(major: int | None = None) -> str:
    package = f"postgresql-client-{major}" if major else "postgresql-client"
    hint = f"install the PostgreSQL client tools (Debian/Ubuntu: apt-get install {package})"
    if major:
        candidate = _DEBIAN_BIN / str(major) / "bin"
        if (candidate / "pg_dump").is_file():
            return f"set PG_BIN_DIR={candidate}, where version {major} is installed"
    return f"{hint} or set PG_BIN_DIR to the directory that has them"


def find(name: str, pg_bin_dir: Path | None) -> Tool:
    """Locate ``name`` in PG_BIN_DIR (when set) or on PATH and read its version."""
    if pg_bin_dir is not None:
        path = pg_bin_dir / name
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise ToolMissing(
                f"PG_BIN_DIR={pg_bin_dir} has no executable {name}: {_install_hint()}"
            )
    else:
        found = shutil.which(name)
        if found is None:
            raise ToolMissing(f"{name} was not found on PATH: {_install_hint()}")
        path = Path(found)
    try:
        completed = subprocess.run(
            [str(path), "--version"], capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ToolMissing(f"{path} cannot be run ({exc}): {_install_hint()}") from exc
    match = _VERSION.search(completed.stdout.strip())
    if completed.returncode != 0 or match is None:
        said = (completed.stdout or completed.stderr).strip().splitlines()[:1]
        raise ToolMissing(
            f"{path} --version did not answer like PostgreSQL's {name}"
            + (f" ({said[0]})" if said else "")
        )
    return Tool(name=name, path=path, version=match.group(1))


def version_mismatch(tool: Tool, output: str) -> ToolMissing | None:
    """pg_dump's refusal of a newer server, as a message that says what to install."""
    if "version mismatch" not in output:
        return None
    match = _MISMATCH.search(output)
    if match is None:
        return ToolMissing(f"{tool.label} refused the server's version: {_install_hint()}")
    server, ours = match.groups()
    server_major = major_of(server)
    return ToolMissing(
        f"{tool.name} {ours} ({tool.path}) is older than the server ({server}); "
        f"a dump needs {tool.name} {server_major} or newer: {_install_hint(server_major)}"
    )


def archive_too_new(tool: Tool, output: str) -> ToolMissing | None:
    """pg_restore's refusal of an archive written by a newer pg_dump, with what to do."""
    match = _ARCHIVE_TOO_NEW.search(output)
    if match is None:
        return None
    return ToolMissing(
        f"{tool.label} ({tool.path}) cannot read this archive (format {match.group(1)}), "
        f"which a newer pg_dump wrote: use pg_restore of at least the version that wrote it; "
        f"{_install_hint()}"
    )
