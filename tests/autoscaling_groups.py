"""An Auto Scaling group in moto, as terraform's worker module declares one (launch template,
min 0), for the scale-in tests."""

from __future__ import annotations

import boto3

GROUP = "musicgen-batch-workers"


def make_group(desired: int) -> list[str]:
    """A launch template and a group of `desired` instances; their ids."""
    ec2 = boto3.client("ec2")
    image = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    ec2.create_launch_template(
        LaunchTemplateName="musicgen-batch-worker",
        LaunchTemplateData={"ImageId": image, "InstanceType": "g4dn.xlarge"},
    )
    autoscaling = boto3.client("autoscaling")
    autoscaling.create_auto_scaling_group(
        AutoScalingGroupName=GROUP,
        LaunchTemplate={"LaunchTemplateName": "musicgen-batch-worker", "Version": "$Latest"},
        MinSize=0,
        MaxSize=4,
        DesiredCapacity=desired,
        AvailabilityZones=["us-east-1a"],
    )
    return [instance["InstanceId"] for instance in group()["Instances"]]


def group(client=None) -> dict:
    (found,) = (client or boto3.client("autoscaling")).describe_auto_scaling_groups(
        AutoScalingGroupNames=[GROUP]
    )["AutoScalingGroups"]
    return found
