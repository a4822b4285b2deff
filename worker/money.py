"""How an amount of money is written, on the listening page and in `launcher status` alike.

A short song costs a fraction of a cent, so cents alone would show it as $0.00: below a dollar up
to four decimals show it, below a cent up to six (the cost report's precision), without trailing
zeros past the cents. From a dollar up, cents, with thousands separators so that a large
estimate stays readable."""

from __future__ import annotations


def usd_amount(value: float) -> str:
    """"$0.0524", "$0.55", "$0.005", "$0.00", "$12.35", "$1,234,567.89"."""
    if value >= 1:
        return f"${value:,.2f}"
    text = f"{value:.{4 if value >= 0.01 else 6}f}".rstrip("0")
    whole, _, fraction = text.partition(".")
    return f"${whole}.{fraction:0<2}"
