"""Whole numbers written as text by a caller: page tokens, payment references, beacon rounds.

Why not `s.isdigit()` then `int(s)`: isdigit() is true for "²" and "①", which int() refuses
(ValueError, an INTERNAL for the caller), and for Arabic-Indic or full-width digits, which
int() accepts; and a token's number goes on to SQLite, which cannot bind an integer beyond
64 bits (OverflowError). This accepts only ASCII digits, an optional "-" where asked for, and
values a SQLite INTEGER holds.
"""
from __future__ import annotations

__all__ = ["ascii_int", "INT64_MIN", "INT64_MAX"]

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
_DIGITS = frozenset("0123456789")


def ascii_int(text: str, *, negative: bool = False, minimum: int = INT64_MIN, maximum: int = INT64_MAX) -> int | None:
    """The integer `text` spells in ASCII digits (with one leading "-" when `negative`),
    or None when it spells none or one outside minimum..maximum."""
    digits = text[1:] if negative and text.startswith("-") else text
    if not digits or len(digits) > 19 or not _DIGITS.issuperset(digits):
        return None
    value = int(text)
    return value if minimum <= value <= maximum else None
