"""How much guessing a secret key would take: a conservative estimate in bits.

A key is read left to right as an attacker would guess it: a character costs log2 of the
alphabet its classes span (digits, lower, upper, symbols); a run that continues a sequence
(``abcdef``, ``0123``, ``zyx``, ``aaaa``) costs one character plus its length; a stretch
that repeats an earlier one (``0123456789abcdef`` twice) costs where it starts and how long
it is. Random keys (``secrets.token_urlsafe(48)``: about 390 bits here) are far above the
bar; keys people type or copy from an example are far below it.
"""

from __future__ import annotations

import math
import string

_CLASSES = (string.digits, string.ascii_lowercase, string.ascii_uppercase, string.punctuation)
_OTHER_ALPHABET = 100  # anything outside ASCII: counted as a large alphabet
_MIN_RUN = 3
# Longer keys are cut: the bar is far below what 256 random characters give.
_MAX_CHARS = 256


def _alphabet(key: str) -> int:
    size = sum(len(chars) for chars in _CLASSES if any(ch in chars for ch in key))
    if any(not ch.isascii() for ch in key):
        size += _OTHER_ALPHABET
    return max(size, 2)


def _sequence_end(key: str, start: int) -> int:
    """The end of a run from ``start`` whose characters step by a constant -1, 0 or +1."""
    if start + 1 >= len(key):
        return start + 1
    step = ord(key[start + 1]) - ord(key[start])
    if step not in (-1, 0, 1):
        return start + 1
    end = start + 1
    while end < len(key) and ord(key[end]) - ord(key[end - 1]) == step:
        end += 1
    return end


def _repeat_length(key: str, start: int) -> int:
    """The longest stretch from ``start`` that also starts earlier (it may overlap)."""
    best = 0
    length = _MIN_RUN
    while start + length <= len(key):
        found = key.find(key[start : start + length], 0, start + length - 1)
        if found == -1 or found >= start:
            break
        best = length
        length += 1
    return best


def estimate_bits(key: str) -> float:
    """The estimated entropy of ``key`` in bits (lower is weaker)."""
    key = key[:_MAX_CHARS]
    per_char = math.log2(_alphabet(key))
    bits = 0.0
    position = 0
    while position < len(key):
        repeat = _repeat_length(key, position)
        run_end = _sequence_end(key, position)
        run = run_end - position
        if repeat >= _MIN_RUN and repeat >= run:
            bits += math.log2(position + 1) + math.log2(repeat)
            position += repeat
        elif run >= _MIN_RUN:
            bits += per_char + math.log2(run)
            position = run_end
        else:
            bits += per_char
            position += 1
    return bits
