"""The batch estimate and how money is written."""

from __future__ import annotations

import pytest

from contract.defaults import usd, usd_amount
from launcher.estimate import Estimate, estimate_batch, format_estimate


@pytest.mark.parametrize(
    ("audio_s", "rtf", "max_price", "workers", "overhead_min", "expected"),
    [
        pytest.param(
            1800,
            0.5,
            0.40,
            1,
            10,
            # 30 min of audio at half real time is 1 h, plus 10 min boot.
            Estimate(1800, 1.0, 1 / 6, 7 / 6, 7 / 6, 0.40 * 7 / 6),
            id="one worker",
        ),
        pytest.param(
            1800,
            0.5,
            0.40,
            2,
            10,
            # Generation is shared, each worker boots: 1 h + 2 x 10 min, done in 40 min.
            Estimate(1800, 1.0, 2 / 6, 8 / 6, 0.5 + 1 / 6, 0.40 * 8 / 6),
            id="two workers share generation, each pays boot",
        ),
        pytest.param(
            3600,
            2.0,
            1.0,
            1,
            0,
            Estimate(3600, 0.5, 0.0, 0.5, 0.5, 0.5),
            id="faster than real time, no overhead",
        ),
        pytest.param(
            0,
            0.5,
            0.40,
            1,
            10,
            Estimate(0, 0.0, 1 / 6, 1 / 6, 1 / 6, 0.40 / 6),
            id="nothing to generate still pays boot",
        ),
    ],
)
def test_estimate_batch(
    audio_s: float,
    rtf: float,
    max_price: float,
    workers: int,
    overhead_min: float,
    expected: Estimate,
) -> None:
    got = estimate_batch(
        audio_s,
        realtime_factor=rtf,
        max_price=max_price,
        worker_count=workers,
        boot_overhead_min=overhead_min,
    )

    assert vars(got) == pytest.approx(vars(expected))


def test_format_estimate() -> None:
    options = {"realtime_factor": 0.5, "max_price": 0.4, "worker_count": 2, "boot_overhead_min": 10}
    lines = format_estimate(estimate_batch(1800, **options), **options)

    assert lines == [
        "Estimate (upper bound, at the max price): $0.5333",
        "  30.0 min of audio at 0.5 audio-s per second = 1.00 h of generation",
        "  + 2 × 10 min boot and model load = 1.33 instance-h × $0.40/h",
        "  about 0.7 h until the last song is in the bucket",
    ]


@pytest.mark.parametrize(
    ("amount", "as_usd", "as_amount"),
    [
        (0.4, "$0.40", "$0.40"),
        (0.385, "$0.385", "$0.385"),
        (0.1574, "$0.1574", "$0.1574"),
        # A short song's cost: cents would show $0.00; the listening page shows the same digits.
        (0.0524, "$0.0524", "$0.0524"),
        (0.00001, "$0.00001", "$0.00001"),
        (0, "$0.00", "$0.00"),
        (2, "$2.00", "$2.00"),
        (12.3456789, "$12.34568", "$12.35"),
        (1234567.891, "$1234567.891", "$1,234,567.89"),
    ],
)
def test_money(amount: float, as_usd: str, as_amount: str) -> None:
    """Rates keep their digits; amounts follow the one rule the listening page follows too."""
    assert (usd(amount), usd_amount(amount)) == (as_usd, as_amount)
