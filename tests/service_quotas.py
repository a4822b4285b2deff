"""A hand-written Service Quotas client: moto does not implement EC2's quotas.

It answers the two calls the launcher makes with the shapes and error codes of the real API
(GetServiceQuota, GetAWSDefaultServiceQuota), and records what it was asked.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from botocore.exceptions import ClientError

NAMES = {
    "L-3819A6DF": "All G and VT Spot Instance Requests",
    "L-7212CCBC": "All P Spot Instance Requests",
}


def _error(code: str, operation: str) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": f"{code} (fake)"}}, operation)


@dataclass
class FakeServiceQuotas:
    # Applied values by quota code; a code absent here raises NoSuchResourceException, as
    # GetServiceQuota does for a quota it has no applied value for.
    applied: dict[str, float] = field(default_factory=dict)
    defaults: dict[str, float] = field(default_factory=dict)
    # An error code every call raises instead (AccessDeniedException, ...).
    fail_with: str | None = None
    calls: list[tuple[str, str, str]] = field(default_factory=list)

    def get_service_quota(self, *, ServiceCode: str, QuotaCode: str) -> dict:
        return self._answer("GetServiceQuota", ServiceCode, QuotaCode, self.applied)

    def get_aws_default_service_quota(self, *, ServiceCode: str, QuotaCode: str) -> dict:
        return self._answer("GetAWSDefaultServiceQuota", ServiceCode, QuotaCode, self.defaults)

    def _answer(self, operation: str, service: str, code: str, values: dict[str, float]) -> dict:
        self.calls.append((operation, service, code))
        if self.fail_with:
            raise _error(self.fail_with, operation)
        if service != "ec2" or code not in values:
            raise _error("NoSuchResourceException", operation)
        return {
            "Quota": {
                "ServiceCode": service,
                "QuotaCode": code,
                "QuotaName": NAMES.get(code, code),
                "Value": values[code],
                "Unit": "None",
                "Adjustable": True,
            }
        }
