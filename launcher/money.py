"""How dollar amounts are written: rates keep the digits the user or AWS gave, totals show cents."""

from __future__ import annotations


def usd(rate: float) -> str:
    """A price such as a max price or spot price: "$0.40", "$0.385", "$0.00001"."""
    text = f"{rate:.5f}".rstrip("0")
    whole, _, fraction = text.partition(".")
    return f"${whole}.{fraction:0<2}"


def cents(amount: float) -> str:
    """A total such as an estimate or accrued cost: "$1.07"."""
    return f"${amount:.2f}"
