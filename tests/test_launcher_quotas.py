"""The spot vCPU quota: which quota counts an instance type, reading it through a hand-written
Service Quotas client, and the decision, as tables."""

from __future__ import annotations

import pytest

from launcher.checks import Check
from launcher.quotas import (
    QuotaUnreadable,
    QuotaValue,
    SpotQuota,
    console_url,
    quota_check,
    read_quota,
    spot_quota_for,
)
from tests.service_quotas import FakeServiceQuotas

G = SpotQuota("L-3819A6DF", "All G and VT Spot Instance Requests")
P = SpotQuota("L-7212CCBC", "All P Spot Instance Requests")


@pytest.mark.parametrize(
    ("instance_type", "expected"),
    [
        ("g4dn.xlarge", G),
        ("g5.12xlarge", G),
        ("g6e.xlarge", G),
        ("vt1.3xlarge", G),
        ("p3.2xlarge", P),
        ("p4d.24xlarge", P),
        ("p5.48xlarge", None),
        ("m5.xlarge", None),
        ("inf2.xlarge", None),
        ("G4DN.XLARGE", None),
    ],
)
def test_spot_quota_for(instance_type: str, expected: SpotQuota | None) -> None:
    assert spot_quota_for(instance_type) == expected


@pytest.mark.parametrize(
    ("client", "expected", "calls"),
    [
        pytest.param(
            FakeServiceQuotas(applied={G.code: 32}, defaults={G.code: 0}),
            QuotaValue(G.name, 32),
            ["GetServiceQuota"],
            id="applied value",
        ),
        pytest.param(
            FakeServiceQuotas(defaults={G.code: 0}),
            QuotaValue(G.name, 0),
            ["GetServiceQuota", "GetAWSDefaultServiceQuota"],
            id="no applied value: AWS's default",
        ),
        pytest.param(
            FakeServiceQuotas(),
            QuotaUnreadable("Service Quotas answered NoSuchResourceException"),
            ["GetServiceQuota", "GetAWSDefaultServiceQuota"],
            id="neither",
        ),
        pytest.param(
            FakeServiceQuotas(fail_with="AccessDeniedException"),
            QuotaUnreadable(
                "no permission to read it (servicequotas:GetServiceQuota and "
                "servicequotas:GetAWSDefaultServiceQuota)"
            ),
            ["GetServiceQuota"],
            id="access denied",
        ),
        pytest.param(
            FakeServiceQuotas(fail_with="TooManyRequestsException"),
            QuotaUnreadable("Service Quotas answered TooManyRequestsException"),
            ["GetServiceQuota"],
            id="throttled past the retries",
        ),
    ],
)
def test_read_quota(
    client: FakeServiceQuotas, expected: QuotaValue | QuotaUnreadable, calls: list[str]
) -> None:
    assert read_quota(client, G) == expected
    assert client.calls == [(call, "ec2", G.code) for call in calls]


URL = "https://eu-west-1.console.aws.amazon.com/servicequotas/home/services/ec2/quotas/L-3819A6DF"


def test_console_url() -> None:
    assert console_url("eu-west-1", G) == URL


@pytest.mark.parametrize(
    ("workers", "vcpus", "quota", "value", "expected"),
    [
        (
            1,
            4,
            G,
            QuotaValue(G.name, 0),
            Check.failed(
                'spot vCPU quota: "All G and VT Spot Instance Requests" is 0 vCPUs in eu-west-1, '
                f"and 1 × g4dn.xlarge needs 4 vCPUs; request an increase to at least 4 at {URL}"
            ),
        ),
        (
            2,
            4,
            G,
            QuotaValue(G.name, 8),
            Check.passed(
                "spot vCPU quota: All G and VT Spot Instance Requests is 8 vCPUs in eu-west-1; "
                "2 × g4dn.xlarge needs 8 vCPUs"
            ),
        ),
        (
            3,
            4,
            G,
            QuotaValue(G.name, 8),
            Check.failed(
                'spot vCPU quota: "All G and VT Spot Instance Requests" is 8 vCPUs in eu-west-1, '
                f"and 3 × g4dn.xlarge needs 12 vCPUs; request an increase to at least 12 at {URL}"
            ),
        ),
        (
            1,
            4,
            G,
            QuotaUnreadable("no permission"),
            Check.warned(
                "spot vCPU quota: All G and VT Spot Instance Requests (L-3819A6DF) not checked: "
                "no permission; 1 × g4dn.xlarge needs 4 vCPUs"
            ),
        ),
    ],
)
def test_quota_check(
    workers: int,
    vcpus: int,
    quota: SpotQuota | None,
    value: QuotaValue | QuotaUnreadable | None,
    expected: Check,
) -> None:
    check = quota_check(
        instance_type="g4dn.xlarge",
        worker_count=workers,
        vcpus=vcpus,
        quota=quota,
        value=value,
        region="eu-west-1",
    )
    assert check == expected
    assert check.ok == (not expected.line.startswith('spot vCPU quota: "'))
