"""PostgreSQL restores: into a new database made for it, or over the target in one transaction."""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.pool import NullPool

from admin.backups import dumps, process, tools
from admin.backups.conninfo import APPLICATION_NAME, Target
from admin.backups.durations import seconds
from admin.backups.errors import RestoreFailed, VerificationFailed
from admin.backups.lockwatch import LockWatch
from admin.backups.results import BackupFormat, RestoreMode, RestoreResult
from admin.errors import Conflict, InvalidInput, describe

_DATABASE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_-]{0,62}")


def new_database_name(target_database: str, when: datetime) -> str:
    """A name for a restore into a new database: the target's name and the time (UTC)."""
    suffix = when.astimezone(UTC).strftime("_restored_%Y%m%d_%H%M%S")
    stem = re.sub(r"[^A-Za-z0-9_]+", "_", target_database).strip("_") or "db"
    if stem[0].isdigit():
        stem = f"db_{stem}"
    return stem[: 63 - len(suffix)] + suffix


def check_database_name(name: str) -> str:
    """``name`` if it can name a new database here; InvalidInput saying why not otherwise."""
    if not _DATABASE_NAME.fullmatch(name):
        raise InvalidInput(
            f"{name[:80]!r} cannot name a new database: use up to 63 letters, digits, "
            "_ or -, starting with a letter or _"
        )
    return name


def restore(
    path: Path,
    fmt: BackupFormat,
    target: Target,
    *,
    mode: RestoreMode,
    new_database: str | None,
    pg_bin_dir: Path | None,
    on_line: Callable[[str], None],
    should_stop: Callable[[], bool] | None,
    lock_timeout: str | None,
    jobs: int = 1,
) -> RestoreResult:
    """Restore a pg_dump file; see admin.backups.restore."""
    if fmt is BackupFormat.SQLITE:
        raise InvalidInput(f"{path.name} is a SQLite backup; {target.display} is PostgreSQL")
    tool = tools.find("pg_restore" if fmt is BackupFormat.CUSTOM else "psql", pg_bin_dir)
    started = time.monotonic()
    tables: set[str] = set()
    if fmt is BackupFormat.CUSTOM and not (jobs > 1 and mode is RestoreMode.NEW):
        # Read before anything is touched: an archive pg_restore cannot list is not restored.
        # (A parallel restore into a new database, a rehearsal's, skips it: the tables are
        # only needed over the target, and a failure drops the new database whole.)
        tables = set(dumps.read_header(path, fmt, pg_bin_dir=pg_bin_dir).tables)
    into = target
    if mode is RestoreMode.NEW:
        if new_database is not None:
            names = [check_database_name(new_database)]
        else:
            # Two restores in one second get the same name: the second takes a suffix.
            base = new_database_name(target.database, datetime.now(UTC))
            names = [base, *(f"{base[:60]}_{n}" for n in range(2, 10))]
        name = _create_database(target, names)
        into = target.with_database(name)
        on_line(f"created database {name}; restoring {path.name} into {into.display}")
    else:
        on_line(f"restoring {path.name} over {target.display} in a single transaction")
    try:
        outcome, lock_wait = _run(
            tool, path, fmt, target, into, mode, tables, on_line, should_stop, lock_timeout, jobs
        )
    except BaseException as exc:
        if mode is RestoreMode.NEW:
            _drop_database(target, into.database, on_line)
        if isinstance(exc, VerificationFailed):
            raise RestoreFailed(f"{exc}; nothing was committed to {into.display}") from None
        raise
    if not outcome.ok:
        if mode is RestoreMode.NEW:
            _drop_database(target, into.database, on_line)
            after = "the new database was dropped"
        else:
            after = "the transaction was rolled back: the target is as it was"
        if (too_new := tools.archive_too_new(tool, "\n".join(outcome.tail))) is not None:
            raise too_new
        if outcome.stopped:
            what = "cancelled"
        elif lock_wait is not None:
            what = f"failed: {lock_wait}"
        else:
            what = f"failed: {outcome.error()}"
        raise RestoreFailed(f"restore of {path.name} into {into.display} {what}; {after}")
    leftover: tuple[str, ...] = ()
    if mode is RestoreMode.REPLACE:
        leftover = _tables_not_in(into, tables, on_line)
    duration_ms = int((time.monotonic() - started) * 1000)
    on_line(f"restored {path.name} into {into.display} in {duration_ms / 1000:.1f}s")
    return RestoreResult(
        mode=mode,
        format=fmt,
        database_name=into.database,
        target_display=into.display,
        created=mode is RestoreMode.NEW,
        duration_ms=duration_ms,
        tool_version=tool.label,
        leftover_tables=leftover,
    )


def _run(
    tool: tools.Tool,
    path: Path,
    fmt: BackupFormat,
    target: Target,
    into: Target,
    mode: RestoreMode,
    tables: set[str],
    on_line: Callable[[str], None],
    should_stop: Callable[[], bool] | None,
    lock_timeout: str | None,
    jobs: int = 1,
) -> tuple[process.Outcome, str | None]:
    """Run pg_restore or psql; the outcome, and why the lock watch cancelled it (if it did)."""
    program = f"{tool.name} {secrets.token_hex(4)}"
    if fmt is BackupFormat.CUSTOM:
        argv = [str(tool.path), "--no-password", "--verbose", "--exit-on-error"]
        if jobs > 1 and mode is RestoreMode.NEW:
            # A new database that a failure drops whole: parallel, not one transaction.
            argv.append(f"--jobs={jobs}")
        else:
            argv.append("--single-transaction")
        if mode is RestoreMode.REPLACE:
            argv += ["--clean", "--if-exists"]
        argv += [f"--dbname={into.conninfo(program)}", str(path)]
        feed = None
    else:
        # Plain dumps are written with --clean --if-exists: one script serves both modes.
        argv = [
            str(tool.path),
            "--no-psqlrc",
            "--quiet",
            "--set=ON_ERROR_STOP=1",
            "--single-transaction",
            "--no-password",
            f"--dbname={into.conninfo(program)}",
            "--file=-",
        ]
        feed = dumps.feed_plain(path, tables)
    watch = None
    if lock_timeout is not None and seconds(lock_timeout) > 0:
        watch = LockWatch(
            target, f"{APPLICATION_NAME} {program}", seconds(lock_timeout), lock_timeout
        )
    try:
        outcome = process.run(
            argv,
            env=into.environment(),
            on_line=on_line,
            redact=into.redact,
            should_stop=should_stop,
            progress=watch,
            progress_every=0.5,
            feed=feed,
        )
    finally:
        if watch is not None:
            watch.close()
    return outcome, watch.cancelled if watch is not None else None


def _tables_not_in(
    into: Target, restored: set[str], on_line: Callable[[str], None]
) -> tuple[str, ...]:
    """Tables of the database that the backup does not have, with a warning naming them.

    pg_restore --clean drops only what the archive contains: a table a later migration
    created stays, and the next upgrade would fail on it. Extension members are not dumped
    as tables and are left out of the comparison.
    """
    try:
        connection, close = _admin_connection(into)
    except SQLAlchemyError as exc:
        on_line(f"warning: could not list the tables after the restore: {describe(exc)}")
        return ()
    try:
        present = connection.execute(
            text(
                "SELECT n.nspname || '.' || c.relname FROM pg_class c "
                "JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE c.relkind IN ('r', 'p') "
                "AND n.nspname <> 'information_schema' AND n.nspname NOT LIKE 'pg\\_%' "
                "AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = "
                "'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e')"
            )
        ).scalars()
        leftover = tuple(sorted(set(present) - restored))
    except SQLAlchemyError as exc:
        on_line(f"warning: could not list the tables after the restore: {describe(exc)}")
        return ()
    finally:
        close()
    if leftover:
        on_line(
            f"warning: {len(leftover)} table(s) not in the backup were left in place: "
            f"{', '.join(leftover[:20])}{' ...' if len(leftover) > 20 else ''}; "
            "drop them before migrating again if a later migration created them"
        )
    return leftover


def _admin_connection(target: Target) -> tuple[Connection, Callable[[], None]]:
    engine = create_engine(target.url, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    try:
        connection = engine.connect()
    except SQLAlchemyError:
        engine.dispose()
        raise

    def close() -> None:
        connection.close()
        engine.dispose()

    return connection, close


def _literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _create_database(target: Target, names: list[str]) -> str:
    """CREATE DATABASE, the first of ``names`` not taken, like the target, from template0."""
    try:
        connection, close = _admin_connection(target)
    except SQLAlchemyError as exc:
        raise RestoreFailed(f"cannot connect to {target.display}: {describe(exc)}") from None
    name = names[0]
    try:
        taken = set(
            connection.execute(
                text("SELECT datname FROM pg_database WHERE datname = ANY(:names)"),
                {"names": names},
            ).scalars()
        )
        free = [candidate for candidate in names if candidate not in taken]
        if not free:
            raise Conflict(f"database {name} already exists: choose another name")
        name = free[0]
        encoding, collate, ctype = connection.execute(
            text(
                "SELECT pg_encoding_to_char(encoding), datcollate, datctype "
                "FROM pg_database WHERE datname = current_database()"
            )
        ).one()
        quoted = connection.dialect.identifier_preparer.quote(name)
        connection.execute(
            text(
                f"CREATE DATABASE {quoted} TEMPLATE template0 ENCODING {_literal(encoding)} "
                f"LC_COLLATE {_literal(collate)} LC_CTYPE {_literal(ctype)}"
            )
        )
        return name
    except SQLAlchemyError as exc:
        if "already exists" in str(exc):
            raise Conflict(f"database {name} already exists: choose another name") from None
        reason = describe(exc)
        if "permission denied to create database" in reason:
            reason += (
                f"; the role {target.url.username or '(default)'} needs the CREATEDB privilege "
                "(ALTER ROLE ... CREATEDB), or restore over the target instead"
            )
        raise RestoreFailed(f"cannot create database {name}: {reason}") from None
    finally:
        close()


def _drop_database(target: Target, name: str, on_line: Callable[[str], None]) -> None:
    """Drop a database this restore created, so a failed restore leaves nothing behind."""
    try:
        connection, close = _admin_connection(target)
    except SQLAlchemyError as exc:
        on_line(f"warning: could not drop database {name}: {describe(exc)}")
        return
    try:
        quoted = connection.dialect.identifier_preparer.quote(name)
        version = connection.dialect.server_version_info or (0,)
        force = " WITH (FORCE)" if version >= (13,) else ""
        connection.execute(text(f"DROP DATABASE IF EXISTS {quoted}{force}"))
        on_line(f"dropped database {name}")
    except SQLAlchemyError as exc:
        on_line(f"warning: could not drop database {name}: {describe(exc)}")
    finally:
        close()
