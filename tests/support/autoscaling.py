"""An Auto Scaling group in moto shaped like terraform's worker module declares it: a launch
template, spot over several types, min 0, the default subnets of two zones, the Role tag."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import boto3

GROUP = "musicgen-batch-workers"
MOTO_AMI = "ami-12c6146b"  # one of the images moto registers by itself
ROOT = Path(__file__).resolve().parents[2]
END_PROGRAM = ROOT / "terraform" / "modules" / "worker" / "files" / "instance_end.py"


def make_group(desired: int, max_size: int = 2, name: str = GROUP) -> list[str]:
    """The group with `desired` instances (at most `max_size`); their ids."""
    ec2 = boto3.client("ec2", region_name="us-east-1")
    subnets = ec2.describe_subnets(Filters=[{"Name": "default-for-az", "Values": ["true"]}])
    subnet_ids = [
        s["SubnetId"] for s in subnets["Subnets"] if s["AvailabilityZone"] in ("us-east-1a", "us-east-1b")
    ]
    template = ec2.create_launch_template(
        LaunchTemplateName=f"{name}-template",
        LaunchTemplateData={"ImageId": MOTO_AMI, "InstanceType": "g4dn.xlarge"},
    )["LaunchTemplate"]
    boto3.client("autoscaling", region_name="us-east-1").create_auto_scaling_group(
        AutoScalingGroupName=name,
        MinSize=0,
        MaxSize=max(max_size, desired),
        DesiredCapacity=desired,
        VPCZoneIdentifier=",".join(subnet_ids),
        MixedInstancesPolicy={
            "LaunchTemplate": {
                "LaunchTemplateSpecification": {
                    "LaunchTemplateId": template["LaunchTemplateId"],
                    "Version": "$Latest",
                },
                "Overrides": [{"InstanceType": "g4dn.xlarge"}, {"InstanceType": "g4dn.2xlarge"}],
            },
            "InstancesDistribution": {
                "OnDemandBaseCapacity": 0,
                "OnDemandPercentageAboveBaseCapacity": 0,
                "SpotAllocationStrategy": "price-capacity-optimized",
                "SpotMaxPrice": "0.4",
            },
        },
        Tags=[
            {
                "Key": "Role",
                "Value": "musicgen-batch-worker",
                "PropagateAtLaunch": True,
                "ResourceId": name,
                "ResourceType": "auto-scaling-group",
            }
        ],
    )
    return [instance["InstanceId"] for instance in group(name)["Instances"]]


def group(name: str = GROUP, client: Any = None) -> dict[str, Any]:
    client = client or boto3.client("autoscaling", region_name="us-east-1")
    (found,) = client.describe_auto_scaling_groups(
        AutoScalingGroupNames=[name]
    )["AutoScalingGroups"]
    return found


def run_scale_in(imds_url: str | None, **env: str) -> subprocess.CompletedProcess[str]:
    """The instance's end program (terraform/modules/worker/files/instance_end.py, as the scale-in
    unit runs it) as the instance whose metadata service is at `imds_url`; a boot that did not
    fail unless `env` names a MUSICGEN_BOOT_FAILURE_FILE."""
    environment = {**os.environ, "MUSICGEN_BOOT_FAILURE_FILE": str(ROOT / "no-boot-failure"), **env}
    environment.pop("MUSICGEN_IMDS_ENDPOINT", None)
    if imds_url is not None:
        environment["MUSICGEN_IMDS_ENDPOINT"] = imds_url
    return subprocess.run(
        [sys.executable, str(END_PROGRAM)], cwd=ROOT, env=environment,
        capture_output=True, text=True, timeout=120, check=False,
    )
