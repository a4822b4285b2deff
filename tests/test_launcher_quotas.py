"""The spot vCPU quota: which quota counts an instance type, reading it through a hand-written
Service Quotas client, the spot instances already using it (moto's EC2), and the decision, as
tables."""

from __future__ import annotations

import pytest

from launcher import aws
from launcher.checks import Check
from launcher.quotas import (
    QuotaUnreadable,
    QuotaValue,
    SpotQuota,
    console_url,
    quota_check,
    read_quota,
    rebalancing_extra,
    spot_quota_for,
    spot_vcpus_in_use,
)
from tests.service_quotas import FakeServiceQuotas
from tests.support.autoscaling import MOTO_AMI

G = SpotQuota("L-3819A6DF", "All G and VT Spot Instance Requests")
P = SpotQuota("L-7212CCBC", "All P Spot Instance Requests")


@pytest.mark.parametrize(
    ("instance_type", "expected"),
    [
        ("g4dn.xlarge", G),
        ("g5.12xlarge", G),
        ("g6e.xlarge", G),
        ("vt1.3xlarge", G),
        # G with more memory per vCPU: counted in the G and VT quota like every G family.
        ("gr6.4xlarge", G),
        ("gr6.8xlarge", G),
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
    ("workers", "in_use", "quota", "value", "expected"),
    [
        (
            1,
            0,
            G,
            QuotaValue(G.name, 0),
            Check.failed(
                'spot vCPU quota: "All G and VT Spot Instance Requests" is 0 vCPUs in eu-west-1, '
                "and 1 × g4dn.xlarge needs 4 vCPUs, 4 more while capacity rebalancing replaces an "
                f"instance: 8 in all; request an increase to at least 8 at {URL}"
            ),
        ),
        (
            # Exactly enough: one worker and the one instance rebalancing may add.
            1,
            0,
            G,
            QuotaValue(G.name, 8),
            Check.passed(
                "spot vCPU quota: All G and VT Spot Instance Requests is 8 vCPUs in eu-west-1; "
                "1 × g4dn.xlarge needs 4 vCPUs, 4 more while capacity rebalancing replaces an "
                "instance: 8 in all"
            ),
        ),
        (
            # The group fits alone, but spot instances of the family already hold 4 vCPUs.
            1,
            4,
            G,
            QuotaValue(G.name, 8),
            Check.failed(
                'spot vCPU quota: "All G and VT Spot Instance Requests" is 8 vCPUs in eu-west-1, '
                "and 1 × g4dn.xlarge needs 4 vCPUs, 4 more while capacity rebalancing replaces an "
                "instance, and running spot instances of the quota hold 4: 12 in all; request an "
                f"increase to at least 12 at {URL}"
            ),
        ),
        (
            # Past ten workers rebalancing may add 10% of them, rounded up.
            11,
            0,
            G,
            QuotaValue(G.name, 52),
            Check.passed(
                "spot vCPU quota: All G and VT Spot Instance Requests is 52 vCPUs in eu-west-1; "
                "11 × g4dn.xlarge needs 44 vCPUs, 8 more while capacity rebalancing replaces 2 "
                "instances: 52 in all"
            ),
        ),
        (
            1,
            0,
            G,
            QuotaUnreadable("no permission"),
            Check.warned(
                "spot vCPU quota: All G and VT Spot Instance Requests (L-3819A6DF) not checked: "
                "no permission; 1 × g4dn.xlarge needs 4 vCPUs, 4 more while capacity rebalancing "
                "replaces an instance: 8 in all"
            ),
        ),
    ],
)
def test_quota_check(
    workers: int,
    in_use: int,
    quota: SpotQuota | None,
    value: QuotaValue | QuotaUnreadable | None,
    expected: Check,
) -> None:
    check = quota_check(
        instance_type="g4dn.xlarge",
        worker_count=workers,
        vcpus=4,
        quota=quota,
        value=value,
        region="eu-west-1",
        in_use=in_use,
    )
    assert check == expected
    assert check.ok == (not expected.line.startswith('spot vCPU quota: "'))


def test_spot_vcpus_in_use_counts_running_spot_instances_of_the_quota(aws_env: str) -> None:
    """Pending and running spot instances whose family the quota counts, at their type's
    default vCPUs (DescribeInstanceTypes); on-demand, stopped and other families do not count."""
    ec2 = aws.ec2_client("us-east-1")

    def run(instance_type: str, spot: bool = True) -> str:
        market = {"InstanceMarketOptions": {"MarketType": "spot"}} if spot else {}
        [instance] = ec2.run_instances(
            ImageId=MOTO_AMI, InstanceType=instance_type, MinCount=1, MaxCount=1, **market
        )["Instances"]
        return instance["InstanceId"]

    run("g4dn.2xlarge")  # 8 vCPUs
    run("gr6.4xlarge")  # 16 vCPUs, the same quota
    run("g5.xlarge", spot=False)  # on demand: another quota
    run("p4d.24xlarge")  # 96 vCPUs, the P quota
    stopped = run("g4dn.xlarge")
    ec2.stop_instances(InstanceIds=[stopped])

    assert spot_vcpus_in_use(ec2, G) == 24
    assert spot_vcpus_in_use(ec2, P) == 96


@pytest.mark.parametrize(("workers", "extra"), [(1, 1), (10, 1), (11, 2), (25, 3)])
def test_rebalancing_may_add_ten_percent_or_one(workers: int, extra: int) -> None:
    assert rebalancing_extra(workers) == extra
