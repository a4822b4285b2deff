"""Spot price history: reading it, summarising it per availability zone, choosing a zone."""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from contract.defaults import usd

# Both names are still returned for Linux, depending on the account's age (EC2-Classic).
LINUX_PRODUCTS = ("Linux/UNIX", "Linux/UNIX (Amazon VPC)")

# On-demand Linux prices in USD/h, for comparison only (nothing decides on them), from
# https://aws.amazon.com/ec2/pricing/on-demand/ as of 2024 and not re-checked since: AWS
# changes them rarely, but check the page before quoting them.
ON_DEMAND_USD_PER_HOUR: dict[tuple[str, str], float] = {
    ("us-east-1", "g4dn.xlarge"): 0.526,
    ("us-east-1", "g4dn.2xlarge"): 0.752,
    ("us-east-1", "g5.xlarge"): 1.006,
    ("us-east-1", "g6.xlarge"): 0.8048,
    ("us-west-2", "g4dn.xlarge"): 0.526,
    ("us-west-2", "g4dn.2xlarge"): 0.752,
    ("us-west-2", "g5.xlarge"): 1.006,
    ("us-west-2", "g6.xlarge"): 0.8048,
    ("eu-west-1", "g4dn.xlarge"): 0.587,
    ("eu-west-1", "g5.xlarge"): 1.123,
}


@dataclass(frozen=True)
class PricePoint:
    zone: str
    price: float
    timestamp: datetime


@dataclass(frozen=True)
class ZoneStats:
    zone: str
    current: float
    low: float
    median: float
    high: float

    def fits(self, max_price: float) -> bool:
        # A spot request is fulfilled while the spot price is at or below the max price.
        return self.current <= max_price


PriceHistorySource = Callable[[Any, str, datetime, datetime], list[PricePoint]]


def fetch_price_history(
    ec2: Any, instance_type: str, start: datetime, end: datetime
) -> list[PricePoint]:
    """Every Linux spot price change of `instance_type` between `start` and `end`, all zones.

    AWS also returns the price already in effect at `start`, with its older timestamp, so
    points are not filtered by time here: that point is what makes a quiet zone visible.
    """
    paginator = ec2.get_paginator("describe_spot_price_history")
    pages = paginator.paginate(
        InstanceTypes=[instance_type],
        ProductDescriptions=list(LINUX_PRODUCTS),
        StartTime=start,
        EndTime=end,
    )
    return [
        PricePoint(
            zone=item["AvailabilityZone"],
            price=float(item["SpotPrice"]),
            timestamp=item["Timestamp"],
        )
        for page in pages
        for item in page.get("SpotPriceHistory", [])
    ]


def zone_stats(points: list[PricePoint]) -> list[ZoneStats]:
    """Per zone, sorted by zone name: the latest price and min/median/max of the recorded prices.

    The median is over recorded price changes, not weighted by how long each price held.
    """
    by_zone: dict[str, list[PricePoint]] = defaultdict(list)
    for point in points:
        by_zone[point.zone].append(point)
    stats = []
    for zone in sorted(by_zone):
        zone_points = by_zone[zone]
        prices = [p.price for p in zone_points]
        # Two records with the same timestamp (one per product name) can differ; the higher
        # one is the price a request must beat.
        current = max(zone_points, key=lambda p: (p.timestamp, p.price)).price
        stats.append(
            ZoneStats(
                zone=zone,
                current=current,
                low=min(prices),
                median=statistics.median(prices),
                high=max(prices),
            )
        )
    return stats


@dataclass(frozen=True)
class Coverage:
    """The price table's zones: the workers launch only into the default VPC's default subnets."""

    stats: list[ZoneStats]
    unpriced: list[str]
    left_out: list[str]


def cover_subnet_zones(stats: list[ZoneStats], subnet_zones: Iterable[str]) -> Coverage:
    """Priced zones that have a default subnet, default-subnet zones without a recorded price,
    and priced zones left out for want of a default subnet; each sorted by name."""
    subnets = set(subnet_zones)
    priced = {s.zone for s in stats}
    return Coverage(
        stats=[s for s in stats if s.zone in subnets],
        unpriced=sorted(subnets - priced),
        left_out=sorted(priced - subnets),
    )


def usable_zones(stats_by_type: Iterable[list[ZoneStats]], max_price: float) -> list[str]:
    """Zones where at least one instance type's current price is within the max price, sorted:
    the group's availability_zones. The stats are already limited to default-subnet zones."""
    return sorted({s.zone for stats in stats_by_type for s in stats if s.fits(max_price)})


def on_demand_price(region: str, instance_type: str) -> float | None:
    return ON_DEMAND_USD_PER_HOUR.get((region, instance_type))


def format_price_table(
    stats: list[ZoneStats],
    *,
    region: str,
    instance_type: str,
    max_price: float,
    window_hours: float,
    unpriced: Sequence[str] = (),
    left_out: Sequence[str] = (),
    vpc_id: str | None = None,
) -> list[str]:
    title = f"Spot prices for {instance_type} (Linux) in {region}, last {window_hours:g} h, USD/h:"
    left_out_line = (
        f"  left out: {', '.join(left_out)} (no default subnet in the default VPC {vpc_id}; "
        "the workers launch only into default subnets)"
    )
    left_out_lines = [left_out_line] if left_out else []
    if not stats:
        return [
            title,
            f"  no spot price history: {instance_type} may not be offered in {region}",
            *left_out_lines,
        ]
    fits_header = f"<= max {usd(max_price)}"
    zone_width = max(len("zone"), *(len(zone) for zone in [*(s.zone for s in stats), *unpriced]))
    lines = [
        title,
        (
            f"  {'zone':<{zone_width}}  {'current':>8}  {'min':>8}  {'median':>8}  {'max':>8}  "
            f"{fits_header}"
        ),
    ]
    rows = {
        s.zone: (
            f"  {s.zone:<{zone_width}}  {s.current:>8.4f}  {s.low:>8.4f}  {s.median:>8.4f}  "
            f"{s.high:>8.4f}  {'yes' if s.fits(max_price) else 'no'}"
        )
        for s in stats
    }
    for zone in unpriced:
        dash = "-"
        rows[zone] = (
            f"  {zone:<{zone_width}}  {dash:>8}  {dash:>8}  {dash:>8}  {dash:>8}  no price recorded"
        )
    return [*lines, *(rows[zone] for zone in sorted(rows)), *left_out_lines]


def format_zones(
    stats_by_type: dict[str, list[ZoneStats]],
    usable: list[str],
    *,
    region: str,
    max_price: float,
    default_vpc: bool = True,
) -> list[str]:
    """On-demand prices for comparison, then the zones the group will use. Without a default
    VPC no zone has a default subnet: the line says so rather than promise one."""
    lines = []
    for instance_type in stats_by_type:
        on_demand = on_demand_price(region, instance_type)
        if on_demand is not None:
            of_type = f" of {instance_type}" if len(stats_by_type) > 1 else ""
            lines.append(
                f"On-demand price{of_type} for comparison: {usd(on_demand)}/h "
                "(AWS public price list, 2024; see launcher/prices.py)"
            )
    if not default_vpc:
        within = f"{', '.join(usable)} have" if usable else "no zone has"
        lines.append(
            f"Zones: {within} a current price within the max {usd(max_price)}/h, but {region} "
            "has no default VPC, so no default subnet to launch into (see the network check)"
        )
    elif usable:
        lines.append(
            f"Zones: {', '.join(usable)} (a default subnet and a current price within the max "
            f"{usd(max_price)}/h; the group spreads the workers over them)"
        )
    elif any(stats_by_type.values()):
        lines.append("Zones: every zone with a default subnet (no zone is within the max price)")
    else:
        lines.append("Zones: every zone with a default subnet (no spot price history)")
    return lines


def price_warning(max_price: float) -> str:
    return (
        f"warning: the max price {usd(max_price)}/h is under the current spot price in every "
        "zone; the spot request would wait unfulfilled until the price drops"
    )


def price_refusal(stats: list[ZoneStats], max_price: float) -> str:
    cheapest = min(stats, key=lambda s: (s.current, s.zone))
    return (
        f"prices: the current spot price is above the max price {usd(max_price)}/h in every "
        f"zone (cheapest: {cheapest.zone} at {usd(cheapest.current)}/h), so the workers would "
        "wait unlaunched; raise --max-price, or pass --force to launch anyway"
    )


@dataclass(frozen=True)
class SpotCost:
    usd: float
    # Hours before the first recorded price, charged at that first price: AWS returns the price
    # in effect at a history's start, so this is only non-zero when the history is cut short.
    unrecorded_hours: float


def accrued_spot_cost(
    points: list[PricePoint], zone: str, start: datetime, end: datetime
) -> SpotCost | None:
    """What one instance in `zone` cost from `start` to `end` at the spot price actually in
    effect: the recorded price history read as a step function (each price holds until the next
    record), integrated per second as AWS bills Linux spot. None without a record in `zone`."""
    steps: dict[datetime, float] = {}
    for point in points:
        if point.zone == zone:
            # One record per product name can share a timestamp; the higher one is charged.
            steps[point.timestamp] = max(point.price, steps.get(point.timestamp, 0.0))
    if not steps:
        return None
    times = sorted(steps)
    total = 0.0
    for i, time in enumerate(times):
        until = times[i + 1] if i + 1 < len(times) else end
        total += _hours_between(max(time, start), min(until, end)) * steps[time]
    unrecorded = _hours_between(start, min(times[0], end))
    total += unrecorded * steps[times[0]]
    return SpotCost(total, unrecorded)


def _hours_between(start: datetime, end: datetime) -> float:
    return max(0.0, (end - start).total_seconds() / 3600)
