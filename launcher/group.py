"""The workers' Auto Scaling group: its counts, its scaling activities in plain words, every
instance it ran (terminated ones too, for the cost) and raising it back to the worker count.

The boto3 calls take their client; reading AWS's answers (`group_from_response`,
`activity_from_response`, `describe_activities`, `ended_at`) is pure, so it is tested with
recorded responses where moto has none (moto returns no scaling activities).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from launcher.instances import Worker, worker_from

# EC2 Auto Scaling tags each instance it launches with its group's name.
GROUP_NAME_TAG = "aws:autoscaling:groupName"
# Activities shown by `status`; more are read (DescribeScalingActivities' page maximum, newest
# first) for the termination times of the instances the cost counts.
DEFAULT_ACTIVITIES = 10
ACTIVITIES_FOR_COST = 100

_INSTANCE_ID = re.compile(r"\bi-[0-9a-f]+\b")
_CAPACITY = re.compile(r"capacity from (\d+) to (\d+)")
# EC2's StateTransitionReason, "User initiated (2026-11-29 05:12:00 GMT)"; moto writes UTC.
_TRANSITION_TIME = re.compile(r"\((\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) (?:GMT|UTC)\)")


@dataclass(frozen=True)
class Group:
    name: str
    desired: int
    min_size: int
    max_size: int
    in_service: int
    instances: int  # in any lifecycle state (pending, in service, terminating...)
    spot_max_price: float | None


def group_from_response(raw: dict[str, Any]) -> Group:
    """One entry of DescribeAutoScalingGroups' AutoScalingGroups."""
    members = raw.get("Instances", [])
    distribution = raw.get("MixedInstancesPolicy", {}).get("InstancesDistribution", {})
    max_price = distribution.get("SpotMaxPrice")
    return Group(
        name=raw["AutoScalingGroupName"],
        desired=int(raw["DesiredCapacity"]),
        min_size=int(raw["MinSize"]),
        max_size=int(raw["MaxSize"]),
        in_service=sum(m.get("LifecycleState") == "InService" for m in members),
        instances=len(members),
        # An empty SpotMaxPrice means "up to the on-demand price".
        spot_max_price=float(max_price) if max_price else None,
    )


def describe_group(autoscaling: Any, name: str) -> Group | None:
    """The group, or None when it does not exist (destroyed, or another region)."""
    groups = autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=[name])[
        "AutoScalingGroups"
    ]
    return group_from_response(groups[0]) if groups else None


def raise_group(autoscaling: Any, name: str, desired: int) -> None:
    """Set the desired capacity now; HonorCooldown false, since the launcher's user asked for it
    and a cooldown after a worker's own scale-in would only delay the replacement."""
    autoscaling.set_desired_capacity(
        AutoScalingGroupName=name, DesiredCapacity=desired, HonorCooldown=False
    )


@dataclass(frozen=True)
class Activity:
    start: datetime
    end: datetime | None
    status: str  # Successful, Failed, Cancelled, InProgress, PreInService, WaitingFor...
    description: str
    cause: str
    message: str  # StatusMessage: why a launch failed

    @property
    def instance_id(self) -> str | None:
        found = _INSTANCE_ID.search(self.description)
        return found.group(0) if found else None

    @property
    def launch(self) -> bool:
        return self.description.startswith("Launching")

    @property
    def termination(self) -> bool:
        return self.description.startswith("Terminating")


def activity_from_response(raw: dict[str, Any]) -> Activity:
    """One entry of DescribeScalingActivities' Activities."""
    return Activity(
        start=raw["StartTime"],
        end=raw.get("EndTime"),
        status=raw.get("StatusCode", ""),
        description=raw.get("Description", ""),
        cause=raw.get("Cause", ""),
        message=raw.get("StatusMessage", ""),
    )


def scaling_activities(
    autoscaling: Any, name: str, limit: int = DEFAULT_ACTIVITIES
) -> list[Activity]:
    """The group's newest `limit` activities, oldest first."""
    raw = autoscaling.describe_scaling_activities(AutoScalingGroupName=name, MaxRecords=limit)
    return sorted(
        (activity_from_response(a) for a in raw.get("Activities", [])), key=lambda a: a.start
    )


def _interrupted(activity: Activity) -> bool:
    # A spot instance reclaimed by EC2 leaves the group through its EC2 health check.
    return "has been terminated or stopped" in activity.cause


def _capacity(activity: Activity) -> str:
    found = _CAPACITY.findall(activity.cause)
    return f" (capacity {found[-1][0]} → {found[-1][1]})" if found else ""


def describe_activities(activities: list[Activity]) -> list[str]:
    """One line per activity, oldest first, in plain words; a launch after an interruption is
    named as its replacement."""
    lines = []
    interrupted: list[str] = []
    for activity in activities:
        when = activity.start.astimezone(UTC).strftime("%Y-%m-%d %H:%M")
        lines.append(f"{when}  {_describe(activity, interrupted)}")
    return lines


def _describe(activity: Activity, interrupted: list[str]) -> str:
    iid = activity.instance_id or "an instance"
    cause = activity.cause
    if activity.status in ("Failed", "Cancelled"):
        what = "launch" if activity.launch else "termination" if activity.termination else "activity"
        reason = activity.message or activity.description
        return f"{what} {activity.status.lower()}: {' '.join(reason.split())}"
    if activity.termination:
        if _interrupted(activity):
            interrupted.append(iid)
            return (
                f"{iid} was interrupted (terminated by EC2, as a reclaimed spot instance is); "
                "the group replaces it"
            )
        if "rebalance recommendation" in cause:
            return (
                f"{iid} retired early on a rebalance recommendation (a raised risk of spot "
                "interruption); its replacement was started first"
            )
        # TerminateInstanceInAutoScalingGroup, as a finished worker calls it on itself.
        if "in response to a user request" in cause and "shrinking" in cause:
            return (
                f"{iid} scaled in on request{_capacity(activity)}: a worker that finished the "
                "batch (or reached --max-hours) removes its own instance"
            )
        if "shrinking" in cause:
            return f"{iid} terminated: the desired capacity was lowered{_capacity(activity)}"
        return f"{iid} terminated: {' '.join(cause.split()) or 'no cause given'}"
    if activity.launch:
        if "rebalance recommendation" in cause:
            return (
                f"{iid} launched on a rebalance recommendation, to replace an instance at raised "
                "risk of spot interruption"
            )
        if interrupted:
            return f"{iid} launched to replace the interrupted {interrupted.pop(0)}"
        return f"{iid} launched{_capacity(activity)}"
    return f"{activity.description}: {' '.join(cause.split())}"


def ended_at(instance: dict[str, Any], activities: list[Activity]) -> datetime | None:
    """When a stopped or terminated instance stopped billing: its termination activity's end,
    else the time in EC2's StateTransitionReason; None for a live instance."""
    if instance["State"]["Name"] in ("pending", "running"):
        return None
    for activity in activities:
        if activity.termination and activity.instance_id == instance["InstanceId"] and activity.end:
            return activity.end
    found = _TRANSITION_TIME.search(instance.get("StateTransitionReason") or "")
    if found:
        return datetime.strptime(found.group(1), "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC)
    return None


def group_instances(ec2: Any, name: str, activities: list[Activity]) -> list[Worker]:
    """Every instance the group launched that EC2 still lists (terminated ones stay listed for
    about an hour), oldest first: by the group's tag, and by the ids its activities name (an
    instance detached from the group loses the tag; moto drops it on any scale-in)."""
    filters = [[{"Name": f"tag:{GROUP_NAME_TAG}", "Values": [name]}]]
    named = sorted({a.instance_id for a in activities if a.instance_id})
    if named:
        # A filter, not InstanceIds: an id EC2 no longer knows is skipped, not an error.
        filters.append([{"Name": "instance-id", "Values": named}])
    found: dict[str, dict[str, Any]] = {}
    for query in filters:
        for page in ec2.get_paginator("describe_instances").paginate(Filters=query):
            for reservation in page.get("Reservations", []):
                for instance in reservation.get("Instances", []):
                    found[instance["InstanceId"]] = instance
    workers = [
        worker_from(instance, ended_at(instance, activities))
        for instance in found.values()
    ]
    return sorted(workers, key=lambda w: (w.launch_time, w.instance_id))


def unlisted_instances(activities: list[Activity], runs: list[Worker]) -> list[str]:
    """Instances the activities launched that DescribeInstances no longer returns."""
    listed = {run.instance_id for run in runs}
    launched = [a.instance_id for a in activities if a.launch and a.status == "Successful"]
    return sorted({iid for iid in launched if iid and iid not in listed})


def format_group(group: Group, region: str) -> str:
    return (
        f"Group {group.name} in {region}: desired {group.desired}, in service "
        f"{group.in_service} (min {group.min_size}, max {group.max_size})"
    )
