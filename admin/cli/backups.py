"""schema-admin backup / backups list|verify|prune / restore: backups from the command line.

A backup, a verification and a restore run as jobs in the foreground, like ``migrate``:
recorded in the store (source ``cli``, the OS user), their log streamed here, audited, and
refused while another job runs on the target. The exit code is the job's outcome: 0
succeeded, 1 failed or refused, 130 cancelled (Ctrl-C).
"""

from __future__ import annotations

import argparse

from admin import jobs
from admin.backups import actions, files, records, retention
from admin.cli import target
from admin.cli.base import Commands, cli_actor, runtime
from admin.cli.migrate import EXIT, outcome
from admin.config import Settings
from admin.errors import InvalidInput
from admin.jobs.queue import JobRequest
from admin.runtime import Runtime
from admin.store.models import Job


def register(commands: Commands) -> None:
    take = commands.add_parser(
        "backup",
        help="back the target up (pg_dump, or SQLite's backup API) and verify it, as a job",
        description="Take a backup of the target database (DATABASE_URL) into BACKUP_DIR and "
        "read it back in full, as a job (log streamed here, recorded in the panel, audited). "
        "PostgreSQL: pg_dump in the custom format (-Fc) or plain SQL, gzip-compressed; a held "
        "lock fails it after BACKUP_LOCK_WAIT_TIMEOUT. SQLite: an online copy checked with "
        "integrity_check. Old backups are pruned afterwards (BACKUP_KEEP_LAST, "
        "BACKUP_KEEP_DAYS).",
        epilog=EXIT + ".",
    )
    take.add_argument(
        "--format", choices=("custom", "plain"), help="pg_dump format (default BACKUP_FORMAT)"
    )
    take.add_argument(
        "--reason",
        choices=actions.REQUESTABLE_REASONS,
        default="manual",
        help="why: manual (default) or scheduled (a cron job)",
    )
    take.set_defaults(handler=backup)

    group = commands.add_parser(
        "backups",
        help="list, verify again or prune the target's backups",
        description="The target's backups: list them, verify one again (a job), or prune "
        "those the retention settings no longer keep.",
    )
    sub = group.add_subparsers(title="commands", metavar="COMMAND", required=True)
    listing = sub.add_parser("list", help="the target's backups, newest first")
    listing.add_argument(
        "--all", action="store_true", help="include deleted backups (default: only kept ones)"
    )
    listing.set_defaults(handler=list_backups)
    verify = sub.add_parser(
        "verify",
        help="read a backup back in full again, as a job",
        description="Read backup ID back in full (pg_restore --list and a full read, or "
        "integrity_check) and compare its sha256. A backup that fails is marked failed: it "
        "is no longer restored nor counted.",
        epilog=EXIT + ".",
    )
    verify.add_argument("id", help="the backup's id (see `schema-admin backups list`)")
    verify.set_defaults(handler=verify_backup)
    prune = sub.add_parser(
        "prune",
        help="remove the backups retention no longer keeps (audited)",
        description="Keep the last BACKUP_KEEP_LAST verified backups and those of the last "
        "BACKUP_KEEP_DAYS days (and any backup that protected a migration of those days); "
        "remove the other files and mark their records deleted.",
    )
    prune.add_argument("--dry-run", action="store_true", help="only show what would go")
    prune.set_defaults(handler=prune_backups)

    restore = commands.add_parser(
        "restore",
        help="restore a verified backup into a new database (default) or over the target",
        description="Restore backup ID as a job. By default into a new database beside the "
        "target (PostgreSQL: needs CREATEDB; SQLite: a new file beside the target), named "
        "by --into or after the target and the time; the target is not touched. With "
        "--replace --yes the target itself goes back to the backup in one transaction "
        "(pg_restore --clean --if-exists --single-transaction).",
        epilog=EXIT + ".",
    )
    restore.add_argument("id", help="the backup's id (see `schema-admin backups list`)")
    where = restore.add_mutually_exclusive_group()
    where.add_argument("--into", metavar="NAME", help="name of the new database (or file)")
    where.add_argument(
        "--replace", action="store_true", help="restore over the target database itself"
    )
    restore.add_argument(
        "--yes", action="store_true", help="confirm --replace: the target's data is replaced"
    )
    restore.set_defaults(handler=restore_backup)


def _run(rt: Runtime, request: JobRequest) -> Job:
    actions.prepare(rt, cli_actor())
    return jobs.run_in_foreground(rt, request, cli_actor(), echo=target.echo)


def backup(args: argparse.Namespace, settings: Settings) -> int:
    with runtime(settings) as rt:
        request = actions.checked_backup_request(
            rt, cli_actor(), fmt=args.format, reason=args.reason
        )
        job = _run(rt, request)
        if job.backup_id is not None and job.status == "succeeded":
            with rt.reads() as session:
                row = records.get(session, job.backup_id)
            target.note(
                f"backup {row.id}: {settings.backup_dir / (row.file_name or '')}, "
                f"{files.human_size(row.size_bytes or 0)}, revision {row.revision or '?'}, verified"
            )
    return outcome(job)


def list_backups(args: argparse.Namespace, settings: Settings) -> int:
    with runtime(settings) as rt, rt.reads() as session:
        rows = records.for_target(session, settings, limit=1000)
    shown = [b for b in rows if args.all or b.status != "deleted"]
    if not shown:
        target.note(f"no backups of {settings.target_url_masked} yet")
        return 0
    lines = ["ID\tTAKEN (UTC)\tSTATUS\tSIZE\tREVISION\tFORMAT\tWHY\tBY\tFILE"]
    for b in shown:
        lines.append(
            "\t".join(
                [
                    str(b.id),
                    b.created_at.strftime("%Y-%m-%d %H:%M:%S"),
                    "failed (checksum mismatch)" if records.file_changed(b) else b.status,
                    files.human_size(b.size_bytes) if b.size_bytes is not None else "-",
                    b.revision or "-",
                    b.format,
                    b.reason,
                    b.created_by,
                    b.file_name or "-",
                ]
            )
        )
    target.write("\n".join(lines) + "\n")
    return 0


def verify_backup(args: argparse.Namespace, settings: Settings) -> int:
    with runtime(settings) as rt:
        request = actions.verify_request(rt, records.parse_id(args.id))
        return outcome(_run(rt, request))


def prune_backups(args: argparse.Namespace, settings: Settings) -> int:
    with runtime(settings) as rt:
        pruned = retention.prune(rt, cli_actor(), dry_run=args.dry_run)
    verb = "would remove" if args.dry_run else "removed"
    if not pruned:
        print(f"nothing to prune; {retention.policy(settings)}")
        return 0
    for backup_id, name in zip(pruned.backup_ids, pruned.file_names, strict=True):
        print(f"{verb} backup {backup_id}: {name}")
    print(f"{len(pruned.backup_ids)} backup(s); {retention.policy(settings)}")
    return 0


def restore_backup(args: argparse.Namespace, settings: Settings) -> int:
    if args.replace and not args.yes:
        raise InvalidInput(
            f"restore --replace overwrites {settings.target_url_masked} with the backup: "
            "add --yes to confirm, or leave --replace out to restore into a new database"
        )
    ask = actions.RestoreAsk(
        backup_id=records.parse_id(args.id),
        mode="replace" if args.replace else "new",
        new_database=args.into,
        # On the command line --yes (or a new database, which touches nothing) confirms.
        confirm=actions.confirmation_name(settings),
    )
    with runtime(settings) as rt:
        request = actions.restore_request(rt, ask, cli_actor())
        return outcome(_run(rt, request))
