"""A database's schema as comparable facts, and the differences between two snapshots.

A snapshot maps "kind name" (``index public.ix_deals_agent_id``) to a normalised definition
read from the catalogs: tables and views, columns with their types, nullability and
defaults, constraints, indexes, sequences, enum types and view definitions. Column order
and object ids are left out: a downgrade that drops and adds a column back restores the
schema even though the column moves to the end.
"""

from __future__ import annotations

import re

from sqlalchemy import Connection, text

Snapshot = dict[str, str]

_USER_SCHEMAS = (
    "n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_%'"
)

_PG_QUERIES = (
    # Tables, views, sequences, materialized views, partitioned and foreign tables.
    f"""SELECT CASE c.relkind WHEN 'r' THEN 'table' WHEN 'p' THEN 'table' WHEN 'v' THEN 'view'
               WHEN 'm' THEN 'materialized view' WHEN 'S' THEN 'sequence'
               ELSE 'foreign table' END || ' ' || n.nspname || '.' || c.relname,
           CASE WHEN c.relkind IN ('v', 'm') THEN pg_get_viewdef(c.oid, true)
                WHEN c.relkind = 'S' THEN (SELECT format('%s start %s increment %s min %s max %s
                     cycle %s', s.seqtypid::regtype, s.seqstart, s.seqincrement, s.seqmin,
                     s.seqmax, s.seqcycle) FROM pg_sequence s WHERE s.seqrelid = c.oid)
                ELSE 'relation' END
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f') AND {_USER_SCHEMAS}
      AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass
                      AND d.objid = c.oid AND d.deptype = 'e')""",
    f"""SELECT 'column ' || n.nspname || '.' || c.relname || '.' || a.attname,
           format_type(a.atttypid, a.atttypmod)
           || CASE WHEN a.attnotnull THEN ' NOT NULL' ELSE '' END
           || COALESCE(' DEFAULT ' || pg_get_expr(d.adbin, d.adrelid), '')
           || CASE WHEN a.attidentity <> '' THEN ' IDENTITY ' || a.attidentity::text ELSE '' END
    FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
    JOIN pg_namespace n ON n.oid = c.relnamespace
    LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
    WHERE a.attnum > 0 AND NOT a.attisdropped AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
      AND {_USER_SCHEMAS}""",
    f"""SELECT 'constraint ' || n.nspname || '.' || c.relname || '.' || k.conname,
           pg_get_constraintdef(k.oid, true)
    FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid
    JOIN pg_namespace n ON n.oid = c.relnamespace WHERE {_USER_SCHEMAS}""",
    f"""SELECT 'index ' || n.nspname || '.' || ic.relname,
           pg_get_indexdef(i.indexrelid) || CASE WHEN i.indisvalid THEN '' ELSE ' INVALID' END
    FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid
    JOIN pg_namespace n ON n.oid = ic.relnamespace WHERE {_USER_SCHEMAS}""",
    f"""SELECT 'enum ' || n.nspname || '.' || t.typname,
           string_agg(e.enumlabel, ', ' ORDER BY e.enumsortorder)
    FROM pg_type t JOIN pg_enum e ON e.enumtypid = t.oid
    JOIN pg_namespace n ON n.oid = t.typnamespace WHERE {_USER_SCHEMAS}
    GROUP BY n.nspname, t.typname""",
)


def snapshot(connection: Connection) -> Snapshot:
    """The schema of the database ``connection`` reaches (PostgreSQL or SQLite)."""
    facts: Snapshot = {}
    if connection.dialect.name == "sqlite":
        rows = connection.execute(
            text(
                "SELECT type, name, sql FROM sqlite_master "
                "WHERE name NOT LIKE 'sqlite\\_%' ESCAPE '\\'"
            )
        )
        for kind, name, sql in rows:
            facts[f"{kind} {name}"] = _normal(sql or "")
        return facts
    for query in _PG_QUERIES:
        for key, definition in connection.execute(text(query)):
            facts[str(key)] = _normal(str(definition or ""))
    return facts


def differences(before: Snapshot, after: Snapshot) -> list[str]:
    """What changed from ``before`` to ``after``, one line per object, in name order."""
    lines: list[str] = []
    for key in sorted(before.keys() | after.keys()):
        was, now = before.get(key), after.get(key)
        if was == now:
            continue
        if now is None:
            lines.append(f"{key}: missing after the round trip (was: {was})")
        elif was is None:
            lines.append(f"{key}: left behind by the round trip (not there before: {now})")
        else:
            lines.append(f"{key}: was {was}; now {now}")
    return lines


def _normal(definition: str) -> str:
    return re.sub(r"\s+", " ", definition).strip()
