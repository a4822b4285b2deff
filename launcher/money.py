"""How dollar amounts are written: rates keep the digits the user or AWS gave; amounts (an
estimate, a cost so far, a report's total) follow the one rule the listening page follows too."""

from __future__ import annotations

from worker.money import usd_amount

__all__ = ["usd", "usd_amount"]


def usd(rate: float) -> str:
    """A price such as a max price or spot price: "$0.40", "$0.385", "$0.00001"."""
    text = f"{rate:.5f}".rstrip("0")
    whole, _, fraction = text.partition(".")
    return f"${whole}.{fraction:0<2}"
