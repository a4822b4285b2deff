"""Spot price statistics, zone choice and the price table, from hand-written histories."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from launcher.prices import (
    LINUX_PRODUCTS,
    Coverage,
    PricePoint,
    SpotCost,
    ZoneStats,
    accrued_spot_cost,
    cover_subnet_zones,
    fetch_price_history,
    format_price_table,
    format_zones,
    on_demand_price,
    price_refusal,
    price_warning,
    usable_zones,
    zone_stats,
)

T0 = datetime(2026, 11, 28, 6, 0, tzinfo=UTC)


def at(hours: float) -> datetime:
    return T0 + timedelta(hours=hours)


def points(zone: str, *prices_by_hour: tuple[float, float]) -> list[PricePoint]:
    return [PricePoint(zone, price, at(hour)) for hour, price in prices_by_hour]


@pytest.mark.parametrize(
    ("history", "expected"),
    [
        pytest.param([], [], id="no history"),
        pytest.param(
            points("us-east-1a", (0, 0.21)),
            [ZoneStats("us-east-1a", 0.21, 0.21, 0.21, 0.21)],
            id="one point is current, min, median and max",
        ),
        pytest.param(
            # Out of order on purpose: the API returns newest first, but nothing relies on it.
            points("us-east-1a", (5, 0.25), (0, 0.20), (10, 0.22), (2, 0.30)),
            [ZoneStats("us-east-1a", 0.22, 0.20, 0.235, 0.30)],
            id="current is the latest; even count takes the middle mean",
        ),
        pytest.param(
            points("us-east-1c", (1, 0.30), (2, 0.31), (3, 0.29))
            + points("us-east-1a", (1, 0.20), (3, 0.19)),
            [
                ZoneStats("us-east-1a", 0.19, 0.19, 0.195, 0.20),
                ZoneStats("us-east-1c", 0.29, 0.29, 0.30, 0.31),
            ],
            id="zones sorted by name",
        ),
        pytest.param(
            [PricePoint("us-east-1b", 0.18, at(4)), PricePoint("us-east-1b", 0.19, at(4))],
            [ZoneStats("us-east-1b", 0.19, 0.18, 0.185, 0.19)],
            id="same timestamp twice: the higher price is current",
        ),
    ],
)
def test_zone_stats(history: list[PricePoint], expected: list[ZoneStats]) -> None:
    got = zone_stats(history)

    assert [s.zone for s in got] == [e.zone for e in expected]
    assert [(s.current, s.low, s.median, s.high) for s in got] == [
        pytest.approx((e.current, e.low, e.median, e.high)) for e in expected
    ]


def stats(zone: str, current: float) -> ZoneStats:
    return ZoneStats(zone, current, current, current, current)


@pytest.mark.parametrize(
    ("by_type", "max_price", "expected"),
    [
        pytest.param([], 0.40, [], id="no types"),
        pytest.param([[]], 0.40, [], id="no zones"),
        pytest.param([[stats("us-east-1a", 0.50)]], 0.40, [], id="all above max"),
        pytest.param([[stats("us-east-1a", 0.40)]], 0.40, ["us-east-1a"], id="equal to max fits"),
        pytest.param(
            [[stats("us-east-1c", 0.30), stats("us-east-1b", 0.45), stats("us-east-1a", 0.25)]],
            0.40,
            ["us-east-1a", "us-east-1c"],
            id="every zone within max, sorted",
        ),
        pytest.param(
            [
                [stats("us-east-1a", 0.30), stats("us-east-1b", 0.45)],
                [stats("us-east-1b", 0.39), stats("us-east-1c", 0.41), stats("us-east-1a", 0.2)],
            ],
            0.40,
            ["us-east-1a", "us-east-1b"],
            id="a zone counts when any type fits there, once",
        ),
    ],
)
def test_usable_zones(by_type: list[list[ZoneStats]], max_price: float, expected: list[str]) -> None:
    assert usable_zones(by_type, max_price) == expected


@pytest.mark.parametrize(
    ("region", "instance_type", "expected"),
    [
        ("us-east-1", "g4dn.xlarge", 0.526),
        ("eu-west-1", "g5.xlarge", 1.123),
        ("ap-south-1", "g4dn.xlarge", None),
        ("us-east-1", "t3.micro", None),
    ],
)
def test_on_demand_price(region: str, instance_type: str, expected: float | None) -> None:
    assert on_demand_price(region, instance_type) == expected


class FakePaginator:
    def __init__(self, pages: list[dict]) -> None:
        self.pages = pages
        self.calls: list[dict] = []

    def paginate(self, **kwargs: object) -> list[dict]:
        self.calls.append(kwargs)
        return self.pages


class FakeEc2:
    """Just enough of an EC2 client: pages of DescribeSpotPriceHistory as AWS shapes them."""

    def __init__(self, pages: list[dict]) -> None:
        self.paginator = FakePaginator(pages)
        self.operations: list[str] = []

    def get_paginator(self, operation: str) -> FakePaginator:
        self.operations.append(operation)
        return self.paginator


def record(zone: str, price: str, hour: float) -> dict:
    return {
        "AvailabilityZone": zone,
        "InstanceType": "g4dn.xlarge",
        "ProductDescription": "Linux/UNIX",
        "SpotPrice": price,
        "Timestamp": at(hour),
    }


def test_fetch_price_history_reads_every_page_with_the_right_filters() -> None:
    ec2 = FakeEc2(
        [
            {"SpotPriceHistory": [record("us-east-1a", "0.210400", 3)], "NextToken": "t"},
            {"SpotPriceHistory": [record("us-east-1b", "0.198000", -30)]},
            {},
        ]
    )

    history = fetch_price_history(ec2, "g4dn.xlarge", at(0), at(24))

    assert history == [
        PricePoint("us-east-1a", 0.2104, at(3)),
        # Older than the window: the price in effect at its start, which AWS includes.
        PricePoint("us-east-1b", 0.198, at(-30)),
    ]
    assert ec2.operations == ["describe_spot_price_history"]
    assert ec2.paginator.calls == [
        {
            "InstanceTypes": ["g4dn.xlarge"],
            "ProductDescriptions": list(LINUX_PRODUCTS),
            "StartTime": at(0),
            "EndTime": at(24),
        }
    ]


def test_price_table_and_choice() -> None:
    history = (
        points("us-east-1a", (0, 0.2104), (6, 0.2250), (12, 0.2201))
        + points("us-east-1b", (0, 0.41), (8, 0.43))
        + points("us-east-1c", (2, 0.1990))
    )
    zones = zone_stats(history)

    table = format_price_table(
        zones, region="us-east-1", instance_type="g4dn.xlarge", max_price=0.40, window_hours=24
    )
    choice = format_zones(
        {"g4dn.xlarge": zones}, usable_zones([zones], 0.40), region="us-east-1", max_price=0.40
    )

    assert table == [
        "Spot prices for g4dn.xlarge (Linux) in us-east-1, last 24 h, USD/h:",
        "  zone         current       min    median       max  <= max $0.40",
        "  us-east-1a    0.2201    0.2104    0.2201    0.2250  yes",
        "  us-east-1b    0.4300    0.4100    0.4200    0.4300  no",
        "  us-east-1c    0.1990    0.1990    0.1990    0.1990  yes",
    ]
    assert choice == [
        (
            "On-demand price for comparison: $0.526/h (AWS public price list, 2024; "
            "see launcher/prices.py)"
        ),
        (
            "Zones: us-east-1a, us-east-1c (a default subnet and a current price within the max "
            "$0.40/h; the group spreads the workers over them)"
        ),
    ]


def test_zones_line_for_several_types_and_none_within_the_max() -> None:
    cheap = stats(("us-east-1a", 0.9))

    assert format_zones(
        {"g4dn.xlarge": cheap, "g5.xlarge": cheap, "g6.xlarge": []},
        [],
        region="eu-west-1",
        max_price=0.5,
    ) == [
        ("On-demand price of g4dn.xlarge for comparison: $0.587/h (AWS public price list, 2024; "
        "see launcher/prices.py)"),
        ("On-demand price of g5.xlarge for comparison: $1.123/h (AWS public price list, 2024; "
        "see launcher/prices.py)"),
        "Zones: every zone with a default subnet (no zone is within the max price)",
    ]


def test_price_table_without_history_and_unknown_on_demand_price() -> None:
    table = format_price_table(
        [], region="ap-south-1", instance_type="g6.xlarge", max_price=0.5, window_hours=6
    )
    choice = format_zones({"g6.xlarge": []}, [], region="ap-south-1", max_price=0.5)

    assert table == [
        "Spot prices for g6.xlarge (Linux) in ap-south-1, last 6 h, USD/h:",
        "  no spot price history: g6.xlarge may not be offered in ap-south-1",
    ]
    assert choice == ["Zones: every zone with a default subnet (no spot price history)"]


def test_price_warning() -> None:
    assert price_warning(0.1) == (
        "warning: the max price $0.10/h is under the current spot price in every zone; "
        "the spot request would wait unfulfilled until the price drops"
    )


def stats(*zones: tuple[str, float]) -> list[ZoneStats]:
    return [ZoneStats(zone, price, price, price, price) for zone, price in zones]


@pytest.mark.parametrize(
    ("priced", "subnet_zones", "expected"),
    [
        pytest.param(
            stats(("a", 0.2), ("b", 0.3)),
            ["a", "b"],
            Coverage(stats(("a", 0.2), ("b", 0.3)), [], []),
            id="every priced zone has a subnet",
        ),
        pytest.param(
            stats(("a", 0.2), ("b", 0.3), ("c", 0.1)),
            ["b", "a", "d"],
            Coverage(stats(("a", 0.2), ("b", 0.3)), ["d"], ["c"]),
            id="c has no subnet, d no price",
        ),
        pytest.param(stats(("a", 0.2)), [], Coverage([], [], ["a"]), id="no default subnet"),
        pytest.param([], ["b", "a"], Coverage([], ["a", "b"], []), id="no price history"),
    ],
)
def test_cover_subnet_zones(
    priced: list[ZoneStats], subnet_zones: list[str], expected: Coverage
) -> None:
    assert cover_subnet_zones(priced, subnet_zones) == expected


def test_price_table_over_the_default_subnet_zones() -> None:
    table = format_price_table(
        stats(("us-east-1a", 0.25), ("us-east-1c", 0.5)),
        region="us-east-1",
        instance_type="g5.xlarge",
        max_price=0.40,
        window_hours=24,
        unpriced=["us-east-1b"],
        left_out=["us-east-1d", "us-east-1e"],
        vpc_id="vpc-1",
    )

    assert table == [
        "Spot prices for g5.xlarge (Linux) in us-east-1, last 24 h, USD/h:",
        "  zone         current       min    median       max  <= max $0.40",
        "  us-east-1a    0.2500    0.2500    0.2500    0.2500  yes",
        "  us-east-1b         -         -         -         -  no price recorded",
        "  us-east-1c    0.5000    0.5000    0.5000    0.5000  no",
        (
            "  left out: us-east-1d, us-east-1e (no default subnet in the default VPC vpc-1; the "
            "workers launch only into default subnets)"
        ),
    ]


def test_price_refusal_names_the_cheapest_zone() -> None:
    assert price_refusal(stats(("b", 0.52), ("a", 0.51), ("c", 0.51)), 0.5) == (
        "prices: the current spot price is above the max price $0.50/h in every zone "
        "(cheapest: a at $0.51/h), so the workers would wait unlaunched; raise --max-price, "
        "or pass --force to launch anyway"
    )


# A recorded history of us-east-1a: 0.20 from hour 0, 0.30 from hour 2, 0.10 from hour 5.
RECORDED = points("us-east-1a", (0, 0.20), (2, 0.30), (5, 0.10)) + points("us-east-1b", (0, 9.0))


@pytest.mark.parametrize(
    ("history", "start", "end", "expected"),
    [
        pytest.param(RECORDED, 1, 1.5, SpotCost(0.5 * 0.20, 0), id="within one price"),
        pytest.param(
            RECORDED, 1, 6, SpotCost(1 * 0.20 + 3 * 0.30 + 1 * 0.10, 0), id="two changes mid-run"
        ),
        pytest.param(RECORDED, 2, 5, SpotCost(3 * 0.30, 0), id="launched and ended on a change"),
        pytest.param(
            RECORDED,
            -1.5,
            3,
            SpotCost(1.5 * 0.20 + 2 * 0.20 + 1 * 0.30, 1.5),
            id="launched before the first record: the first price, flagged",
        ),
        pytest.param(
            RECORDED,
            -3,
            -1,
            SpotCost(2 * 0.20, 2),
            id="run entirely before the first record",
        ),
        pytest.param(
            RECORDED,
            1,
            3,
            SpotCost(1 * 0.20 + 1 * 0.30, 0),
            id="terminated at hour 3: the later change is not charged",
        ),
        pytest.param(RECORDED, 4, 4, SpotCost(0, 0), id="no time, no cost"),
        pytest.param(
            points("us-east-1a", (0, 0.20), (0, 0.25), (1, 0.10)),
            0,
            2,
            SpotCost(0.25 + 0.10, 0),
            id="two product records at one time: the higher",
        ),
        pytest.param(points("us-east-1b", (0, 0.2)), 0, 1, None, id="no record in the zone"),
        pytest.param(
            list(reversed(RECORDED)), 1, 6, SpotCost(0.2 + 0.9 + 0.1, 0), id="unsorted history"
        ),
    ],
)
def test_accrued_spot_cost(
    history: list[PricePoint], start: float, end: float, expected: SpotCost | None
) -> None:
    cost = accrued_spot_cost(history, "us-east-1a", at(start), at(end))

    if expected is None:
        assert cost is None
    else:
        assert cost == SpotCost(
            pytest.approx(expected.usd), pytest.approx(expected.unrecorded_hours)
        )
