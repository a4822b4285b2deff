"""`python -m worker.scale_in`: this instance leaves its Auto Scaling group for good.

It reads its instance id from the metadata service (IMDSv2, MUSICGEN_IMDS_ENDPOINT), finds its
group with DescribeAutoScalingInstances and calls TerminateInstanceInAutoScalingGroup on itself
with ShouldDecrementDesiredCapacity, so the group does not launch a replacement: the last worker
out leaves the group at 0. The instance's boot unit runs it once the batch is done.

Exit 0 when the call succeeded; 1 with one line on stderr when it did not (not on EC2, not in a
group, the call refused). AWS answers ResourceContention or ScalingActivityInProgress while
another change to the group is under way (workers of several instances finishing together):
those are tried again a few times.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterable, Sequence

from botocore.exceptions import BotoCoreError, ClientError

from . import aws
from .imds import Imds

EXIT_OK, EXIT_FAILED = 0, 1
RETRIED_CODES = frozenset({"ResourceContention", "ScalingActivityInProgress"})
TRIES = 5


class ScaleInError(Exception):
    """Why the instance could not leave its group, in one line."""


def group_of(instances: Iterable[dict], instance_id: str) -> str | None:
    """The group holding `instance_id`, from DescribeAutoScalingInstances' AutoScalingInstances."""
    for instance in instances:
        if instance.get("InstanceId") == instance_id:
            return instance.get("AutoScalingGroupName")
    return None


def refusal(action: str, error: ClientError) -> str:
    """One line naming the call, AWS's error code and its message."""
    details = error.response.get("Error", {})
    code = details.get("Code", "error")
    message = " ".join(str(details.get("Message", "")).split())
    return f"{action} refused: {code}: {message}" if message else f"{action} refused: {code}"


def scale_in(client, instance_id: str, sleep: Callable[[float], None] = time.sleep) -> tuple[str, str]:
    """Terminate `instance_id` in its group, decrementing the desired capacity; returns the group
    and AWS's description of the activity. Raises ScaleInError."""
    try:
        found = client.describe_auto_scaling_instances(InstanceIds=[instance_id])
    except ClientError as error:
        raise ScaleInError(refusal("DescribeAutoScalingInstances", error)) from None
    group = group_of(found.get("AutoScalingInstances", []), instance_id)
    if group is None:
        raise ScaleInError(f"{instance_id} is not in an Auto Scaling group; nothing to scale in")
    for attempt in range(TRIES):
        try:
            answer = client.terminate_instance_in_auto_scaling_group(
                InstanceId=instance_id, ShouldDecrementDesiredCapacity=True
            )
        except ClientError as error:
            code = error.response.get("Error", {}).get("Code")
            if code in RETRIED_CODES and attempt + 1 < TRIES:
                sleep(2.0**attempt)
                continue
            raise ScaleInError(f"{group}: {refusal('TerminateInstanceInAutoScalingGroup', error)}") from None
        return group, answer.get("Activity", {}).get("Description", "")
    raise AssertionError("unreachable")


def main(argv: Sequence[str] | None = None, *, autoscaling_client=None, sleep=time.sleep) -> int:
    if argv:
        print("usage: python -m worker.scale_in (settings from the environment)", file=sys.stderr)
        return 2
    endpoint = os.environ.get("MUSICGEN_IMDS_ENDPOINT", "").strip()
    if not endpoint:
        print("scale-in: MUSICGEN_IMDS_ENDPOINT is not set: no instance to scale in", file=sys.stderr)
        return EXIT_FAILED
    try:
        instance_id = Imds(endpoint).instance_id()
    except OSError as error:
        print(f"scale-in: cannot read the instance id from {endpoint}: {error}", file=sys.stderr)
        return EXIT_FAILED
    if instance_id is None:
        print(f"scale-in: the metadata service at {endpoint} has no instance id", file=sys.stderr)
        return EXIT_FAILED
    try:
        group, activity = scale_in((autoscaling_client or aws.autoscaling_client)(), instance_id, sleep)
    except ScaleInError as error:
        print(f"scale-in: {error}", file=sys.stderr)
        return EXIT_FAILED
    except BotoCoreError as error:  # no credentials, endpoint out of reach
        print(f"scale-in: {' '.join(str(error).split())}", file=sys.stderr)
        return EXIT_FAILED
    print(f"scale-in: {instance_id} leaves {group} without replacement (desired capacity -1): {activity}")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
