"""launcher/group.py: AWS's answers read as tables of recorded responses (moto returns no scaling
activities), and the calls against moto's Auto Scaling (real HTTP)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from launcher import aws, group
from launcher.group import Activity, Group
from tests.support.autoscaling import GROUP, make_group

T0 = datetime(2026, 11, 29, 1, 0, tzinfo=UTC)


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def recorded(description: str, cause: str, start: float, end: float | None = None, **extra):
    """An entry of DescribeScalingActivities' Activities, in the shape of AWS's API reference."""
    activity = {
        "ActivityId": "f9f2d65b-f1f2-43e7-b46d-d86756459699",
        "AutoScalingGroupName": GROUP,
        "AutoScalingGroupARN": f"arn:aws:autoscaling:us-east-1:123456789012:autoScalingGroup:"
        f"6ac9d6b4-0000-0000-0000-000000000000:autoScalingGroupName/{GROUP}",
        "Description": description,
        "Cause": cause,
        "StartTime": at(start),
        "StatusCode": "Successful",
        "Progress": 100,
        "Details": '{"Subnet ID":"subnet-0a1b2c3d","Availability Zone":"us-east-1a"}',
    }
    if end is not None:
        activity["EndTime"] = at(end)
    activity.update(extra)
    return activity


# A night of a two-worker batch: the launch, a spot interruption and its replacement, a launch
# that failed on price, a rebalance, and both workers scaling themselves in.
NIGHT = [
    recorded(
        "Launching a new EC2 instance: i-0aaa000000000001",
        "At 2026-11-29T00:59:50Z a user request created an AutoScalingGroup changing the desired "
        "capacity from 0 to 2. At 2026-11-29T01:00:02Z an instance was started in response to a "
        "difference between desired and actual capacity, increasing the capacity from 0 to 2.",
        0,
        1,
    ),
    recorded(
        "Terminating EC2 instance: i-0aaa000000000001",
        "At 2026-11-29T02:10:11Z an instance was taken out of service in response to an EC2 "
        "health check indicating it has been terminated or stopped.",
        70,
        72,
    ),
    recorded(
        "Launching a new EC2 instance.  Status Reason: Could not launch Spot Instances. "
        "SpotMaxPriceTooLow - Your Spot request price of 0.35 is lower than the minimum required "
        "Spot request fulfillment price of 0.3917. Launching EC2 instance failed.",
        "At 2026-11-29T02:12:30Z an instance was started in response to a difference between "
        "desired and actual capacity, increasing the capacity from 1 to 2.",
        72.5,
        72.6,
        StatusCode="Failed",
        StatusMessage="Could not launch Spot Instances. SpotMaxPriceTooLow - Your Spot request "
        "price of 0.35 is lower than the minimum required Spot request fulfillment price of "
        "0.3917. Launching EC2 instance failed.",
    ),
    recorded(
        "Launching a new EC2 instance: i-0bbb000000000002",
        "At 2026-11-29T02:14:30Z an instance was started in response to a difference between "
        "desired and actual capacity, increasing the capacity from 1 to 2.",
        74.5,
        75,
    ),
    recorded(
        "Launching a new EC2 instance: i-0ccc000000000003",
        "At 2026-11-29T03:00:00Z an instance was launched in response to an EC2 instance "
        "rebalance recommendation.",
        120,
        121,
    ),
    recorded(
        "Terminating EC2 instance: i-0bbb000000000002",
        "At 2026-11-29T03:04:00Z an instance was taken out of service in response to an EC2 "
        "instance rebalance recommendation.",
        124,
        126,
    ),
    recorded(
        "Terminating EC2 instance: i-0fff000000000009",
        "At 2026-11-29T04:30:00Z instance i-0fff000000000009 was taken out of service in "
        "response to a user request, shrinking the capacity from 2 to 1.",
        210,
        212,
    ),
    recorded(
        "Terminating EC2 instance: i-0ccc000000000003",
        "At 2026-11-29T04:40:00Z instance i-0ccc000000000003 was taken out of service in "
        "response to a user request, shrinking the capacity from 1 to 0.",
        220,
        222,
    ),
]


def test_a_night_of_activities_in_plain_words() -> None:
    # AWS returns the newest first; the lines read oldest first.
    activities = [group.activity_from_response(raw) for raw in reversed(NIGHT)]

    lines = group.describe_activities(sorted(activities, key=lambda a: a.start))

    assert lines == [
        "2026-11-29 01:00  i-0aaa000000000001 launched (capacity 0 → 2)",
        ("2026-11-29 02:10  i-0aaa000000000001 was interrupted (terminated by EC2, as a reclaimed "
        "spot instance is); the group replaces it"),
        ("2026-11-29 02:12  launch failed: Could not launch Spot Instances. SpotMaxPriceTooLow - "
        "Your Spot request price of 0.35 is lower than the minimum required Spot request "
        "fulfillment price of 0.3917. Launching EC2 instance failed."),
        ("2026-11-29 02:14  i-0bbb000000000002 launched to replace the interrupted "
        "i-0aaa000000000001"),
        ("2026-11-29 03:00  i-0ccc000000000003 launched on a rebalance recommendation, to replace "
        "an instance at raised risk of spot interruption"),
        ("2026-11-29 03:04  i-0bbb000000000002 retired early on a rebalance recommendation (a "
        "raised risk of spot interruption); its replacement was started first"),
        ("2026-11-29 04:30  i-0fff000000000009 scaled in on request (capacity 2 → 1): a worker "
        "that finished the batch (or reached --max-hours) removes its own instance"),
        ("2026-11-29 04:40  i-0ccc000000000003 scaled in on request (capacity 1 → 0): a worker "
        "that finished the batch (or reached --max-hours) removes its own instance"),
    ]


@pytest.mark.parametrize(
    ("raw", "line"),
    [
        (
            recorded(
                "Launching a new EC2 instance: i-0ddd000000000004",
                "At 2026-11-29T05:00:00Z a user request explicitly set group desired capacity "
                "changing the desired capacity from 0 to 2. At 2026-11-29T05:00:05Z an instance "
                "was started in response to a difference between desired and actual capacity, "
                "increasing the capacity from 0 to 2.",
                0,
            ),
            # The last "from A to B" is the instance's own step.
            "2026-11-29 01:00  i-0ddd000000000004 launched (capacity 0 → 2)",
        ),
        (
            recorded(
                "Terminating EC2 instance: i-0eee000000000005",
                "At 2026-11-29T06:00:00Z a user request update of AutoScalingGroup constraints to "
                "min: 0, max: 2, desired: 0 changing the desired capacity from 1 to 0. At "
                "2026-11-29T06:00:10Z an instance was taken out of service in response to a "
                "difference between desired and actual capacity, shrinking the capacity from 1 "
                "to 0.",
                5,
            ),
            # Someone lowered the desired capacity: no worker asked for it.
            ("2026-11-29 01:05  i-0eee000000000005 terminated: the desired capacity was lowered "
            "(capacity 1 → 0)"),
        ),
        (
            recorded(
                "Terminating EC2 instance: i-0eee000000000006",
                "At 2026-11-29T06:00:10Z an instance was taken out of service in response to a "
                "difference between desired and actual capacity, shrinking the capacity from 2 "
                "to 1.",
                6,
            ),
            ("2026-11-29 01:06  i-0eee000000000006 terminated: the desired capacity was lowered "
            "(capacity 2 → 1)"),
        ),
        (
            recorded(
                "Terminating EC2 instance: i-0eee000000000007",
                "At 2026-11-29T06:00:10Z an instance was taken out of service in response to a "
                "user health-check.",
                7,
            ),
            ("2026-11-29 01:07  i-0eee000000000007 terminated: At 2026-11-29T06:00:10Z an "
            "instance was taken out of service in response to a user health-check."),
        ),
        (
            recorded(
                "Launching a new EC2 instance.  Status Reason: We currently do not have "
                "sufficient g4dn.xlarge capacity in the Availability Zone you requested.",
                "At 2026-11-29T06:00:10Z an instance was started in response to a difference "
                "between desired and actual capacity, increasing the capacity from 0 to 1.",
                8,
                StatusCode="Cancelled",
                StatusMessage="We currently do not have sufficient g4dn.xlarge capacity in the "
                "Availability Zone you requested (us-east-1a).",
            ),
            ("2026-11-29 01:08  launch cancelled: We currently do not have sufficient g4dn.xlarge "
            "capacity in the Availability Zone you requested (us-east-1a)."),
        ),
    ],
)
def test_one_activity(raw: dict, line: str) -> None:
    assert group.describe_activities([group.activity_from_response(raw)]) == [line]


def test_group_from_a_recorded_response() -> None:
    raw = {
        "AutoScalingGroupName": GROUP,
        "MinSize": 0,
        "MaxSize": 3,
        "DesiredCapacity": 3,
        "MixedInstancesPolicy": {
            "LaunchTemplate": {
                "LaunchTemplateSpecification": {"LaunchTemplateId": "lt-0123", "Version": "$Latest"},
                "Overrides": [{"InstanceType": "g4dn.xlarge"}, {"InstanceType": "g4dn.2xlarge"}],
            },
            "InstancesDistribution": {
                "OnDemandPercentageAboveBaseCapacity": 0,
                "SpotAllocationStrategy": "price-capacity-optimized",
                "SpotMaxPrice": "0.4",
            },
        },
        "Instances": [
            {"InstanceId": "i-1", "LifecycleState": "InService"},
            {"InstanceId": "i-2", "LifecycleState": "Pending"},
            {"InstanceId": "i-3", "LifecycleState": "Terminating"},
            {"InstanceId": "i-4", "LifecycleState": "InService"},
        ],
    }

    assert group.group_from_response(raw) == Group(GROUP, 3, 0, 3, 2, 4, 0.4)
    raw["MixedInstancesPolicy"]["InstancesDistribution"]["SpotMaxPrice"] = ""
    assert group.group_from_response(raw).spot_max_price is None


@pytest.mark.parametrize(
    ("instance", "expected"),
    [
        ({"InstanceId": "i-1", "State": {"Name": "running"}}, None),
        (
            # The termination activity's end is when billing stopped.
            {
                "InstanceId": "i-0aaa000000000001",
                "State": {"Name": "terminated"},
                "StateTransitionReason": "Service initiated (2026-11-29 02:09:00 GMT)",
            },
            at(72),
        ),
        (
            {
                "InstanceId": "i-gone",
                "State": {"Name": "terminated"},
                "StateTransitionReason": "Service initiated (2026-11-29 02:09:00 GMT)",
            },
            datetime(2026, 11, 29, 2, 9, tzinfo=UTC),
        ),
        (
            # moto writes UTC where EC2 writes GMT.
            {
                "InstanceId": "i-gone",
                "State": {"Name": "shutting-down"},
                "StateTransitionReason": "User initiated (2026-11-29 03:00:01 UTC)",
            },
            datetime(2026, 11, 29, 3, 0, 1, tzinfo=UTC),
        ),
        ({"InstanceId": "i-gone", "State": {"Name": "terminated"}}, None),
    ],
)
def test_ended_at(instance: dict, expected: datetime | None) -> None:
    activities = [group.activity_from_response(raw) for raw in NIGHT]
    assert group.ended_at(instance, activities) == expected


def test_unlisted_instances() -> None:
    activities = [group.activity_from_response(raw) for raw in NIGHT]
    assert group.unlisted_instances(activities, []) == [
        "i-0aaa000000000001",
        "i-0bbb000000000002",
        "i-0ccc000000000003",
    ]


def test_describe_and_raise_a_group_in_moto(aws_env: str) -> None:
    autoscaling = aws.autoscaling_client("us-east-1")
    assert group.describe_group(autoscaling, GROUP) is None
    make_group(desired=0)

    assert group.describe_group(autoscaling, GROUP) == Group(GROUP, 0, 0, 2, 0, 0, 0.4)
    group.raise_group(autoscaling, GROUP, 2)

    found = group.describe_group(autoscaling, GROUP)
    assert (found.desired, found.in_service, found.instances) == (2, 2, 2)
    # moto records no activities; the call and its shape work all the same.
    assert group.scaling_activities(autoscaling, GROUP) == []


def test_group_instances_include_terminated_ones(aws_env: str) -> None:
    make_group(desired=2)
    make_group(desired=1, name="someone-elses-group")
    ec2 = aws.ec2_client("us-east-1")
    runs = group.group_instances(ec2, GROUP, [])
    assert [(run.state, run.ended) for run in runs] == [("running", None), ("running", None)]
    # A worker done with the batch scales its instance in.
    first = runs[0].instance_id
    aws.autoscaling_client("us-east-1").terminate_instance_in_auto_scaling_group(
        InstanceId=first, ShouldDecrementDesiredCapacity=True
    )
    activities = [
        Activity(at(5), at(6), "Successful", f"Terminating EC2 instance: {first}", "", "")
    ]

    after = {run.instance_id: run for run in group.group_instances(ec2, GROUP, activities)}

    assert set(after) == {run.instance_id for run in runs}
    assert after[first].state == "terminated"
    assert after[first].ended == at(6)
    assert {run.instance_type for run in after.values()} == {"g4dn.xlarge"}
