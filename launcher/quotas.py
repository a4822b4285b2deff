"""The account's spot vCPU quota for the workers' instance family, read through Service Quotas.

EC2 counts spot capacity per region in vCPUs of running and requested spot instances, one quota
per family group; new accounts start the GPU groups at 0, and then every spot request fails
with MaxSpotInstanceCountExceeded after terraform has already created the bucket and the role.
So the check adds up what the group may run at once (its workers, and the extra instance that
capacity rebalancing launches before it terminates an at-risk one) and the spot instances of
the same quota already running in the region, and compares the sum with the quota.
The lookups take their client as a parameter; `quota_check` decides, purely.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from contract.aws import error_code
from launcher.checks import Check

SERVICE_CODE = "ec2"


@dataclass(frozen=True)
class SpotQuota:
    code: str
    name: str


# Names as AWS's EC2 user guide lists the spot quotas; the name the API returns is shown when
# there is one, as AWS renames them (the P group is "All P4, P3 and P2 Spot Instance Requests"
# in newer pages, with P5 split off under a code not listed here). The G group counts every G
# family, gr6 (G with more memory per vCPU) included, as its quota table lists them.
_G_AND_VT = SpotQuota("L-3819A6DF", "All G and VT Spot Instance Requests")
GPU_SPOT_QUOTAS = {
    "g": _G_AND_VT,
    "gr": _G_AND_VT,
    "vt": _G_AND_VT,
    "p": SpotQuota("L-7212CCBC", "All P Spot Instance Requests"),
}
_FAMILY = re.compile(r"^([a-z]+)(\d*)")


def spot_quota_for(instance_type: str) -> SpotQuota | None:
    """The spot quota that counts `instance_type`'s vCPUs, for the GPU families the workers use."""
    match = _FAMILY.match(instance_type)
    if match is None:
        return None
    letters, generation = match.groups()
    if letters == "p" and generation and int(generation) >= 5:
        return None
    return GPU_SPOT_QUOTAS.get(letters)


@dataclass(frozen=True)
class QuotaValue:
    """A spot quota's name and its value in vCPUs (applied, else AWS's default)."""

    name: str
    vcpus: float


@dataclass(frozen=True)
class QuotaUnreadable:
    """Why the quota could not be read: the check then warns instead of failing."""

    reason: str


def read_quota(service_quotas: Any, quota: SpotQuota) -> QuotaValue | QuotaUnreadable:
    """The account's applied value, else AWS's default (GetServiceQuota has no value for a quota
    that was never changed in some accounts: NoSuchResourceException)."""
    calls = (service_quotas.get_service_quota, service_quotas.get_aws_default_service_quota)
    for call in calls:
        try:
            raw = call(ServiceCode=SERVICE_CODE, QuotaCode=quota.code)["Quota"]
        except ClientError as exc:
            code = error_code(exc)
            if code == "NoSuchResourceException" and call is calls[0]:
                continue
            if code in ("AccessDeniedException", "AccessDenied"):
                return QuotaUnreadable(
                    "no permission to read it (servicequotas:GetServiceQuota and "
                    "servicequotas:GetAWSDefaultServiceQuota)"
                )
            if code.isdigit():
                # No error code, only an HTTP status: an endpoint that does not serve the call.
                return QuotaUnreadable(f"Service Quotas failed with HTTP {code}")
            return QuotaUnreadable(f"Service Quotas answered {code or exc}")
        except BotoCoreError as exc:
            return QuotaUnreadable(f"Service Quotas unreachable ({exc})")
        return QuotaValue(raw.get("QuotaName") or quota.name, float(raw["Value"]))
    return QuotaUnreadable("Service Quotas has no value for it")


def rebalancing_extra(worker_count: int) -> int:
    """Instances the group may run above its size: with capacity rebalancing (terraform's
    capacity_rebalance = true) Auto Scaling launches an at-risk spot instance's replacement
    before it terminates it, and may exceed the maximum size by 10% or one instance, whichever
    is greater ("Capacity Rebalancing" in the EC2 Auto Scaling user guide)."""
    return max(1, math.ceil(worker_count / 10))


def spot_vcpus_in_use(ec2: Any, quota: SpotQuota) -> int:
    """vCPUs of the pending and running spot instances in the region that `quota` counts: they
    use the same quota as the workers will. Their types' vCPUs come from DescribeInstanceTypes
    (the quota counts a type's vCPUs, whatever CPU options an instance was started with)."""
    types: list[str] = []
    pages = ec2.get_paginator("describe_instances").paginate(
        Filters=[{"Name": "instance-state-name", "Values": ["pending", "running"]}]
    )
    for page in pages:
        for reservation in page.get("Reservations", []):
            for instance in reservation.get("Instances", []):
                if instance.get("InstanceLifecycle") == "spot":
                    types.append(instance["InstanceType"])
    counted = [t for t in types if spot_quota_for(t) == quota]
    vcpus = _default_vcpus(ec2, set(counted))
    return sum(vcpus.get(t, 0) for t in counted)


def _default_vcpus(ec2: Any, types: Iterable[str]) -> dict[str, int]:
    names = sorted(types)
    found: dict[str, int] = {}
    for start in range(0, len(names), 100):  # DescribeInstanceTypes takes up to 100 names
        answer = ec2.describe_instance_types(InstanceTypes=names[start : start + 100])
        for info in answer["InstanceTypes"]:
            found[info["InstanceType"]] = int(info["VCpuInfo"]["DefaultVCpus"])
    return found


def console_url(region: str, quota: SpotQuota) -> str:
    return (
        f"https://{region}.console.aws.amazon.com/servicequotas/home/services/"
        f"{SERVICE_CODE}/quotas/{quota.code}"
    )


def quota_check(
    *,
    instance_type: str,
    worker_count: int,
    vcpus: int,
    quota: SpotQuota | None,
    value: QuotaValue | QuotaUnreadable | None,
    region: str,
    in_use: int = 0,
) -> Check:
    """Fails when the group's vCPUs at their most (its workers and the rebalancing extra) plus
    `in_use` (other spot instances of the quota) exceed the quota; a quota that cannot be read
    or is not known for the family is a warning, since the launch may well be fine."""
    extra = rebalancing_extra(worker_count)
    needed = (worker_count + extra) * vcpus + in_use
    needs = (
        f"{worker_count} × {instance_type} needs {worker_count * vcpus} vCPUs, "
        f"{extra * vcpus} more while capacity rebalancing replaces {'an instance' if extra == 1 else f'{extra} instances'}"
    )
    if in_use:
        needs += f", and running spot instances of the quota hold {in_use}"
    needs += f": {needed} in all"
    if quota is None:
        return Check.warned(
            "spot vCPU quota: not checked: the launcher knows the quotas of G, VT and P2 to P4 "
            f"instances only ({needs})"
        )
    if isinstance(value, QuotaUnreadable) or value is None:
        reason = value.reason if value is not None else "not read"
        return Check.warned(
            f"spot vCPU quota: {quota.name} ({quota.code}) not checked: {reason}; {needs}"
        )
    if needed > value.vcpus:
        return Check.failed(
            f'spot vCPU quota: "{value.name}" is {value.vcpus:g} vCPUs in {region}, and '
            f"{needs}; request an increase to at least {needed} at {console_url(region, quota)}"
        )
    return Check.passed(
        f"spot vCPU quota: {value.name} is {value.vcpus:g} vCPUs in {region}; {needs}"
    )
