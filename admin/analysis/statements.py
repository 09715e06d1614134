"""The rendered SQL of one step, cut into statements and read for risks, per dialect.

Alembic's offline output ends every statement with ``;`` at the end of a line and puts
``-- Running ...`` comments and ``BEGIN;`` / ``COMMIT;`` around each revision. The version
table's bookkeeping (``CREATE TABLE alembic_version``, ``INSERT`` / ``UPDATE`` / ``DELETE``
on it) is the panel's, not the revision's: it is marked and never counted.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from admin.analysis.badges import Badge, Kind, one_line

_END = re.compile(r";[ \t]*$", re.MULTILINE)
_IDENT = r'(?:"[^"]+"|[\w$]+)(?:\.(?:"[^"]+"|[\w$]+))?'
_DROP_TABLE = re.compile(rf"^DROP TABLE (?:IF EXISTS )?({_IDENT})", re.I)
_ALTER_TABLE = re.compile(rf"^ALTER TABLE (?:IF EXISTS )?(?:ONLY )?({_IDENT})\s+(.*)$", re.I | re.S)
_DROP_COLUMN = re.compile(rf"DROP COLUMN (?:IF EXISTS )?({_IDENT})", re.I)
_DROP_CONSTRAINT = re.compile(rf"DROP CONSTRAINT (?:IF EXISTS )?({_IDENT})", re.I)
_CREATE_TABLE = re.compile(
    rf"^CREATE (?:UNLOGGED |TEMP |TEMPORARY )?TABLE (?:IF NOT EXISTS )?({_IDENT})", re.I
)
_CREATE_INDEX = re.compile(
    rf"^CREATE (?:UNIQUE )?INDEX (CONCURRENTLY )?(?:IF NOT EXISTS )?({_IDENT})?\s*"
    rf"ON (?:ONLY )?({_IDENT})",
    re.I,
)
_RENAME_TMP = re.compile(rf"^ALTER TABLE (_alembic_tmp_{_IDENT}) RENAME TO ({_IDENT})", re.I)
_VOLATILE = re.compile(
    r"\b(random|clock_timestamp|gen_random_uuid|uuid_generate_v[14]\w*|nextval|timeofday)\s*\(",
    re.I,
)
_DATA = re.compile(r"^(UPDATE|DELETE|INSERT|MERGE|COPY)\b", re.I)


@dataclass(frozen=True)
class Statement:
    """One statement of a step: its text, first line in the step's SQL, and whose it is."""

    text: str
    line: int
    bookkeeping: bool

    @property
    def upper(self) -> str:
        return " ".join(self.text.split()).upper()


def _bare(name: str) -> str:
    return name.replace('"', "").lower()


def split(sql: str, version_table: str = "alembic_version") -> list[Statement]:
    """Statements in order (comment lines dropped), each with its 1-based first line."""
    found = []
    table = version_table.lower()
    start, line = 0, 1
    for match in _END.finditer(sql):
        chunk = sql[start : match.start()]
        first: int | None = None
        kept = []
        for i, text in enumerate(chunk.split("\n")):
            stripped = text.strip()
            if not stripped or stripped.startswith("--"):
                continue
            if first is None:
                first = line + i
            kept.append(text)
        if first is not None:
            body = "\n".join(kept).strip()
            words = re.findall(r"[\w$]+", body.lower())
            found.append(Statement(body, first, table in words))
        line += sql.count("\n", start, match.end())
        start = match.end()
    return found


def _on_new_table(table: str, created: set[str]) -> bool:
    return _bare(table) in created


def sql_badges(sql: str, dialect: str, version_table: str = "alembic_version") -> tuple[Badge, ...]:
    """The risks the statements of one step show for ``dialect``."""
    statements = [s for s in split(sql, version_table) if not s.bookkeeping]
    created: set[str] = set()
    rebuilt: set[str] = set()
    for statement in statements:
        created_match = _CREATE_TABLE.match(statement.text)
        if created_match:
            created.add(_bare(created_match.group(1)))
        rename = _RENAME_TMP.match(statement.text)
        if rename:
            rebuilt.add(_bare(rename.group(2)))
    badges: list[Badge] = []
    # Said after the statements that explain it (CONCURRENTLY needs the commit).
    late: list[Badge] = []
    begun = False
    for index, statement in enumerate(statements):
        upper = statement.upper
        if upper in ("BEGIN", "BEGIN TRANSACTION"):
            begun = True
            continue
        if upper == "COMMIT":
            if begun and index != len(statements) - 1:
                late.append(
                    Badge(
                        Kind.NON_TRANSACTIONAL,
                        "commits in the middle of the step: what follows runs outside its "
                        "transaction",
                    )
                )
            continue
        badges.extend(_destructive(statement, rebuilt))
        if _DATA.match(upper) and "_ALEMBIC_TMP_" not in upper:
            badges.append(
                Badge(Kind.DATA_MIGRATION, f"changes rows: {one_line(statement.text, 90)}")
            )
        if " CONCURRENTLY " in f" {upper} " or upper.startswith(("VACUUM", "CREATE DATABASE")):
            badges.append(
                Badge(
                    Kind.NON_TRANSACTIONAL,
                    f"cannot run in a transaction: {one_line(statement.text, 90)}",
                )
            )
        if dialect == "postgresql":
            badges.extend(_long_locks(statement, created))
    return tuple(badges + late)


def _destructive(statement: Statement, rebuilt: set[str]) -> list[Badge]:
    text, upper = statement.text, statement.upper
    found = []
    drop = _DROP_TABLE.match(text)
    if drop and _bare(drop.group(1)) not in rebuilt:
        table = _bare(drop.group(1))
        found.append(
            Badge(Kind.DESTRUCTIVE, f"drops table {table} and every row in it", (f"table {table}",))
        )
    if upper.startswith("TRUNCATE"):
        found.append(
            Badge(Kind.DESTRUCTIVE, f"empties a table: {one_line(text, 90)}", (one_line(text, 60),))
        )
    if upper.startswith(("DROP SCHEMA", "DROP DATABASE")):
        found.append(Badge(Kind.DESTRUCTIVE, one_line(text, 120), (one_line(text, 60),)))
    alter = _ALTER_TABLE.match(text)
    if alter:
        table = _bare(alter.group(1))
        for column in _DROP_COLUMN.findall(alter.group(2)):
            name = f"{table}.{_bare(column)}"
            found.append(Badge(Kind.DESTRUCTIVE, f"drops column {name} and its data", (name,)))
        for constraint in _DROP_CONSTRAINT.findall(alter.group(2)):
            name = f"constraint {_bare(constraint)} on {table}"
            found.append(
                Badge(
                    Kind.DESTRUCTIVE, f"drops {name}: the rule it enforced no longer holds", (name,)
                )
            )
    return found


def _long_locks(statement: Statement, created: set[str]) -> list[Badge]:
    """Statements that hold a lock blocking writes (or reads) on an existing table while
    they scan or rewrite it (PostgreSQL)."""
    text, upper = statement.text, statement.upper
    found = []
    index = _CREATE_INDEX.match(text)
    if index and not index.group(1) and not _on_new_table(index.group(3), created):
        table = _bare(index.group(3))
        found.append(
            Badge(
                Kind.LONG_LOCK,
                f"builds an index on {table} without CONCURRENTLY: writes to {table} wait "
                "until it is built",
            )
        )
    alter = _ALTER_TABLE.match(text)
    if alter and not _on_new_table(alter.group(1), created):
        table = _bare(alter.group(1))
        action = " ".join(alter.group(2).split()).upper()
        why = _alter_lock(action, text)
        if why:
            found.append(Badge(Kind.LONG_LOCK, f"{why} on {table} under an ACCESS EXCLUSIVE lock"))
    if upper.startswith(("VACUUM FULL", "CLUSTER", "LOCK TABLE")) or (
        upper.startswith("REINDEX") and "CONCURRENTLY" not in upper
    ):
        found.append(Badge(Kind.LONG_LOCK, f"locks the table while it runs: {one_line(text, 80)}"))
    return found


def _alter_lock(action: str, text: str) -> str | None:
    if re.search(r"ALTER COLUMN \S+ (SET DATA )?TYPE ", action):
        return "changes a column's type (a rewrite or a full scan)"
    if "SET NOT NULL" in action:
        return "checks every row for SET NOT NULL"
    if "ADD COLUMN" in action and (
        _VOLATILE.search(text) or re.search(r"\b(BIG|SMALL)?SERIAL\b|STORED\b", action)
    ):
        return "adds a column with a volatile default (rewrites every row)"
    if (
        re.search(r"ADD (CONSTRAINT \S+ )?(FOREIGN KEY|CHECK)", action)
        and "NOT VALID" not in action
    ):
        return "adds a constraint that checks every row (add it NOT VALID, then VALIDATE)"
    if (
        re.search(r"ADD (CONSTRAINT \S+ )?(PRIMARY KEY|UNIQUE)", action)
        and "USING INDEX" not in action
    ):
        return "builds a unique index"
    return None
