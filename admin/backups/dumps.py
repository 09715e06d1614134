"""PostgreSQL dumps: pg_dump to a file; pg_restore --list and gzip to read one back in full."""

from __future__ import annotations

import gzip
import os
import re
import subprocess
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

from admin.backups import files, process, tools
from admin.backups.conninfo import Target, tool_environment
from admin.backups.errors import BackupCancelled, BackupFailed, VerificationFailed
from admin.backups.results import BackupFile, BackupFormat

_CHUNK = 1 << 20
_PLAIN_START = b"-- PostgreSQL database dump\n"
_PLAIN_END = b"-- PostgreSQL database dump complete"
_TAIL = 4096  # pg_dump writes only its \unrestrict line after the "complete" comment
# "216; 1259 18237 TABLE public items owner" in pg_restore --list (names are not quoted there).
_TOC_TABLE = re.compile(r"^\d+; \d+ \d+ TABLE (\S+) (.+) \S+$")
# "-- Name: items; Type: TABLE; Schema: public; Owner: owner" in a plain dump.
_PLAIN_TABLE = re.compile(rb"^-- Name: (.+?); Type: TABLE; Schema: (.+?); Owner: ", re.MULTILINE)
_LOCK_FAILED = re.compile(r"LOCK TABLE|lock timeout|statement timeout", re.IGNORECASE)


@dataclass(frozen=True)
class Header:
    """What a dump says about itself."""

    database_name: str | None = None
    server_version: str | None = None
    tool_version: str | None = None
    toc_entries: int | None = None
    tables: frozenset[str] = frozenset()  # "schema.table" (custom archives only)


def take(
    target: Target,
    backup_dir: Path,
    *,
    fmt: BackupFormat,
    lock_wait_timeout: str,
    pg_bin_dir: Path | None,
    on_line: Callable[[str], None],
    should_stop: Callable[[], bool] | None,
) -> BackupFile:
    """pg_dump ``target`` into a new file of BACKUP_DIR; see admin.backups.take."""
    pg_dump = tools.find("pg_dump", pg_bin_dir)
    created_at = datetime.now(UTC)
    started = time.monotonic()
    if (reason := files.check_backup_dir(backup_dir)) is not None:
        raise BackupFailed(reason)
    files.ensure_backup_dir(backup_dir)
    final = backup_dir / files.backup_name(target.database, fmt, created_at)
    on_line(f"backing up {target.display} with {pg_dump.label} ({fmt} format) into {final.name}")
    argv = [
        str(pg_dump.path),
        "--no-password",
        "--verbose",
        f"--lock-wait-timeout={lock_wait_timeout}",
    ]
    if fmt is BackupFormat.CUSTOM:
        argv.append("--format=custom")
    else:
        # --clean --if-exists: the script can replace the target as well as fill a new database.
        argv += ["--format=plain", "--compress=6", "--clean", "--if-exists"]
    with files.staged(final) as temp:
        argv += [f"--file={temp}", f"--dbname={target.conninfo('pg_dump')}"]
        outcome = process.run(
            argv,
            env=target.environment(),
            on_line=on_line,
            redact=target.redact,
            should_stop=should_stop,
            progress=lambda: _written(temp, started),
        )
        if outcome.stopped:
            raise BackupCancelled(f"backup of {target.display} cancelled; no file was kept")
        if not outcome.ok:
            raise _dump_failed(pg_dump, outcome, target, lock_wait_timeout)
        try:
            header = read_header(temp, fmt, pg_bin_dir=pg_bin_dir)
        except VerificationFailed as exc:
            raise BackupFailed(f"backup of {target.display} cannot be read back: {exc}") from None
        size = temp.stat().st_size
        sha256 = files.sha256_of(temp)
    duration_ms = int((time.monotonic() - started) * 1000)
    on_line(f"backup written: {final.name}, {files.human_size(size)}, sha256 {sha256[:16]}…")
    return BackupFile(
        file_name=final.name,
        path=final,
        format=fmt,
        size_bytes=size,
        sha256=sha256,
        duration_ms=duration_ms,
        database_name=target.database,
        server_version=header.server_version,
        tool_version=header.tool_version or pg_dump.version,
        created_at=created_at,
    )


def _written(path: Path, started: float) -> str | None:
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return None
    rate = size / max(time.monotonic() - started, 1e-3)
    return f"progress: {files.human_size(size)} written ({files.human_size(rate)}/s)"


def _dump_failed(
    pg_dump: tools.Tool, outcome: process.Outcome, target: Target, lock_wait_timeout: str
) -> Exception:
    said = "\n".join(outcome.tail)
    if (too_old := tools.version_mismatch(pg_dump, said)) is not None:
        return too_old
    error = outcome.error()
    if "LOCK TABLE" in said and _LOCK_FAILED.search(error):
        return BackupFailed(
            f"backup of {target.display} failed: a table stayed locked longer than "
            f"BACKUP_LOCK_WAIT_TIMEOUT={lock_wait_timeout} (another session holds a "
            f"conflicting lock, such as a migration's ACCESS EXCLUSIVE): {error}"
        )
    return BackupFailed(f"backup of {target.display} failed: {error}")


def read_header(path: Path, fmt: BackupFormat, *, pg_bin_dir: Path | None) -> Header:
    """The versions (and, for custom archives, the database and TOC size) a dump records."""
    if fmt is BackupFormat.CUSTOM:
        return _custom_header(path, pg_bin_dir)
    with gzip.open(path, "rb") as fh:
        head = fh.read(8192).decode("utf-8", errors="replace")
    server = re.search(r"^-- Dumped from database version (.+)$", head, re.MULTILINE)
    tool = re.search(r"^-- Dumped by pg_dump version (.+)$", head, re.MULTILINE)
    return Header(
        server_version=server.group(1).strip() if server else None,
        tool_version=tool.group(1).strip() if tool else None,
    )


def _custom_header(path: Path, pg_bin_dir: Path | None) -> Header:
    pg_restore = tools.find("pg_restore", pg_bin_dir)
    listing = subprocess.run(
        [str(pg_restore.path), "--list", str(path)],
        capture_output=True,
        text=True,
        errors="replace",
        env=tool_environment(),
        check=False,
    )
    if listing.returncode != 0:
        if (too_new := tools.archive_too_new(pg_restore, listing.stderr)) is not None:
            raise too_new
        said = process.Outcome(
            "pg_restore", listing.returncode, tuple(listing.stderr.splitlines()), stopped=False
        )
        raise VerificationFailed(
            f"{path.name}: pg_restore cannot read the archive's table of contents: {said.error()}"
        )
    fields: dict[str, str] = {}
    tables: set[str] = set()
    for line in listing.stdout.splitlines():
        if line.startswith(";"):
            key, sep, value = line.lstrip(";").strip().partition(":")
            if sep and not tables:
                fields.setdefault(key.strip(), value.strip())
        elif match := _TOC_TABLE.match(line):
            tables.add(f"{match.group(1)}.{match.group(2)}")
    entries = fields.get("TOC Entries", "")
    return Header(
        database_name=fields.get("dbname"),
        server_version=fields.get("Dumped from database version"),
        tool_version=fields.get("Dumped by pg_dump version"),
        toc_entries=int(entries) if entries.isdigit() else None,
        tables=frozenset(tables),
    )


def verify(
    path: Path,
    fmt: BackupFormat,
    *,
    pg_bin_dir: Path | None,
    on_line: Callable[[str], None],
    should_stop: Callable[[], bool] | None,
) -> tuple[Header, str]:
    """Read a dump in full; the header it records and what was checked, or VerificationFailed."""
    if fmt is BackupFormat.CUSTOM:
        header = _custom_header(path, pg_bin_dir)
        on_line(f"table of contents read: {header.toc_entries} entries; reading all data")
        pg_restore = tools.find("pg_restore", pg_bin_dir)
        outcome = process.run(
            [str(pg_restore.path), f"--file={os.devnull}", str(path)],
            env=tool_environment(),
            on_line=on_line,
            redact=str,
            should_stop=should_stop,
        )
        if outcome.stopped:
            raise VerificationFailed(f"{path.name}: verification cancelled")
        if not outcome.ok:
            raise VerificationFailed(
                f"{path.name} is truncated or damaged: reading all of its data failed: "
                f"{outcome.error()}"
            )
        detail = (
            f"pg_restore read the table of contents ({header.toc_entries} entries) and all data"
        )
        return header, detail
    _read_plain(path, on_line=on_line, should_stop=should_stop)
    return read_header(
        path, fmt, pg_bin_dir=pg_bin_dir
    ), "gzip stream read in full; pg_dump's header and end marker found"


def _read_plain(
    path: Path, *, on_line: Callable[[str], None], should_stop: Callable[[], bool] | None
) -> None:
    """Decompress a plain dump to its end: a complete gzip stream and a complete script."""
    total = path.stat().st_size
    head = b""
    tail = b""
    last = time.monotonic()
    try:
        with path.open("rb") as raw, gzip.GzipFile(fileobj=raw, mode="rb") as fh:
            while chunk := fh.read(_CHUNK):
                if len(head) < len(_PLAIN_START) + 64:
                    head += chunk[:256]
                tail = (tail + chunk)[-_TAIL:]
                if time.monotonic() - last >= 1.0:
                    last = time.monotonic()
                    done, size = files.human_size(raw.tell()), files.human_size(total)
                    on_line(f"progress: {done} of {size} read")
                    if should_stop is not None and should_stop():
                        raise VerificationFailed(f"{path.name}: verification cancelled")
    except (EOFError, OSError, zlib.error) as exc:
        raise VerificationFailed(
            f"{path.name} is truncated or damaged: it is not a complete gzip file ({exc})"
        ) from None
    if _PLAIN_START not in head:
        raise VerificationFailed(f"{path.name} does not start like a pg_dump SQL script")
    if _PLAIN_END not in tail:
        raise VerificationFailed(
            f"{path.name} is incomplete: it ends before pg_dump's 'dump complete' line"
        )


def feed_plain(path: Path, tables: set[str]) -> Callable[[IO[bytes]], None]:
    """A stdin feeder for psql that holds back the last chunk until the script proved complete.

    psql commits its --single-transaction at the end of its input, so a script that is cut
    short must never reach a clean end: the feeder raises instead, and the runner kills psql.
    The names of the tables the script creates are collected into ``tables`` on the way.
    """

    def feed(stdin: IO[bytes]) -> None:
        pending = b""
        tail = b""
        partial_line = b""
        try:
            with gzip.open(path, "rb") as fh:
                while chunk := fh.read(_CHUNK):
                    if pending:
                        stdin.write(pending)
                    pending = chunk
                    tail = (tail + chunk)[-_TAIL:]
                    text, _, partial_line = (partial_line + chunk).rpartition(b"\n")
                    for match in _PLAIN_TABLE.finditer(text):
                        schema, name = match.group(2), match.group(1)
                        tables.add(
                            f"{schema.decode(errors='replace')}.{name.decode(errors='replace')}"
                        )
        except (EOFError, OSError, zlib.error) as exc:
            if isinstance(exc, BrokenPipeError):
                raise
            raise VerificationFailed(f"{path.name} is truncated or damaged ({exc})") from None
        if _PLAIN_END not in tail:
            raise VerificationFailed(
                f"{path.name} is incomplete: it ends before pg_dump's 'dump complete' line"
            )
        stdin.write(pending)

    return feed
