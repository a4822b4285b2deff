"""Songs the workers gave up on: failure counts under the batch's `.failures/` that reached the
workers' max attempts for the prompt and duration the prompts file asks for now."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from contract.bucket import BOOKKEEPING_LIMIT, FAILURES_PREFIX
from contract.defaults import DEFAULT_MAX_ATTEMPTS
from contract.policy import failures_by_song, is_given_up
from contract.prompts import Job
from contract.records import Failure
from launcher.screen import at_most


@dataclass(frozen=True)
class FailedSong:
    job: Job
    failure: Failure


def failure_objects(
    s3: Any, bucket: str, prefix: str = "", warn: Callable[[str], None] = lambda line: None
) -> list[tuple[str, bytes]]:
    """(key relative to the prefix, body) of every failure count; one GET each, and there are
    only as many as songs that failed at least once. One larger than any count a worker writes
    is not read, and `warn` names it."""
    pages = s3.get_paginator("list_objects_v2").paginate(
        Bucket=bucket, Prefix=prefix + FAILURES_PREFIX
    )
    objects = []
    for page in pages:
        for item in page.get("Contents", []):
            if item.get("Size", 0) > BOOKKEEPING_LIMIT:
                warn(
                    f"warning: ignored s3://{bucket}/{item['Key']}: {item['Size']} bytes, more "
                    "than any failure count"
                )
                continue
            try:
                body = s3.get_object(Bucket=bucket, Key=item["Key"])["Body"].read()
            except ClientError:
                continue  # removed meanwhile (the line was edited and the song retried)
            objects.append((item["Key"][len(prefix) :], body))
    return objects


def failed_for_good(
    jobs: list[Job],
    objects: list[tuple[str, bytes]],
    max_attempts: int = DEFAULT_MAX_ATTEMPTS,
) -> list[FailedSong]:
    """Missing songs in prompts-file order whose count, for the prompt they have now, reached
    `max_attempts`: the workers consider them done and will not try them again."""
    counts = failures_by_song(objects)
    return [
        FailedSong(job, counts[job.file_name])
        for job in jobs
        if is_given_up(counts.get(job.file_name), job.prompt_hash, max_attempts)
    ]


def format_failed(failed: list[FailedSong]) -> list[str]:
    if not failed:
        return []
    rows = [
        f"    {song.job.file_name}  (line {song.job.line_no}, {song.failure.attempts} "
        f"attempts): {song.failure.error}"
        for song in failed
    ]
    return [
        "  failed for good (the workers do not try them again):",
        *at_most(rows, lambda count: f"    … and {count} more"),
    ]
