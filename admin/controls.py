"""Control characters: refused in what people send, shown as text in what the panel prints.

- In input (form fields, query parameters, path segments, JSON strings, headers) a NUL or
  another control character has no meaning for the panel; PostgreSQL cannot even store a
  NUL. ``first_control`` finds one so the request is refused with one line (400).
- In output to a terminal or a spreadsheet (the CLI's echo of migration output, the audit
  CSV), an escape sequence would act instead of being read: ``neutralise`` writes each
  control character as a visible escape (``\\x1b[31m`` stays readable text).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

# C0 (but tab, line feed, carriage return), DEL and C1: never meaningful in a field.
_IN_TEXT = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
# In one-line places (query, path, headers) line breaks and tabs are controls too.
_IN_LINE = re.compile(r"[\x00-\x1f\x7f-\x9f]")
# Headers arrive as latin-1: bytes 0x80-0x9f there are parts of UTF-8, not C1 controls.
_IN_HEADER = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
_PATTERNS = {"text": _IN_TEXT, "line": _IN_LINE, "header": _IN_HEADER}
# What output keeps as it is: line feed and tab; everything else of the classes above.
_IN_OUTPUT = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_NAMED = {"\r": "\\r", "\x1b": "\\x1b"}
# A name with a control character in it is shown with the characters escaped.
_SHOWN = {code: f"\\x{code:02x}" for code in (*range(0x20), *range(0x7F, 0xA0))}


def has_control(value: str, *, where: str = "text") -> bool:
    """Whether ``value`` holds a control character: ``where`` is ``text`` (a form field, a
    JSON string: line breaks and tabs allowed), ``line`` (a query parameter, a path) or
    ``header``."""
    return _PATTERNS[where].search(value) is not None


def allowed_pattern(where: str = "text") -> str:
    """A regular expression (JSON Schema ``pattern``) for the values ``where`` accepts."""
    return "^[^" + _PATTERNS[where].pattern[1:-1] + "]*$"


def describe(char: str) -> str:
    """A control character as a person can read it (``U+0000 (NUL)``)."""
    names = {0: "NUL", 0x1B: "ESC", 0x7F: "DEL", 0x0A: "line feed", 0x0D: "carriage return"}
    code = ord(char)
    name = names.get(code)
    return f"U+{code:04X}" + (f" ({name})" if name else "")


def first_control(
    items: Iterable[tuple[str, Any]], *, where: str = "text"
) -> tuple[str, str] | None:
    """The first (name, character) whose name or string value holds a control character.

    Values may be nested (a parsed JSON body): strings in lists and objects are looked at,
    and their keys; the name says where (``target``, ``steps[2].name``).
    """
    pattern = _PATTERNS[where]
    stack: list[tuple[str, Any]] = list(items)[::-1]
    while stack:
        name, value = stack.pop()
        found = pattern.search(name)
        if found is not None:
            return name.translate(_SHOWN), found.group()
        if isinstance(value, str):
            found = pattern.search(value)
            if found is not None:
                return name, found.group()
        elif isinstance(value, dict):
            stack.extend(
                (f"{name}.{key}" if name else str(key), inner)
                for key, inner in reversed(list(value.items()))
            )
        elif isinstance(value, list):
            stack.extend((f"{name}[{i}]", inner) for i, inner in reversed(list(enumerate(value))))
    return None


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    return _NAMED.get(char) or f"\\x{ord(char):02x}"


def neutralise(text: str) -> str:
    """``text`` with every control character but line feed and tab written as an escape."""
    return _IN_OUTPUT.sub(_escape, text)
