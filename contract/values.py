"""How the worker reads the numbers people write, and how its messages show values back.

Pure functions shared by the prompts file (contract/prompts.py) and the options (worker/cli.py),
so a duration and an option accept the same numbers, and every error line quotes what it
refuses the same way: whole when short, cut with its length said when long.
"""

from __future__ import annotations

import re

# Python's int() and float() also accept other scripts' digits ('１０', '٥') and underscores
# ('1_0'); the formats the docs give are plain ASCII decimals. inf and nan are read so that
# their callers can say "must be a finite number" rather than "not a number".
_INTEGER = re.compile(r"[+-]?[0-9]+", re.ASCII)
_DECIMAL = re.compile(
    r"[+-]?(?:(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|inf|infinity|nan)",
    re.ASCII | re.IGNORECASE,
)
# Enough for any file name the prompts file allows (200 characters) and the paths, URLs and
# numbers people type; a longer value (a pasted file, a runaway field) is cut, so one bad value
# stays one readable line.
MAX_QUOTED_CHARS = 200
# Units for counts, smallest first (B for billions, as in "musicgen 3.3B").
_COUNT_UNITS = (("", 1.0), ("k", 1e3), ("M", 1e6), ("B", 1e9))


def parse_int(text: str, what: str = "a valid int") -> int:
    """An optional sign and the digits 0-9 (spaces around are fine); ValueError("is not WHAT")
    otherwise, or one that names the digits when others were used."""
    stripped = text.strip()
    if not _INTEGER.fullmatch(stripped):
        raise ValueError(_why_not(stripped, what))
    try:
        return int(stripped)
    except ValueError:  # more digits than Python converts (4300): no setting is that large
        raise ValueError(f"is not {what} (too many digits)") from None


def parse_float(text: str, what: str = "a valid float") -> float:
    """A decimal number such as 30, 1.5, .5 or 1e2 in the digits 0-9, or inf/nan (their callers
    refuse them by name); ValueError("is not WHAT") otherwise."""
    stripped = text.strip()
    if not _DECIMAL.fullmatch(stripped):
        raise ValueError(_why_not(stripped, what))
    return float(stripped)


def _why_not(text: str, what: str) -> str:
    if any(ch.isdecimal() and not ch.isascii() for ch in text):
        return f"is not {what}: write it with the digits 0-9"
    return f"is not {what}"


def quoted(value: object) -> str:
    """A value as an error line shows it: repr() when short; else its first MAX_QUOTED_CHARS
    characters and its full length."""
    text = value if isinstance(value, str) else str(value)
    if len(text) <= MAX_QUOTED_CHARS:
        return repr(text)
    return f"{text[:MAX_QUOTED_CHARS]!r}... ({len(text)} characters)"


def number(value: float) -> str:
    """A number as a person writes it: 1048576 (not 1.04858e+06), 30 (not 30.0), 0.5."""
    if isinstance(value, int):
        return str(value)
    if value.is_integer():
        return str(int(value))
    return repr(value)


def count(value: int) -> str:
    """A count to three significant digits with its unit: 950, 41.1 k, 1.23 M, 300 M, 3.3 B."""
    unit, shown = "", float(value)
    for unit, size in _COUNT_UNITS:
        shown = float(f"{value / size:.3g}")
        if shown < 1000:
            break
    return f"{shown:g} {unit}".rstrip()
