"""`python launcher --yes` drives the REAL terraform over a copy of terraform/ against moto.

The launch is the real-terraform tier's one apply (tests/support/terraform_launch.py), which
tests/test_terraform.py checks further and destroys; the tests here run in file order: launch, a
second run, status, then (after every test that reads the launch as it was) a scale-in and the
offer to raise.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator

import pytest

from launcher import aws
from tests import tf_support
from tests.support.launcher import CALM_MARKET, GIT, REPORT, Launcher, Result
from tests.support.terraform_launch import TerraformLaunch

pytestmark = [
    pytest.mark.terraform,
    pytest.mark.slow,
    pytest.mark.xdist_group("terraform"),
    pytest.mark.filterwarnings("ignore:The 'warn' method is deprecated"),
]

SKIP_REASON = tf_support.skip_reason()
if SKIP_REASON is None and 'variable "instance_types"' not in (
    tf_support.TERRAFORM_DIR / "variables.tf"
).read_text():
    SKIP_REASON = (
        "LAUNCHER GROUP TESTS NOT RUN: terraform/ declares no instance_types (it predates the "
        "workers' Auto Scaling group)"
    )
ROLE = {"Key": "Role", "Value": "musicgen-batch-worker"}


@pytest.fixture(scope="module")
def launch(request: pytest.FixtureRequest) -> Iterator[TerraformLaunch]:
    """The session's one real launch (tests/support/terraform_launch.py), in the launcher's
    environment for this module's tests."""
    if SKIP_REASON:
        pytest.skip(SKIP_REASON)
    shared: TerraformLaunch = request.getfixturevalue("shared_terraform_launch")
    with shared.environment():
        yield shared


def workers() -> list[dict]:
    pages = (
        aws.ec2_client("us-east-1")
        .get_paginator("describe_instances")
        .paginate(Filters=[{"Name": "tag:Role", "Values": [ROLE["Value"]]}])
    )
    return [i for page in pages for r in page["Reservations"] for i in r["Instances"]]


def outputs(launch: TerraformLaunch) -> dict:
    raw = tf_support.run_terraform(["output", "-json"], launch.terraform_dir, launch.env).stdout
    return {name: item["value"] for name, item in json.loads(raw).items()}


def the_group(name: str) -> dict:
    autoscaling = aws.autoscaling_client("us-east-1")
    [found] = autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=[name])[
        "AutoScalingGroups"
    ]
    return found


def test_yes_applies_a_group_of_tagged_spot_workers_at_the_max_price(launch: TerraformLaunch) -> None:
    assert launch.result.code == 0, launch.result.err
    assert launch.result.err == ""
    values = outputs(launch)
    bucket, name = values["bucket_name"], values["autoscaling_group_name"]
    assert "instance_ids" not in values
    assert launch.result.out.endswith(
        "Variables for terraform written to terraform/launcher.auto.tfvars.json\n"
        "\n"
        f"Launched: Auto Scaling group {name}, 2 × g4dn.xlarge or g4dn.2xlarge spot; it starts the "
        "workers and replaces interrupted ones\n"
        f"Bucket:   {bucket}\n"
        "Next steps:\n"
        "  follow progress:  .venv/bin/python launcher status\n"
        f"  songs appear in:  s3://{bucket}/  (cost report: s3://{bucket}/cost_report.csv, "
        f"run logs: s3://{bucket}/logs/)\n"
        "Each instance costs money until its workers finish the batch (or after 6 h) and scale "
        "it in; the bucket and the group stay until you run: terraform -chdir=terraform destroy\n"
    )
    applied = json.loads((launch.terraform_dir / "launcher.auto.tfvars.json").read_text())
    assert applied["instance_types"] == ["g4dn.xlarge", "g4dn.2xlarge"]
    # CALM_MARKET within the max $0.35/h: us-east-1a and us-east-1c.
    assert applied["availability_zones"] == ["us-east-1a", "us-east-1c"]
    assert (applied["keep_alive"], applied["max_hours"]) == (False, 6)
    # The commit the checks compared, which the real terraform's git_ref validation accepts.
    assert re.fullmatch(r"[0-9a-f]{40}", applied["git_ref"])

    group = the_group(name)
    assert (group["DesiredCapacity"], group["MaxSize"]) == (2, 2)
    distribution = group["MixedInstancesPolicy"]["InstancesDistribution"]
    assert float(distribution["SpotMaxPrice"]) == 0.35
    ec2 = aws.ec2_client("us-east-1")
    subnets = ec2.describe_subnets(SubnetIds=group["VPCZoneIdentifier"].split(","))["Subnets"]
    assert sorted(s["AvailabilityZone"] for s in subnets) == ["us-east-1a", "us-east-1c"]
    overrides = group["MixedInstancesPolicy"]["LaunchTemplate"]["Overrides"]
    assert [o["InstanceType"] for o in overrides] == ["g4dn.xlarge", "g4dn.2xlarge"]
    found = workers()
    assert len(found) == 2
    for worker in found:
        assert worker["State"]["Name"] == "running"
        assert ROLE in worker["Tags"]


def test_a_second_launch_finds_the_group_and_applies_nothing(launch: TerraformLaunch) -> None:
    values = outputs(launch)
    name, bucket = values["autoscaling_group_name"], values["bucket_name"]

    result = Launcher(prices=CALM_MARKET)(
        "--yes", *GIT, "--terraform-dir", str(launch.terraform_dir), tty=False
    )

    assert result == Result(
        0,
        f"Group {name} in us-east-1: desired 2, in service 2 (min 0, max 2)\n"
        f"Songs in s3://{bucket}/: 0 written, 2 missing, 0 failed for good (of 2 in prompts.txt)\n"
        "The group already wants 2 workers and replaces interrupted ones by itself. Follow it "
        "with `.venv/bin/python launcher status`.\n",
        "",
    )
    assert len(workers()) == 2


def test_status_shows_the_group_and_the_batch(launch: TerraformLaunch) -> None:
    values = outputs(launch)
    name, bucket = values["autoscaling_group_name"], values["bucket_name"]
    s3 = aws.s3_client("us-east-1")
    # The bucket only allows TLS, which moto enforces on object calls; its endpoint is HTTP. The
    # policy goes back afterwards: tests/test_terraform.py checks it.
    policy = s3.get_bucket_policy(Bucket=bucket)["Policy"]
    s3.delete_bucket_policy(Bucket=bucket)
    try:
        s3.put_object(Bucket=bucket, Key="synthwave.wav", Body=b"RIFF")
        s3.put_object(Bucket=bucket, Key="cost_report.csv", Body=REPORT.encode())
        found = workers()

        result = Launcher(prices=CALM_MARKET)(
            "status", "--terraform-dir", str(launch.terraform_dir)
        )
    finally:
        s3.put_bucket_policy(Bucket=bucket, Policy=policy)

    assert result.code == 0, result.err
    lines = result.out.splitlines()
    assert lines[:3] == [
        f"Group {name} in us-east-1: desired 2, in service 2 (min 0, max 2)",
        "  no scaling activities recorded",
        "  instances it ran:",
    ]
    # moto leaves the type of a group's instance empty when it comes from an override.
    assert sorted(line.split()[:2] for line in lines[4:6]) == sorted(
        [worker["InstanceId"], "running"] for worker in found
    )
    # The tests' clock is before moto's launch time: no uptime, nothing accrued yet.
    assert lines[6:] == [
        "    accrued so far (upper bound, at the max price): $0.00",
        "    accrued so far at the actual spot price: $0.00",
        "    (compute only: EBS volumes and data transfer are billed on top, in neither figure)",
        f"Songs in s3://{bucket}/: 1 of 2 done, 1 missing",
        "  done:",
        "    synthwave.wav",
        "  missing:",
        "    lofi_rain.wav  (line 3, 240 s)",
        "cost_report.csv: 1 song, total estimated cost $0.0335",
    ]


# First of the changes: the group is back at 2 workers afterwards.
@pytest.mark.changes_shared_launch(step=1)
def test_after_a_scale_in_the_launcher_raises_the_group_again(launch: TerraformLaunch) -> None:
    name = outputs(launch)["autoscaling_group_name"]
    worker = workers()[0]
    # What a worker does when it stops with songs left (its --max-hours reached).
    aws.autoscaling_client("us-east-1").terminate_instance_in_auto_scaling_group(
        InstanceId=worker["InstanceId"], ShouldDecrementDesiredCapacity=True
    )
    assert the_group(name)["DesiredCapacity"] == 1

    result = Launcher(prices=CALM_MARKET)(
        "--yes", *GIT, "--terraform-dir", str(launch.terraform_dir), tty=False
    )

    assert result.code == 0, result.err
    assert result.out.endswith(
        "Raise the group from 1 to 2 workers? [y/N] yes (--yes)\n"
        f"Desired capacity of {name} set to 2: Auto Scaling launches the workers, which resume "
        "the missing songs. Follow them with `.venv/bin/python launcher status`.\n"
    )
    assert the_group(name)["DesiredCapacity"] == 2
