"""The instance's end program (terraform/modules/worker/files/instance_end.py, which UserData
installs root-owned and musicgen-scale-in.service runs) against moto's Auto Scaling and S3 over
HTTP, with the metadata stub giving the instance id: the instance leaves its group, which does
not replace it; a failed boot is recorded in the bucket, counted batch-wide, and sets the group
to 0 after max_failed_boots; a busy group and IAM's first minutes are tried again.

moto never answers ScalingActivityInProgress or ResourceContention and enforces no IAM
propagation delay: those answers come from a wrapper around moto's real client that raises them
as AWS documents them (TerminateInstanceInAutoScalingGroup's and SetDesiredCapacity's API
reference: ResourceContention, ScalingActivityInProgress; AccessDenied for a refused action),
then lets moto answer."""

from __future__ import annotations

import importlib.util
import json
import os
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType

import boto3
import pytest
from botocore.exceptions import ClientError

from tests.imds_stub import ImdsStub
from tests.support.autoscaling import END_PROGRAM, GROUP, group, make_group, run_scale_in

BUCKET = "musicgen-batch-ends"
NOW = datetime(2026, 12, 4, 16, 0, 0, tzinfo=UTC)


def load_end_program() -> ModuleType:
    spec = importlib.util.spec_from_file_location("instance_end", END_PROGRAM)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


instance_end = load_end_program()


class FakeTime:
    """sleep() moves clock(): minutes of backoff in no time."""

    def __init__(self) -> None:
        self.now = 0.0
        self.waits: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.now += seconds

    def clock(self) -> float:
        return self.now


class Answering:
    """moto's client, except that the calls named in `errors` first raise those AWS error codes,
    one per call, in order."""

    def __init__(self, client, **errors: list[str]) -> None:
        self.client, self.errors = client, {name: list(codes) for name, codes in errors.items()}

    def __getattr__(self, name: str):
        call = getattr(self.client, name)

        def answer(**kwargs):
            if self.errors.get(name):
                code = self.errors[name].pop(0)
                raise ClientError({"Error": {"Code": code, "Message": f"{code} from AWS"}}, name)
            return call(**kwargs)

        return answer


def end(imds_url: str, tmp_path: Path, *, failure: str | None = None, autoscaling=None,
        fake: FakeTime | None = None, uptime: float = 10_000.0, **settings: str) -> tuple[int, str]:
    """main() in this process (moto's clients over HTTP), as the instance at `imds_url`; returns
    its status and its output."""
    failure_file = tmp_path / "failure"
    failure_file.unlink(missing_ok=True)
    if failure is not None:
        failure_file.write_text(failure)
    fake = fake or FakeTime()
    environ = {
        "MUSICGEN_IMDS_ENDPOINT": imds_url, "MUSICGEN_BUCKET": BUCKET,
        "MUSICGEN_BOOT_FAILURE_FILE": str(failure_file), "MUSICGEN_RUN_DIR": str(tmp_path / "run"),
        "MUSICGEN_MAX_FAILED_BOOTS": "3", **settings,
    }
    printed = tmp_path / "printed"
    with open(printed, "w") as out:
        saved, sys.stdout = sys.stdout, out
        try:
            status = instance_end.main(
                environ=environ, s3=boto3.client("s3"),
                autoscaling=autoscaling or boto3.client("autoscaling"),
                uptime=lambda: uptime + fake.now, sleep=fake.sleep, clock=fake.clock, now=NOW,
            )
        finally:
            sys.stdout = saved
    return status, printed.read_text()


def record(instance: str) -> dict:
    body = boto3.client("s3").get_object(Bucket=BUCKET, Key=f".boot-failures/{instance}.json")["Body"]
    return json.loads(body.read())


def keys(prefix: str) -> list[str]:
    listed = boto3.client("s3").list_objects_v2(Bucket=BUCKET, Prefix=prefix)
    return sorted(item["Key"] for item in listed.get("Contents", []))


@pytest.fixture
def bucket(aws_env: str) -> str:
    boto3.client("s3").create_bucket(Bucket=BUCKET)
    return BUCKET


# -- as the unit runs it: a process ----------------------------------------------------------


def test_the_instance_leaves_its_group_and_the_desired_capacity_drops(aws_env):
    me, other = make_group(desired=2)
    with ImdsStub(instance_id=me) as imds:
        result = run_scale_in(imds.url)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"scale-in: {me} leaves {GROUP} without replacement" in result.stdout
    after = group()
    assert after["DesiredCapacity"] == 1
    assert [i["InstanceId"] for i in after["Instances"]] == [other]
    (reservation,) = boto3.client("ec2").describe_instances(InstanceIds=[me])["Reservations"]
    assert reservation["Instances"][0]["State"]["Name"] in ("shutting-down", "terminated")

    # The last worker out leaves the group at 0.
    with ImdsStub(instance_id=other) as imds:
        last = run_scale_in(imds.url)
    assert last.returncode == 0, last.stdout + last.stderr
    assert (group()["DesiredCapacity"], group()["Instances"]) == (0, [])


def test_an_instance_outside_any_group_exits_1_and_says_why(aws_env):
    make_group(desired=1)
    loner = boto3.client("ec2").run_instances(ImageId="ami-12c6146b", MinCount=1, MaxCount=1)
    loner_id = loner["Instances"][0]["InstanceId"]
    with ImdsStub(instance_id=loner_id) as imds:
        result = run_scale_in(imds.url)
    assert result.returncode == 1
    assert f"scale-in: {loner_id} is not in an Auto Scaling group; nothing to scale in\n" in result.stdout
    assert group()["DesiredCapacity"] == 1


def test_no_metadata_service_exits_1_and_says_why(aws_env):
    result = run_scale_in(None)
    assert result.returncode == 1
    assert result.stdout == "scale-in: MUSICGEN_IMDS_ENDPOINT is not set: no instance to scale in\n"
    unreachable = run_scale_in("http://127.0.0.1:9")
    assert unreachable.returncode == 1 and "Traceback" not in unreachable.stderr
    assert unreachable.stdout.startswith("scale-in: cannot read the instance id from http://127.0.0.1:9")


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


def test_a_refused_call_exits_1_and_says_why(aws_env, moto_with_iam, monkeypatch):
    """A role that may describe but not terminate (a policy scoped to another group): AWS
    answers AccessDenied, and the instance stays in its group. Past IAM's first minutes (no
    grace here), a refusal is not tried again."""
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
    assert "Traceback" not in result.stderr
    assert f"scale-in: {GROUP}: TerminateInstanceInAutoScalingGroup refused: AccessDenied" in result.stdout
    as_worker = boto3.session.Session().client("autoscaling")  # the default session keeps old keys
    after = group(client=as_worker)
    assert after["DesiredCapacity"] == 1 and [i["InstanceId"] for i in after["Instances"]] == [me]


def test_a_failed_boot_is_recorded_with_its_log_and_the_instance_leaves(bucket, tmp_path):
    """The end program as a process after a failed checkout: the record (If-None-Match: *) in the
    contract's shape, the log with the checkout unit's output in logs/, the scale-in."""
    me, _ = make_group(desired=2)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "checkout.log").write_text("fatal: Authentication failed for 'https://git.example.com/songs.git/'\n")
    failure = tmp_path / "failure"
    failure.write_text("nothing_ran=1\nreason=the git checkout failed: fatal: Authentication failed\n")
    with ImdsStub(instance_id=me) as imds:
        result = run_scale_in(imds.url, MUSICGEN_BUCKET=bucket, MUSICGEN_BOOT_FAILURE_FILE=str(failure),
                              MUSICGEN_RUN_DIR=str(run_dir))
    assert result.returncode == 0, result.stdout + result.stderr
    written = record(me)
    assert datetime.strptime(written.pop("time"), "%Y-%m-%dT%H:%M:%SZ")
    assert written == {
        "instance_id": me, "reason": "the git checkout failed: fatal: Authentication failed",
        "nothing_ran": True, "failed_boots": 1, "group_set_to_zero": False,
    }
    assert group()["DesiredCapacity"] == 1
    (log_key,) = keys(f"logs/{me}-scale-in-")
    log = boto3.client("s3").get_object(Bucket=bucket, Key=log_key)["Body"].read().decode()
    assert "scale-in: this boot failed: the git checkout failed" in log
    assert "fatal: Authentication failed for 'https://git.example.com/songs.git/'" in log
    assert f"{me} leaves {GROUP} without replacement" in log


# -- the decisions, in this process --------------------------------------------------------------


def test_the_group_is_set_to_zero_after_max_failed_boots_that_ran_nothing(bucket, tmp_path):
    """Four instances; three boots that ran nothing (batch-wide records) set the group to 0: the
    fourth instance goes too, and nothing replaces them. Without it the group would keep one."""
    instances = make_group(desired=4, max_size=4)
    seen = []
    for count, instance in enumerate(instances[:3], start=1):
        with ImdsStub(instance_id=instance) as imds:
            status, output = end(imds.url, tmp_path, failure="nothing_ran=1\nreason=GPU 0: error: GPU unusable: x\n")
        assert status == 0, output
        seen.append(record(instance))
        assert seen[-1]["failed_boots"] == count
    assert [r["group_set_to_zero"] for r in seen] == [False, False, True]
    assert "desired capacity set to 0 after 3 failed boots" in output
    after = group()
    assert (after["DesiredCapacity"], after["Instances"]) == (0, [])


def test_boots_that_ran_something_are_recorded_but_never_stop_the_group(bucket, tmp_path):
    instances = make_group(desired=4, max_size=4)
    for instance in instances[:3]:
        with ImdsStub(instance_id=instance) as imds:
            status, output = end(imds.url, tmp_path, failure="nothing_ran=0\nreason=GPU 1: error: GPU unusable: x\n")
        assert status == 0, output
        assert (record(instance)["failed_boots"], record(instance)["group_set_to_zero"]) == (0, False)
    assert group()["DesiredCapacity"] == 1


def test_a_boot_records_its_failure_once(bucket, tmp_path):
    """A second end in the same boot (the unit started again) finds its record (If-None-Match: *
    answers 412) and does not count the boot twice."""
    me, _ = make_group(desired=2)
    with ImdsStub(instance_id=me) as imds:
        first, _ = end(imds.url, tmp_path, failure="nothing_ran=1\nreason=the git checkout failed\n")
        again, output = end(imds.url, tmp_path, failure="nothing_ran=1\nreason=the git checkout failed\n")
    assert (first, again) == (0, 1)  # gone from the group the first time
    assert "exists already" in output
    assert keys(".boot-failures/") == [f".boot-failures/{me}.json"]
    assert record(me)["failed_boots"] == 1


def test_a_busy_group_is_tried_again_for_minutes(bucket, tmp_path):
    """Instances ending together keep the group busy; the instance still leaves, minutes later
    (the old 5 tries gave up after 15 s)."""
    me, _ = make_group(desired=2)
    busy = Answering(boto3.client("autoscaling"), terminate_instance_in_auto_scaling_group=(
        ["ScalingActivityInProgress", "ResourceContention"] * 5))
    fake = FakeTime()
    with ImdsStub(instance_id=me) as imds:
        status, output = end(imds.url, tmp_path, autoscaling=busy, fake=fake)
    assert status == 0, output
    assert group()["DesiredCapacity"] == 1
    assert len(fake.waits) == 10 and 60 < sum(fake.waits) <= 600
    assert max(fake.waits) <= 60


def test_a_group_busy_for_over_ten_minutes_is_given_up(bucket, tmp_path):
    me, _ = make_group(desired=2)
    busy = Answering(boto3.client("autoscaling"), terminate_instance_in_auto_scaling_group=["ResourceContention"] * 100)
    fake = FakeTime()
    with ImdsStub(instance_id=me) as imds:
        status, output = end(imds.url, tmp_path, autoscaling=busy, fake=fake)
    assert status == 1
    assert "TerminateInstanceInAutoScalingGroup refused: ResourceContention" in output
    assert 300 < fake.now <= 600
    assert me in [i["InstanceId"] for i in group()["Instances"]]


@pytest.mark.parametrize(("uptime", "status"), [(30.0, 0), (3600.0, 1)], ids=["first-minutes", "later"])
def test_refusals_in_an_instances_first_minutes_are_tried_again(bucket, tmp_path, uptime, status):
    """IAM is eventually consistent: a new instance's role may be refused at first. Within
    MUSICGEN_IAM_GRACE_S of boot the refusals are tried again; later a refusal is final."""
    me, _ = make_group(desired=2)
    refused = Answering(boto3.client("autoscaling"), describe_auto_scaling_instances=["AccessDenied"] * 3)
    with ImdsStub(instance_id=me) as imds:
        code, output = end(imds.url, tmp_path, autoscaling=refused, uptime=uptime, MUSICGEN_IAM_GRACE_S="300")
    assert code == status, output
    assert (group()["DesiredCapacity"] == 1) == (status == 0)


def test_the_failure_file_is_read_as_one_bounded_line(tmp_path):
    failure = tmp_path / "failure"
    failure.write_text("nothing_ran=1\nreason=" + "x " * 600 + "\n\x00junk")
    read = instance_end.read_failure(failure)
    assert read.nothing_ran is True and len(read.reason) == instance_end.REASON_CHARS
    assert instance_end.read_failure(tmp_path / "missing") is None
