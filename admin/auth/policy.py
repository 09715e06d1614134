"""The password policy: what a password a person chooses may not be.

Checked by the server on every path that sets a password (the account form, ``schema-admin
user add --password-stdin``, resets, the first admin), never only by the browser. Length
alone lets ``password123`` through; so a password is also refused when it is one of the
30,000 most common ones (``data/common-passwords.txt``), such a password with a few digits
or symbols around it or with letters swapped for look-alike digits, or when it is made of
the user's own name or the product's name. Nothing here composes rules of character
classes: a long passphrase is what the policy steers people to.
"""

from __future__ import annotations

import functools
import re
import string
from collections.abc import Iterable
from pathlib import Path

from admin.errors import InvalidInput

MIN_LENGTH = 10
MAX_BYTES = 1024
# Different characters a password must have at least ("aaaaaaaaaa", "ababababab").
MIN_DISTINCT = 5
# Digits or symbols around a common password that still leave it common ("password2024!").
MAX_PADDING = 6
# Letters a password must keep once the user's and the product's names are taken out.
MIN_OWN_LETTERS = 4
COMMON_PASSWORDS = Path(__file__).resolve().parent / "data" / "common-passwords.txt"
# Names anyone guessing a password of this panel would try first.
PRODUCT_WORDS = (
    "apex",
    "asia",
    "property",
    "exchange",
    "schema",
    "admin",
    "administrator",
    "alembic",
    "migration",
    "migrate",
    "panel",
    "crm",
)
_PADDING = string.digits + string.punctuation + string.whitespace
_LOOK_ALIKES = str.maketrans("0134578@$!|", "oleastbasil")
_NAME_PARTS = re.compile(r"[._@\-\s]+")

# What the forms show beside a new password.
RULES = (
    f"at least {MIN_LENGTH} characters (a few words make a good one);",
    "not one of the 30,000 most common passwords, even with digits or symbols added;",
    "not made of your user name or the product's name (APEX, schema admin, ...).",
)


@functools.cache
def common_passwords() -> frozenset[str]:
    """The shipped list, read once."""
    text = COMMON_PASSWORDS.read_text(encoding="ascii")
    return frozenset(line.strip() for line in text.splitlines() if line.strip())


def _is_common(lowered: str) -> bool:
    common = common_passwords()
    core = lowered.strip(_PADDING)
    candidates = {lowered, lowered.translate(_LOOK_ALIKES)}
    if len(core) >= 4 and len(lowered) - len(core) <= MAX_PADDING:
        candidates |= {core, core.translate(_LOOK_ALIKES)}
    return not candidates.isdisjoint(common)


def _context_words(username: str, extra: Iterable[str]) -> list[str]:
    words = {word.lower() for word in PRODUCT_WORDS}
    for name in (username, *extra):
        lowered = name.strip().lower()
        if len(lowered) >= 3:
            words.add(lowered)
        words.update(part for part in _NAME_PARTS.split(lowered) if len(part) >= 3)
    # Longest first: "schemaadmin" goes as a whole before "admin" would split it.
    return sorted(words, key=len, reverse=True)


def _made_of_context(lowered: str, username: str, extra: Iterable[str]) -> bool:
    """Whether fewer than MIN_OWN_LETTERS letters are left once the names are taken out
    (as typed, and with look-alike digits read as letters: "4p3x" is "apex")."""
    plain = lowered
    alike = lowered.translate(_LOOK_ALIKES)
    for word in _context_words(username, extra):
        plain = plain.replace(word, " " * len(word))
        alike = alike.replace(word, " " * len(word))
    left_plain = sum(1 for char in plain if char.isalpha())
    left_alike = sum(1 for a, b in zip(alike, lowered, strict=True) if a.isalpha() and b.isalpha())
    return min(left_plain, left_alike) < MIN_OWN_LETTERS


def problem(password: str, *, username: str = "", extra: Iterable[str] = ()) -> str | None:
    """Why ``password`` may not be chosen (one line), or None when it may."""
    if len(password.encode("utf-8", "surrogatepass")) > MAX_BYTES:
        return f"a password may be at most {MAX_BYTES} bytes long"
    if len(password) < MIN_LENGTH:
        return f"a password needs at least {MIN_LENGTH} characters"
    lowered = password.lower()
    if len(set(lowered)) < MIN_DISTINCT:
        return "this password repeats too few characters: choose a few words instead"
    if _is_common(lowered):
        return (
            "this password is one of the most common ones (or one with digits or symbols "
            "added): choose a few words nobody would guess"
        )
    if username and lowered.strip() == username.strip().lower():
        return "a password must not be the user name"
    if _made_of_context(lowered, username, extra):
        return (
            "this password is made of the user name or the product's name: choose words of your own"
        )
    return None


def check(password: str, *, username: str = "", extra: Iterable[str] = ()) -> None:
    """Refuse a password the policy does not allow (InvalidInput, 400)."""
    reason = problem(password, username=username, extra=extra)
    if reason is not None:
        raise InvalidInput(reason)
