"""Reading the audit trail: who may see what, filters, keyset pages, and streamed exports.

Pages go by id, newest first (``WHERE <filters> AND id < :before ORDER BY id DESC
LIMIT n``): each filter has an index on (column, id), so a page costs the same at the
100,000th event as at the first, and nothing counts the whole table. Exports walk the
same filters oldest first in batches, each batch in its own short read, up to the newest
event at the moment the export was asked for.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from sqlalchemy import ColumnElement, func, or_, select
from sqlalchemy.orm import Session

from admin import audit, controls
from admin.errors import InvalidInput
from admin.store.models import AuditEvent, Role, Source

PAGE_SIZE = 50
MAX_ID = 2**63 - 1  # ids are BIGINT on PostgreSQL, INTEGER (64-bit) on SQLite
MAX_PAGE_SIZE = 200
EXPORT_BATCH = 1000
EXPORT_FORMATS = ("csv", "jsonl")
CSV_COLUMNS = (
    "id",
    "created_at",
    "actor",
    "actor_role",
    "source",
    "client_addr",
    "action",
    "target",
    "outcome",
    "job_id",
    "backup_id",
    "revision",
    "details",
    "prev_hash",
    "hash",
)
_DETAILS = CSV_COLUMNS.index("details")
# A spreadsheet would run a cell starting with one of these as a formula (CSV injection):
# a failed sign-in is recorded under whatever name was typed.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_MINUTE = re.compile(r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}$")
_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def scope_for(username: str, role: Role) -> str | None:
    """Whose events a user may read: admins everyone's (None), others only their own."""
    return None if role.at_least(Role.ADMIN) else username


def action_choices() -> list[str]:
    """Every action of the closed set, and the groups (``job-*``) the filter accepts."""
    actions = sorted(audit.EVENT_TYPES)
    groups = sorted({a.split("-", 1)[0] + "-*" for a in actions if "-" in a})
    return groups + actions


def _parse_time(name: str, value: str, *, end: bool) -> datetime | None:
    """A UTC time from a date or a date and time; ``end`` makes it exclusive of its unit.

    ``until=2026-03-03`` means up to the end of that day, ``until=...T10:15`` up to the
    end of that minute (and so on down to microseconds): a range reads as a person means it.
    """
    value = value.strip()
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidInput(
            f"{name}: {value[:40]!r} is not a date or time (YYYY-MM-DD or YYYY-MM-DDTHH:MM, UTC)"
        ) from None
    try:
        moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    except OverflowError:
        raise InvalidInput(f"{name}: {value[:40]!r} is out of range") from None
    if not end:
        return moment
    if _DAY.match(value):
        unit = timedelta(days=1)
    elif _MINUTE.match(value):
        unit = timedelta(minutes=1)
    else:
        unit = timedelta(microseconds=1) if "." in value else timedelta(seconds=1)
    try:
        return moment + unit
    except OverflowError:
        raise InvalidInput(f"{name}: {value[:40]!r} is out of range") from None


FILTER_NAMES = ("actor", "action", "revision", "outcome", "source", "since", "until", "job")


@dataclass(frozen=True)
class Filters:
    """What the audit page and the exports are narrowed to (empty strings: no filter)."""

    actor: str = ""
    action: str = ""
    revision: str = ""
    outcome: str = ""
    source: str = ""
    since: str = ""
    until: str = ""
    job: str = ""
    # The full id ``revision`` stands for, when the caller resolved a unique prefix.
    revision_id: str = field(default="", repr=False)

    @classmethod
    def parse(cls, **raw: str) -> Filters:
        """Check each value; a bad one is refused with a message that names it (400)."""
        values = {name: (raw.get(name) or "").strip() for name in FILTER_NAMES}
        action = values["action"]
        if action:
            known = audit.EVENT_TYPES
            prefix = action[:-1] if action.endswith("*") else None
            if (prefix is None and action not in known) or (
                prefix is not None and not any(a.startswith(prefix) for a in known)
            ):
                raise InvalidInput(f"action: {action[:64]!r} is not an audited action")
        if values["outcome"] and values["outcome"] not in {o.value for o in audit.Outcome}:
            raise InvalidInput(f"outcome: {values['outcome'][:20]!r} is not an outcome")
        if values["source"] and values["source"] not in {s.value for s in Source}:
            raise InvalidInput(f"source: {values['source'][:20]!r} is not a source")
        if values["job"] and not (values["job"].isdigit() and int(values["job"]) <= MAX_ID):
            raise InvalidInput(f"job: {values['job'][:20]!r} is not a job number")
        filters = cls(**values)
        since, until = filters.since_at, filters.until_before
        if since is not None and until is not None and since >= until:
            raise InvalidInput("the time range is empty: 'from' must come before 'until'")
        return filters

    @property
    def since_at(self) -> datetime | None:
        return _parse_time("from", self.since, end=False)

    @property
    def until_before(self) -> datetime | None:
        return _parse_time("until", self.until, end=True)

    def as_dict(self) -> dict[str, str]:
        """The filters that are set (for links, and for the export's audit event)."""
        return {name: getattr(self, name) for name in FILTER_NAMES if getattr(self, name)}

    def resolved(self, full_id: Callable[[str], str | None]) -> Filters:
        """These filters with ``revision`` also matching the full id a prefix stands for."""
        if not self.revision:
            return self
        return replace(self, revision_id=full_id(self.revision) or "")

    @property
    def active(self) -> bool:
        return bool(self.as_dict())

    def conditions(self, scope: str | None) -> list[ColumnElement[bool]]:
        """The WHERE clauses, ``scope`` (a user's own events) included."""
        event = AuditEvent
        where: list[ColumnElement[bool]] = []
        if scope is not None:
            where.append(event.actor == scope)
        if self.actor:
            where.append(event.actor == self.actor)
        if self.action.endswith("*"):
            where.append(event.action.startswith(self.action[:-1], autoescape=True))
        elif self.action:
            where.append(event.action == self.action)
        if self.revision:
            # Recorded at that revision (a job's target or end, a backup's), or about it (a
            # preview): equalities, so that both sides use their (column, id) index. A value
            # of several heads ("a,b") is matched as written.
            names = sorted({self.revision, self.revision_id} - {""})
            where.append(
                or_(
                    event.revision.in_(names),
                    event.target.in_([f"revision:{name}" for name in names]),
                )
            )
        if self.outcome:
            where.append(event.outcome == self.outcome)
        if self.source:
            where.append(event.source == self.source)
        if self.job:
            where.append(event.job_id == int(self.job))
        since, until = self.since_at, self.until_before
        if since is not None:
            where.append(event.created_at >= since)
        if until is not None:
            where.append(event.created_at < until)
        return where


@dataclass(frozen=True)
class Page:
    """One page, newest first; ``older``/``newer`` are the ids to page from (or None)."""

    events: list[AuditEvent]
    older: int | None
    newer: int | None


def _exists(session: Session, where: list[ColumnElement[bool]]) -> bool:
    return session.scalar(select(AuditEvent.id).where(*where).limit(1)) is not None


def page(
    session: Session,
    filters: Filters,
    *,
    scope: str | None,
    before: int | None = None,
    after: int | None = None,
    limit: int = PAGE_SIZE,
) -> Page:
    """Events matching ``filters`` older than ``before`` (or newer than ``after``), by id."""
    limit = max(1, min(limit, MAX_PAGE_SIZE))
    where = filters.conditions(scope)
    if after is not None:
        rows = list(
            session.scalars(
                select(AuditEvent)
                .where(*where, AuditEvent.id > after)
                .order_by(AuditEvent.id.asc())
                .limit(limit + 1)
            )
        )
        more_newer = len(rows) > limit
        rows = rows[:limit][::-1]
        newer = rows[0].id if more_newer else None
        older = (
            rows[-1].id
            if rows and _exists(session, [*where, AuditEvent.id < rows[-1].id])
            else None
        )
        return Page(rows, older, newer)
    query = select(AuditEvent).where(*where)
    if before is not None:
        query = query.where(AuditEvent.id < before)
    rows = list(session.scalars(query.order_by(AuditEvent.id.desc()).limit(limit + 1)))
    older = rows[limit - 1].id if len(rows) > limit else None
    rows = rows[:limit]
    newer = (
        rows[0].id
        if before is not None and rows and _exists(session, [*where, AuditEvent.id > rows[0].id])
        else None
    )
    return Page(rows, older, newer)


def newest_id(session: Session) -> int | None:
    return session.scalar(select(func.max(AuditEvent.id)))


def job_event(session: Session, job_id: int, action: str) -> AuditEvent | None:
    """The newest ``action`` event about a job (e.g. its restore-finished), by its index."""
    return session.scalar(
        select(AuditEvent)
        .where(AuditEvent.job_id == job_id, AuditEvent.action == action)
        .order_by(AuditEvent.id.desc())
        .limit(1)
    )


# Exports.


def batches(
    open_session: Callable[[], Session],
    filters: Filters,
    *,
    scope: str | None,
    upto: int | None,
    batch: int = EXPORT_BATCH,
) -> Iterator[list[dict[str, Any]]]:
    """Matching events oldest first, ``batch`` at a time, each read in its own session."""
    if upto is None:
        return
    where = filters.conditions(scope)
    table = AuditEvent.__table__
    last = 0
    while True:
        with open_session() as session:
            # Plain rows, not ORM objects: an export reads each row once (about twice as
            # fast); as_dict reads attributes only, which a row has under the same names.
            rows = [
                audit.as_dict(cast(AuditEvent, row))
                for row in session.execute(
                    select(table)
                    .where(*where, AuditEvent.id > last, AuditEvent.id <= upto)
                    .order_by(AuditEvent.id.asc())
                    .limit(batch)
                )
            ]
        if not rows:
            return
        yield rows
        last = rows[-1]["id"]


def _csv_cell(value: Any) -> Any:
    """A cell a spreadsheet shows as text: control characters (an ESC a migration printed,
    a NUL typed as a user name) written as escapes, and no formula."""
    if value.__class__ is not str:
        return value
    value = controls.neutralise(value)
    return "'" + value if value.startswith(_FORMULA_START) else value


def _csv_row(row: dict[str, Any]) -> list[Any]:
    cells = [row[column] for column in CSV_COLUMNS]
    cells[_DETAILS] = json.dumps(
        cells[_DETAILS], sort_keys=True, ensure_ascii=False, separators=(",", ":")
    )
    return [_csv_cell(value) for value in cells]


def csv_chunks(rows: Iterable[list[dict[str, Any]]]) -> Iterator[str]:
    """A header, then one chunk of CSV lines per batch (details as JSON in one cell)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    yield buffer.getvalue()
    for batch in rows:
        buffer.seek(0)
        buffer.truncate()
        writer.writerows(_csv_row(row) for row in batch)
        yield buffer.getvalue()


def jsonl_chunks(rows: Iterable[list[dict[str, Any]]]) -> Iterator[str]:
    """One JSON object per line, exactly as stored (``audit.as_dict``)."""
    for batch in rows:
        yield "".join(json.dumps(row, ensure_ascii=False, sort_keys=True) + "\n" for row in batch)
