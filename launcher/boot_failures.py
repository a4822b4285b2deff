"""Failed boots: the records an instance's root end program leaves in the bucket when its
checkout failed or a GPU's worker found the GPU unusable (`.boot-failures/<instance-id>.json`,
written once with If-None-Match), read back for `launcher status` and the raise offer.

After `max_failed_boots` such boots in which nothing ran, the end program sets the group's
desired capacity to 0 and says so in its record: replacements would fail the same way. The
reading takes its S3 client; parsing and formatting are pure.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from botocore.exceptions import ClientError

from contract.aws import error_code
from contract.bucket import BOOT_FAILURES_PREFIX

# The contract bounds a reason to 500 characters; a record is far below this. A larger object is
# not one of the end program's records, and is not read whole.
MAX_RECORD_BYTES = 64 * 1024
# Records read (newest first, by their upload time); older ones are only counted.
MAX_READ = 50
SHOWN = 10
REASON_WIDTH = 200


@dataclass(frozen=True)
class BootFailure:
    instance_id: str
    time: datetime | None
    reason: str
    nothing_ran: bool
    failed_boots: int | None
    group_set_to_zero: bool


def parse_record(body: bytes) -> BootFailure | None:
    """A record as CONTRACT's format has it; None for anything else."""
    try:
        data = json.loads(body)
    except ValueError:
        return None
    if not isinstance(data, dict) or not isinstance(data.get("instance_id"), str):
        return None
    try:
        time = datetime.fromisoformat(str(data.get("time", "")))
    except ValueError:
        time = None
    failed = data.get("failed_boots")
    return BootFailure(
        instance_id=data["instance_id"],
        time=time,
        reason=" ".join(str(data.get("reason") or "no reason recorded").split()),
        nothing_ran=data.get("nothing_ran") is True,
        failed_boots=failed if isinstance(failed, int) and not isinstance(failed, bool) else None,
        group_set_to_zero=data.get("group_set_to_zero") is True,
    )


@dataclass(frozen=True)
class BootFailures:
    records: list[BootFailure]  # newest first
    unreadable: int  # objects under the prefix that are not records, or too large
    older: int  # records not read (beyond MAX_READ)


def read_boot_failures(s3: Any, bucket: str, prefix: str = "") -> BootFailures:
    listed = [
        item
        for page in s3.get_paginator("list_objects_v2").paginate(
            Bucket=bucket, Prefix=prefix + BOOT_FAILURES_PREFIX
        )
        for item in page.get("Contents", [])
    ]
    listed.sort(key=lambda item: item["LastModified"], reverse=True)
    records, unreadable = [], 0
    for item in listed[:MAX_READ]:
        if item["Size"] > MAX_RECORD_BYTES:
            unreadable += 1
            continue
        try:
            body = s3.get_object(Bucket=bucket, Key=item["Key"])["Body"].read(MAX_RECORD_BYTES)
        except ClientError as exc:
            if error_code(exc) in ("NoSuchKey", "404"):
                continue  # removed meanwhile
            raise
        record = parse_record(body)
        if record is None:
            unreadable += 1
        else:
            records.append(record)
    records.sort(key=lambda r: r.time.timestamp() if r.time else 0.0, reverse=True)
    return BootFailures(records, unreadable, max(0, len(listed) - MAX_READ))


def format_boot_failures(
    found: BootFailures, *, where: str, desired: int | None, program: str
) -> list[str]:
    """The records, newest first and a screenful at most, whether the group was set to 0
    because of them, and what to do. `where` is the records' s3:// folder; `desired` the
    group's desired capacity now (None without a group)."""
    total = len(found.records) + found.older
    if not total and not found.unreadable:
        return []
    rows = [_row(record) for record in found.records]
    shown = rows if total <= SHOWN else rows[: SHOWN - 1]
    lines = [f"Failed boots recorded in {where} (UTC, newest first): {total}", *shown]
    if total > len(shown):
        lines.append(f"  … and {total - len(shown)} older")
    if found.unreadable:
        lines.append(f"  {found.unreadable} other object(s) there are not boot failure records")
    zeroed = group_zeroed(found)
    if zeroed is not None:
        after = f" after {zeroed.failed_boots} failed boots" if zeroed.failed_boots else ""
        when = f" at {_time(zeroed.time)}" if zeroed.time else ""
        lines.append(
            f"  The group was set to 0 by {zeroed.instance_id}{when}{after} in which nothing "
            "ran, so no replacement would boot the same way"
            + (f"; it has been raised since (desired {desired})." if desired else ".")
        )
    if found.records:
        lines.append(
            "  What to do: fix the cause above (push the fix to the git remote, or build and "
            f"name another AMI), then run `{program}`: it offers to raise the group back to "
            "its worker count."
        )
    return lines


def clear(s3: Any, bucket: str, prefix: str = "") -> int:
    """Remove every object under the records' prefix; returns how many. The end program counts
    the records it finds, so a raise after the cause is fixed starts that count again (each
    boot's own log stays in logs/)."""
    keys = [
        {"Key": item["Key"]}
        for page in s3.get_paginator("list_objects_v2").paginate(
            Bucket=bucket, Prefix=prefix + BOOT_FAILURES_PREFIX
        )
        for item in page.get("Contents", [])
    ]
    # DeleteObjects takes at most 1000 keys a call (S3 API reference).
    for start in range(0, len(keys), 1000):
        s3.delete_objects(Bucket=bucket, Delete={"Objects": keys[start : start + 1000], "Quiet": True})
    return len(keys)


def group_zeroed(found: BootFailures) -> BootFailure | None:
    """The newest record that set the group to 0, if any."""
    return next((r for r in found.records if r.group_set_to_zero), None)


def _row(record: BootFailure) -> str:
    reason = record.reason
    if len(reason) > REASON_WIDTH:
        reason = reason[: REASON_WIDTH - 1] + "…"
    ran = "nothing ran: " if record.nothing_ran else ""
    return f"  {_time(record.time) if record.time else 'time unknown    '}  {record.instance_id}  {ran}{reason}"


def _time(time: datetime | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M") if time else "?"
