"""The account's spot vCPU quota for the workers' instance family, read through Service Quotas.

EC2 counts spot capacity per region in vCPUs of running and requested spot instances, one quota
per family group; new accounts start the GPU groups at 0, and then every spot request fails
with MaxSpotInstanceCountExceeded after terraform has already created the bucket and the role.
The lookups take their client as a parameter; `quota_check` decides, purely.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from launcher.checks import Check

SERVICE_CODE = "ec2"


@dataclass(frozen=True)
class SpotQuota:
    code: str
    name: str


# Names as AWS's EC2 user guide lists the spot quotas; the name the API returns is shown when
# there is one, as AWS renames them (the P group is "All P4, P3 and P2 Spot Instance Requests"
# in newer pages, with P5 split off under a code not listed here).
GPU_SPOT_QUOTAS = {
    "g": SpotQuota("L-3819A6DF", "All G and VT Spot Instance Requests"),
    "vt": SpotQuota("L-3819A6DF", "All G and VT Spot Instance Requests"),
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
            code = exc.response.get("Error", {}).get("Code", "")
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
) -> Check:
    """Fails when the workers' vCPUs exceed the quota; a quota that cannot be read or is not known
    for the family is a warning, since the launch may well be fine."""
    needed = worker_count * vcpus
    needs = f"{worker_count} × {instance_type} needs {needed} vCPUs"
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
