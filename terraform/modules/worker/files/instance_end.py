"""The end of a worker instance, run once by musicgen-scale-in.service after its workers (as the
`musicgen` user, in the workers' sandbox): record a failed boot in the bucket, stop the group after
too many of them, and take this instance out of its Auto Scaling group without a replacement.

    /opt/musicgen/venv/bin/python instance_end.py     (settings: /etc/musicgen-batch/worker.env)

UserData installs this file root-owned beside aws_retry.py. It needs nothing from the git
checkout, so an instance whose checkout failed still ends, and says why, instead of powering off
into a replacement that fails the same way.

- A failed boot: the boot unit leaves MUSICGEN_BOOT_FAILURE_FILE (`nothing_ran=0|1`, `reason=...`)
  when the checkout failed or a GPU's worker found its GPU unusable. It becomes
  `.boot-failures/<instance-id>.json` (If-None-Match: *); then the records whose boots ran nothing
  are counted, this one included. At MUSICGEN_MAX_FAILED_BOOTS, after a boot that ran nothing, the
  group's desired capacity is set to 0 (SetDesiredCapacity), and the record says so.
- The instance leaves its group with TerminateInstanceInAutoScalingGroup and
  ShouldDecrementDesiredCapacity, so the group launches nothing in its place.
- Its lines (and, after a failed checkout, the checkout unit's output) go to
  `logs/<instance-id>-scale-in-<UTC time>.log`.

Exit 0 when the instance leaves its group (or the group was set to 0), 1 with the reason when not.
"""

from __future__ import annotations

import json
import os
import sys
import time
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

sys.path.insert(0, str(Path(__file__).resolve().parent))
import aws_retry  # the module beside this file, wherever it is installed

EXIT_OK, EXIT_FAILED = 0, 1
RECORDS = ".boot-failures/"
REASON_CHARS = 500
RECORD_BYTES = 4096  # a record is a few hundred bytes; a bigger object is not one
# Several instances ending together keep the group busy: minutes, not seconds.
GROUP_BUSY_S = 600.0
IMDS_TIMEOUT_S = 2.0


@dataclass(frozen=True)
class Failure:
    """What the boot unit says went wrong on this boot."""

    nothing_ran: bool
    reason: str


@dataclass(frozen=True)
class Settings:
    bucket: str
    imds: str
    max_failed_boots: int
    failure_file: Path
    checkout_log: Path

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> Settings:
        run_dir = Path(environ.get("MUSICGEN_RUN_DIR") or "/run/musicgen-batch")
        try:
            max_failed_boots = max(1, int(environ.get("MUSICGEN_MAX_FAILED_BOOTS") or 3))
        except ValueError:
            max_failed_boots = 3
        return cls(
            bucket=environ.get("MUSICGEN_BUCKET", "").strip(),
            imds=environ.get("MUSICGEN_IMDS_ENDPOINT", "").strip().rstrip("/"),
            max_failed_boots=max_failed_boots,
            failure_file=Path(environ.get("MUSICGEN_BOOT_FAILURE_FILE") or "/run/musicgen-boot/failure"),
            checkout_log=run_dir / "checkout.log",
        )


class Log:
    """The run's lines: printed for the journal and kept for the bucket."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def __call__(self, line: str) -> None:
        print(f"scale-in: {line}", flush=True)
        self.lines.append(f"scale-in: {line}")


def read_failure(path: Path) -> Failure | None:
    """The boot unit's file (root's, read-only here), or None: the boot did not fail."""
    try:
        text = path.read_text(errors="replace")[:2 * REASON_CHARS]
    except OSError:
        return None
    fields = dict(line.partition("=")[::2] for line in text.splitlines() if "=" in line)
    reason = " ".join(fields.get("reason", "").split())[:REASON_CHARS] or "the boot failed"
    return Failure(nothing_ran=fields.get("nothing_ran") == "1", reason=reason)


def instance_id(endpoint: str) -> str | None:
    """This instance's id from the metadata service, the IMDSv2 way (a token first)."""
    token_request = urllib.request.Request(
        f"{endpoint}/latest/api/token", method="PUT",
        headers={"X-aws-ec2-metadata-token-ttl-seconds": "60"},
    )
    with urllib.request.urlopen(token_request, timeout=IMDS_TIMEOUT_S) as answer:
        token = answer.read().decode()
    request = urllib.request.Request(
        f"{endpoint}/latest/meta-data/instance-id", headers={"X-aws-ec2-metadata-token": token}
    )
    with urllib.request.urlopen(request, timeout=IMDS_TIMEOUT_S) as answer:
        return answer.read().decode().strip() or None


class Aws:
    """The calls this program makes, each tried again as aws_retry says."""

    def __init__(self, s3: Any, autoscaling: Any, settles: Callable[[BaseException], bool],
                 say: Callable[[str], None], sleep: Callable[[float], None],
                 clock: Callable[[], float]) -> None:
        self.s3, self.autoscaling, self.settles, self.say = s3, autoscaling, settles, say
        self.sleep, self.clock = sleep, clock

    def call(self, action: Callable[[], Any], group_busy: bool = False) -> Any:
        def should_retry(error: BaseException) -> bool:
            return self.settles(error) or (group_busy and aws_retry.group_busy(error))

        return aws_retry.retry(action, should_retry, GROUP_BUSY_S, say=self.say, sleep=self.sleep,
                               clock=self.clock)

    def group_of(self, instance: str) -> str | None:
        found = self.call(lambda: self.autoscaling.describe_auto_scaling_instances(InstanceIds=[instance]))
        for entry in found.get("AutoScalingInstances", []):
            if entry.get("InstanceId") == instance:
                return entry.get("AutoScalingGroupName")
        return None

    def put(self, bucket: str, key: str, body: bytes, **condition: str) -> str:
        answer = self.call(lambda: self.s3.put_object(
            Bucket=bucket, Key=key, Body=body, ContentType="application/json", **condition))
        return answer["ETag"]

    def nothing_ran_records(self, bucket: str) -> int:
        """Records of boots that ran nothing, batch-wide; unreadable objects do not count."""
        count = 0
        paginator = self.s3.get_paginator("list_objects_v2")
        pages = self.call(lambda: list(paginator.paginate(Bucket=bucket, Prefix=RECORDS)))
        for item in (item for page in pages for item in page.get("Contents", [])):
            if item["Size"] > RECORD_BYTES:
                continue
            body = self.call(lambda key=item["Key"]: self.s3.get_object(Bucket=bucket, Key=key)["Body"].read())
            try:
                count += json.loads(body).get("nothing_ran") is True
            except (ValueError, AttributeError):
                continue
        return count

    def set_to_zero(self, group: str) -> None:
        self.call(lambda: self.autoscaling.set_desired_capacity(
            AutoScalingGroupName=group, DesiredCapacity=0, HonorCooldown=False), group_busy=True)

    def leave(self, instance: str, decrement: bool) -> str:
        answer = self.call(lambda: self.autoscaling.terminate_instance_in_auto_scaling_group(
            InstanceId=instance, ShouldDecrementDesiredCapacity=decrement), group_busy=True)
        return answer.get("Activity", {}).get("Description", "")


def record(aws: Aws, settings: Settings, instance: str, group: str | None, failure: Failure,
           now: datetime, say: Callable[[str], None]) -> bool:
    """Write this boot's record, count, and set the group to 0 when the count says so; returns
    whether it did. The count is taken after writing, so of instances failing together the last
    to count sees them all."""
    key = f"{RECORDS}{instance}.json"
    body = {
        "instance_id": instance,
        "time": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "reason": failure.reason,
        "nothing_ran": failure.nothing_ran,
        "failed_boots": aws.nothing_ran_records(settings.bucket) + failure.nothing_ran,
        "group_set_to_zero": False,
    }
    try:
        etag = aws.put(settings.bucket, key, json.dumps(body).encode(), IfNoneMatch="*")
    except ClientError as error:
        if aws_retry.error_code(error) != "PreconditionFailed":
            raise
        say(f"s3://{settings.bucket}/{key} exists already (an earlier end of this boot); counted once")
        etag = aws.call(lambda: aws.s3.head_object(Bucket=settings.bucket, Key=key))["ETag"]
    counted = aws.nothing_ran_records(settings.bucket)
    zero = failure.nothing_ran and counted >= settings.max_failed_boots and group is not None
    say(f"failed boot recorded in s3://{settings.bucket}/{key}: {failure.reason} "
        f"({counted} failed boot(s) that ran nothing, at most {settings.max_failed_boots})")
    if zero:
        aws.set_to_zero(group)
        say(f"{group}: desired capacity set to 0 after {counted} failed boots: no more instances "
            "until the cause is fixed and the group is raised again")
    if zero or counted != body["failed_boots"]:
        body.update(failed_boots=counted, group_set_to_zero=zero)
        aws.put(settings.bucket, key, json.dumps(body).encode(), IfMatch=etag)
    return zero


def leave_group(aws: Aws, instance: str, group: str, zero: bool, say: Callable[[str], None]) -> bool:
    """Out of the group; after a set to 0 the group ends the instance itself, whatever this call
    answers (it may have ended it already)."""
    if zero and aws.group_of(instance) is None:
        say(f"{group} ends {instance} itself (desired capacity 0)")
        return True
    try:
        activity = aws.leave(instance, decrement=not zero)
    except (ClientError, BotoCoreError) as error:
        if zero:
            say(f"{group} ends {instance} itself (desired capacity 0): {aws_retry.describe(error)}")
            return True
        say(f"{group}: TerminateInstanceInAutoScalingGroup refused: {aws_retry.describe(error)}")
        return False
    say(f"{instance} leaves {group} without replacement (desired capacity -1): {activity}")
    return True


def end(aws: Aws, settings: Settings, instance: str, failure: Failure | None, now: datetime,
        say: Callable[[str], None]) -> int:
    group = aws.group_of(instance)
    if group is None:
        say(f"{instance} is not in an Auto Scaling group; nothing to scale in")
    zero = False
    if failure is not None and settings.bucket:
        try:
            zero = record(aws, settings, instance, group, failure, now, say)
        except (ClientError, BotoCoreError) as error:
            say(f"cannot record the failed boot in s3://{settings.bucket}: {aws_retry.describe(error)}")
    if group is None:
        return EXIT_FAILED
    return EXIT_OK if leave_group(aws, instance, group, zero, say) else EXIT_FAILED


def upload_log(aws: Aws, settings: Settings, instance: str, lines: list[str], failure: Failure | None,
               now: datetime, say: Callable[[str], None]) -> None:
    text = "\n".join(lines) + "\n"
    if failure is not None and settings.checkout_log.is_file():
        text += "--- the checkout unit's output ---\n" + settings.checkout_log.read_text(errors="replace")
    key = f"logs/{instance}-scale-in-{now.strftime('%Y%m%dT%H%M%SZ')}.log"
    try:
        aws.call(lambda: aws.s3.put_object(Bucket=settings.bucket, Key=key, Body=text.encode()))
    except (ClientError, BotoCoreError) as error:
        say(f"cannot upload s3://{settings.bucket}/{key}: {aws_retry.describe(error)}")


def main(argv: list[str] | None = None, *, environ: Mapping[str, str] = os.environ, s3: Any = None,
         autoscaling: Any = None, uptime: Callable[[], float] = aws_retry.uptime_s,
         sleep: Callable[[float], None] = time.sleep, clock: Callable[[], float] = time.monotonic,
         now: datetime | None = None) -> int:
    if argv:
        print("usage: instance_end.py (settings from the environment)", file=sys.stderr)
        return 2
    settings, say, now = Settings.from_environ(environ), Log(), now or datetime.now(UTC)
    failure = read_failure(settings.failure_file)
    if failure is not None:
        say(f"this boot failed: {failure.reason}")
    if not settings.imds:
        say("MUSICGEN_IMDS_ENDPOINT is not set: no instance to scale in")
        return EXIT_FAILED
    try:
        instance = instance_id(settings.imds)
    except OSError as error:
        say(f"cannot read the instance id from {settings.imds}: {error}")
        return EXIT_FAILED
    if instance is None:
        say(f"the metadata service at {settings.imds} has no instance id")
        return EXIT_FAILED
    if s3 is None or autoscaling is None:
        import boto3

        session = boto3.session.Session(region_name=environ.get("AWS_REGION") or None)
        config = Config(retries={"mode": "standard"})
        s3 = s3 or session.client("s3", config=config)
        autoscaling = autoscaling or session.client("autoscaling", config=config)
    aws = Aws(s3, autoscaling, aws_retry.refused_while_iam_settles(environ, uptime), say, sleep, clock)
    try:
        status = end(aws, settings, instance, failure, now, say)
    except (ClientError, BotoCoreError) as error:
        say(f"cannot scale in: {aws_retry.describe(error)}")
        status = EXIT_FAILED
    if settings.bucket:
        upload_log(aws, settings, instance, say.lines, failure, now, say)
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
