"""`python -m worker.scale_in` as a real process against moto's Auto Scaling (real HTTP), with the
metadata stub giving the instance id: the instance leaves its group, which does not replace it.
A call AWS refuses and an instance outside any group exit 1 with one line."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import boto3
import pytest
from botocore.exceptions import ClientError

from tests.imds_stub import ImdsStub
from tests.support.autoscaling import GROUP, group, make_group, run_scale_in
from worker.scale_in import ScaleInError, group_of, refusal, scale_in


def test_the_instance_leaves_its_group_and_the_desired_capacity_drops(aws_env):
    me, other = make_group(desired=2)
    with ImdsStub(instance_id=me) as imds:
        result = run_scale_in(imds.url)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"scale-in: {me} leaves {GROUP} without replacement")
    assert result.stderr == ""
    after = group()
    assert after["DesiredCapacity"] == 1
    assert [i["InstanceId"] for i in after["Instances"]] == [other]
    (reservation,) = boto3.client("ec2").describe_instances(InstanceIds=[me])["Reservations"]
    assert reservation["Instances"][0]["State"]["Name"] in ("shutting-down", "terminated")

    # The last worker out leaves the group at 0.
    with ImdsStub(instance_id=other) as imds:
        last = run_scale_in(imds.url)
    assert last.returncode == 0, last.stderr
    assert (group()["DesiredCapacity"], group()["Instances"]) == (0, [])


def test_an_instance_outside_any_group_exits_1_with_one_line(aws_env):
    make_group(desired=1)
    loner = boto3.client("ec2").run_instances(ImageId="ami-12c6146b", MinCount=1, MaxCount=1)
    loner_id = loner["Instances"][0]["InstanceId"]
    with ImdsStub(instance_id=loner_id) as imds:
        result = run_scale_in(imds.url)
    assert result.returncode == 1
    assert result.stderr == f"scale-in: {loner_id} is not in an Auto Scaling group; nothing to scale in\n"
    assert group()["DesiredCapacity"] == 1


def test_no_metadata_service_exits_1_with_one_line(aws_env):
    result = run_scale_in(None)
    assert (result.returncode, result.stderr) == (
        1, "scale-in: MUSICGEN_IMDS_ENDPOINT is not set: no instance to scale in\n"
    )
    unreachable = run_scale_in("http://127.0.0.1:9")
    assert unreachable.returncode == 1 and len(unreachable.stderr.splitlines()) == 1
    assert unreachable.stderr.startswith("scale-in: cannot read the instance id from http://127.0.0.1:9")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# make_group's four calls, then CreateUser, PutUserPolicy and CreateAccessKey.
SET_UP_CALLS = 7


@pytest.fixture
def moto_with_iam(tmp_path):
    """A moto server of its own that checks IAM policies after the first SET_UP_CALLS calls
    (the group and the worker's user, made with any credentials), as AWS does for the role."""
    port = free_port()
    env = {**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": str(SET_UP_CALLS)}
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                assert server.poll() is None and time.monotonic() < deadline, "moto did not start"
                time.sleep(0.2)
        yield url
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_a_refused_call_exits_1_with_one_line(aws_env, moto_with_iam, monkeypatch):
    """A role that may describe but not terminate (a policy scoped to another group): AWS
    answers AccessDenied, and the instance stays in its group."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_with_iam)
    me, = make_group(desired=1)
    iam = boto3.client("iam")
    iam.create_user(UserName="worker")
    iam.put_user_policy(
        UserName="worker",
        PolicyName="describe-only",
        PolicyDocument=(
            '{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": '
            '"autoscaling:Describe*", "Resource": "*"}]}'
        ),
    )
    key = iam.create_access_key(UserName="worker")["AccessKey"]
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", key["AccessKeyId"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", key["SecretAccessKey"])
    with ImdsStub(instance_id=me) as imds:
        result = run_scale_in(imds.url)
    assert result.returncode == 1, result.stdout + result.stderr
    assert len(result.stderr.splitlines()) == 1 and "Traceback" not in result.stderr
    assert result.stderr.startswith(
        f"scale-in: {GROUP}: TerminateInstanceInAutoScalingGroup refused: AccessDenied"
    )
    as_worker = boto3.session.Session().client("autoscaling")  # the default session keeps old keys
    after = group(client=as_worker)
    assert after["DesiredCapacity"] == 1 and [i["InstanceId"] for i in after["Instances"]] == [me]


# -- the logic, with a hand-written client -----------------------------------------------------


class AutoScaling:
    """Answers DescribeAutoScalingInstances from `groups`; Terminate fails with `errors` first."""

    def __init__(self, groups: dict[str, str], errors: list[str] = ()):
        self.groups, self.errors, self.terminated = groups, list(errors), []

    def describe_auto_scaling_instances(self, InstanceIds):
        return {"AutoScalingInstances": [
            {"InstanceId": i, "AutoScalingGroupName": self.groups[i]} for i in InstanceIds if i in self.groups
        ]}

    def terminate_instance_in_auto_scaling_group(self, InstanceId, ShouldDecrementDesiredCapacity):
        if self.errors:
            code = self.errors.pop(0)
            raise ClientError({"Error": {"Code": code, "Message": f"{code} says no"}}, "Terminate")
        self.terminated.append((InstanceId, ShouldDecrementDesiredCapacity))
        return {"Activity": {"Description": f"Terminating EC2 instance: {InstanceId}"}}


def test_contention_with_another_scale_in_is_tried_again_and_other_errors_are_not():
    waits = []
    client = AutoScaling({"i-1": "g"}, ["ResourceContention", "ScalingActivityInProgress"])
    assert scale_in(client, "i-1", waits.append) == ("g", "Terminating EC2 instance: i-1")
    assert client.terminated == [("i-1", True)] and waits == [1.0, 2.0]
    refused = AutoScaling({"i-1": "g"}, ["ValidationError"])
    with pytest.raises(ScaleInError, match="^g: TerminateInstanceInAutoScalingGroup refused: ValidationError: ValidationError says no$"):
        scale_in(refused, "i-1", waits.append)
    busy = AutoScaling({"i-1": "g"}, ["ResourceContention"] * 5)
    with pytest.raises(ScaleInError, match="ResourceContention"):
        scale_in(busy, "i-1", lambda s: None)
    assert busy.terminated == []


@pytest.mark.parametrize(
    ("instances", "expected"),
    [([], None), ([{"InstanceId": "i-2", "AutoScalingGroupName": "g"}], None),
     ([{"InstanceId": "i-2", "AutoScalingGroupName": "h"}, {"InstanceId": "i-1", "AutoScalingGroupName": "g"}], "g")],
)
def test_group_of(instances, expected):
    assert group_of(instances, "i-1") == expected


def test_refusal_is_one_line():
    error = ClientError({"Error": {"Code": "AccessDenied", "Message": "User: x\n is not authorized"}}, "Op")
    assert refusal("Op", error) == "Op refused: AccessDenied: User: x is not authorized"
    assert refusal("Op", ClientError({"Error": {"Code": "X"}}, "Op")) == "Op refused: X"
