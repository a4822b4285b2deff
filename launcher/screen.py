"""Lists longer than a screen are cut to a screenful, with a last line saying what was left out."""

from __future__ import annotations

from collections.abc import Callable, Sequence

# Lines of one list `status` shows before it summarises the rest.
SCREENFUL = 20


def at_most(
    lines: Sequence[str], rest: Callable[[int], str], limit: int = SCREENFUL
) -> list[str]:
    """`lines` when they fit in `limit`, else the first `limit - 1` and `rest(left out)`."""
    if len(lines) <= limit:
        return list(lines)
    shown = max(limit - 1, 0)
    return [*lines[:shown], rest(len(lines) - shown)]
