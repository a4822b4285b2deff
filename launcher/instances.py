"""Worker instances already running: finding them and what they have cost so far."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from contract.defaults import usd, usd_amount
from launcher.prices import SpotCost

# The name prefix of every resource: the launcher passes it as terraform's `name` variable, whose
# default it equals (tests check), and terraform tags the workers NAME-worker.
NAME = "musicgen-batch"
ACTIVE_STATES = ("pending", "running")


@dataclass(frozen=True)
class Worker:
    instance_id: str
    instance_type: str
    state: str
    zone: str
    launch_time: datetime
    spot: bool
    # When a stopped or terminated instance stopped billing; None while it runs.
    ended: datetime | None = None

    def end(self, now: datetime) -> datetime:
        return now if self.ended is None else min(self.ended, now)


def worker_from(instance: Mapping[str, Any], ended: datetime | None = None) -> Worker:
    """A worker from an instance as DescribeInstances lists it."""
    return Worker(
        instance_id=instance["InstanceId"],
        instance_type=instance["InstanceType"],
        state=instance["State"]["Name"],
        zone=instance["Placement"]["AvailabilityZone"],
        launch_time=instance["LaunchTime"],
        spot=instance.get("InstanceLifecycle") == "spot",
        ended=ended,
    )


def worker_tag(outputs: Mapping[str, Any], name: str = NAME) -> dict[str, str]:
    """The tag on every worker: terraform's `worker_tag` output, else (no state yet) the tag
    terraform gives the workers of a deployment called `name`."""
    tag = outputs.get("worker_tag")
    if isinstance(tag, Mapping) and tag:
        return {str(key): str(value) for key, value in tag.items()}
    return {"Role": f"{name}-worker"}


def find_workers(ec2: Any, tag: Mapping[str, str]) -> list[Worker]:
    """Pending or running instances with the worker tag, oldest first."""
    pages = ec2.get_paginator("describe_instances").paginate(
        Filters=[
            *({"Name": f"tag:{key}", "Values": [value]} for key, value in tag.items()),
            {"Name": "instance-state-name", "Values": list(ACTIVE_STATES)},
        ]
    )
    workers = [
        worker_from(instance)
        for page in pages
        for reservation in page.get("Reservations", [])
        for instance in reservation.get("Instances", [])
    ]
    return sorted(workers, key=lambda w: (w.launch_time, w.instance_id))


def spot_max_prices(ec2: Any, workers: list[Worker]) -> dict[str, float]:
    """Max price per instance id, from the spot requests behind the spot workers.

    The launch may have used another --max-price than today's command line, so the request's
    own price is the better bound for what the instance has cost.
    """
    spot_ids = sorted(w.instance_id for w in workers if w.spot)
    if not spot_ids:
        return {}
    pages = ec2.get_paginator("describe_spot_instance_requests").paginate(
        Filters=[{"Name": "instance-id", "Values": spot_ids}]
    )
    return {
        request["InstanceId"]: float(request["SpotPrice"])
        for page in pages
        for request in page.get("SpotInstanceRequests", [])
        if request.get("InstanceId") and request.get("SpotPrice")
    }


def uptime_hours(worker: Worker, now: datetime) -> float:
    return max(0.0, (worker.end(now) - worker.launch_time).total_seconds() / 3600)


def format_duration(hours: float) -> str:
    minutes = int(hours * 60)
    if minutes < 24 * 60:
        return f"{minutes // 60}h{minutes % 60:02d}m"
    return f"{minutes // (24 * 60)}d{minutes // 60 % 24:02d}h"


def format_workers(
    workers: list[Worker],
    *,
    now: datetime,
    max_prices: dict[str, float],
    default_max_price: float,
    spot_costs: dict[str, SpotCost | None] | None = None,
) -> list[str]:
    """A table of workers with the cost accrued so far at each one's max price (an upper bound)
    and, given `spot_costs`, at the spot price actually in effect."""
    header = ("id", "type", "state", "zone", "launched (UTC)", "uptime", "accrued")
    rows = [(*header, "at spot price") if spot_costs is not None else header]
    total = 0.0
    for w in workers:
        price = max_prices.get(w.instance_id, default_max_price)
        accrued = uptime_hours(w, now) * price
        total += accrued
        row: tuple[str, ...] = (
            w.instance_id,
            w.instance_type,
            w.state,
            w.zone,
            w.launch_time.astimezone(UTC).strftime("%Y-%m-%d %H:%M"),
            format_duration(uptime_hours(w, now)),
            f"{usd_amount(accrued)} at {usd(price)}/h",
        )
        if spot_costs is not None:
            row = (*row, _spot_cell(spot_costs.get(w.instance_id)))
        rows.append(row)
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = [
        "  " + "  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip()
        for row in rows
    ]
    lines.append(f"  accrued so far (upper bound, at the max price): {usd_amount(total)}")
    if spot_costs is not None:
        lines += _spot_total_lines([spot_costs.get(w.instance_id) for w in workers])
    return lines


def _spot_cell(cost: SpotCost | None) -> str:
    if cost is None:
        return "no price recorded"
    return usd_amount(cost.usd) + ("*" if cost.unrecorded_hours else "")


def _spot_total_lines(costs: list[SpotCost | None]) -> list[str]:
    known = [cost for cost in costs if cost is not None]
    partial = " (workers without a recorded price left out)" if len(known) < len(costs) else ""
    lines = [
        f"  accrued so far at the actual spot price: {usd_amount(sum(c.usd for c in known))}{partial}",
        "  (compute only: EBS volumes and data transfer are billed on top, in neither figure)",
    ]
    if any(cost.unrecorded_hours for cost in known):
        lines.append("  * launched before the first recorded price; that first price is charged")
    return lines
