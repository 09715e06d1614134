"""A statement as it was executed: its parameters written in, and whether it is the
migration's work or the bookkeeping around it (catalog reads, session settings, PRAGMAs).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

# Statements a person reading a run's log rarely needs: shown at debug level.
_BOOKKEEPING = re.compile(
    r"^\s*(PRAGMA\b|RESET\b|SHOW\b|SELECT\s+(set_config|current_setting|pg_backend_pid|"
    r"pg_logical_emit_message|version\(\)|current_schema))|pg_catalog\.|information_schema\.|"
    r"sqlite_(master|schema|temp_master)",
    re.IGNORECASE,
)
# The longest parameter value written into a logged statement.
MAX_VALUE = 500


def is_bookkeeping(statement: str) -> bool:
    return bool(_BOOKKEEPING.search(statement))


def inline(cursor: Any, statement: str, parameters: Any, executemany: bool) -> str:
    """``statement`` with ``parameters`` written in as literals (the values actually sent);
    an executemany shows its first set and how many there were."""
    many = 0
    if executemany and isinstance(parameters, Sequence) and not isinstance(parameters, str):
        many = len(parameters)
        parameters = parameters[0] if parameters else None
    if not parameters:
        text = statement
    else:
        mogrify = getattr(cursor, "mogrify", None)
        try:
            if mogrify is not None:
                rendered = mogrify(statement, parameters)
                text = (
                    rendered.decode("utf-8", "replace") if isinstance(rendered, bytes) else rendered
                )
            else:
                text = _qmark(statement, parameters)
        except Exception:  # shown as sent, never a reason for a run to fail
            text = f"{statement} -- parameters: {parameters!r}"[:10_000]
    if many > 1:
        text += f"  -- executed {many} times, first values shown"
    return text


def _literal(value: Any) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, bytes):
        return f"X'{value[:MAX_VALUE].hex()}'"
    text = str(value)[:MAX_VALUE]
    return "'" + text.replace("'", "''") + "'"


def _qmark(statement: str, parameters: Any) -> str:
    """SQLite's ``?`` and ``:name`` placeholders with literals (outside quoted strings)."""
    values = iter(parameters) if not isinstance(parameters, Mapping) else iter(())
    named = parameters if isinstance(parameters, Mapping) else {}

    def replace(match: re.Match[str]) -> str:
        token = match.group(0)
        if token.startswith(("'", '"')):
            return token
        if token == "?":
            return _literal(next(values))
        return _literal(named[token[1:]]) if token[1:] in named else token

    return re.sub(r"'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"|\?|:\w+", replace, statement)
