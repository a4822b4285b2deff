"""The layout of a batch's output, an S3 prefix or a local folder: where the songs, the cost
report, the listening page and every kind of bookkeeping go, which keys are bookkeeping, how an
`s3://bucket/prefix` is read, and how much of a bookkeeping object is read.

Songs live at the output's top level under their file names (a song's name never starts with a
dot: contract.prompts refuses one). Everything the workers and the instances keep for
themselves lives under a folder whose name starts with a dot, so a leading dot is what sets
bookkeeping apart from songs, for any such folder to come too. The instances' programs, which
run before the worker's code is checked out (terraform/modules/worker/files/), restate the
prefixes they write; tests/test_bucket_layout.py compares them with these.
"""

from __future__ import annotations

import re

# What a run writes beside the songs, at the output's top level.
REPORT_KEY = "cost_report.csv"
PAGE_KEY = "index.html"
# Logs the instances upload (the worker's run logs, the scale-in log): copied by `download
# --logs` only.
LOGS_PREFIX = "logs/"

# Bookkeeping, one folder per kind, each object named after the song (or instance) it is about.
RECORDS_PREFIX = ".records/"  # a song's record: generation time, cost, waveform (records.py)
LEASES_PREFIX = ".leases/"  # who is generating a song (records.Lease)
CHECKPOINTS_PREFIX = ".checkpoints/"  # a song's codes so far (records.Checkpoint)
FAILURES_PREFIX = ".failures/"  # a song's failed attempts (records.Failure)
DAMAGED_PREFIX = ".damaged/"  # damaged songs set aside, kept for the user
BOOT_FAILURES_PREFIX = ".boot-failures/"  # instances whose boot ran no worker
BOOKKEEPING_PREFIXES = (
    RECORDS_PREFIX, LEASES_PREFIX, CHECKPOINTS_PREFIX, FAILURES_PREFIX, DAMAGED_PREFIX,
    BOOT_FAILURES_PREFIX,
)

# Records, leases and failure counts are a few kilobytes (a record's longest parts are a
# 2000-character prompt and a 200-point waveform); one larger than this was not written by a
# worker, and reading it whole could exhaust memory. Checkpoints have a bound of their own
# (records.checkpoint_size_limit).
BOOKKEEPING_LIMIT = 1024 * 1024

# The characters botocore lets through to S3, checked so that a typo gets one line instead of
# botocore's validation regex (S3 itself then answers for the stricter rules).
BUCKET_NAME = re.compile(r"[A-Za-z0-9._-]{1,255}")


def is_bookkeeping(key: str) -> bool:
    """Whether `key` (relative to the output) is the workers' or the instances' own: useless in
    a songs folder and, for checkpoints, large. Any dot folder counts, also one to come."""
    return key.startswith(".")


def record_key(file_name: str) -> str:
    return f"{RECORDS_PREFIX}{file_name}.json"


def lease_key(file_name: str) -> str:
    return f"{LEASES_PREFIX}{file_name}.json"


def checkpoint_key(file_name: str) -> str:
    return f"{CHECKPOINTS_PREFIX}{file_name}.json"


def failure_key(file_name: str) -> str:
    return f"{FAILURES_PREFIX}{file_name}.json"


def failure_file_name(key: str) -> str | None:
    """The song a `.failures/` key counts for; None for any other key."""
    if not key.startswith(FAILURES_PREFIX) or not key.endswith(".json"):
        return None
    return key[len(FAILURES_PREFIX) : -len(".json")]


def damaged_key(file_name: str, stamp: str) -> str:
    """Where a damaged song is kept: `.damaged/FILE_NAME.<UTC time>`."""
    return f"{DAMAGED_PREFIX}{file_name}.{stamp}"


def is_s3_uri(output: str) -> bool:
    # URI schemes are case-insensitive (RFC 3986); "S3://b" must never become a local folder.
    return output[:5].lower() == "s3://"


def parse_s3_uri(text: str) -> tuple[str, str]:
    """(bucket, prefix) from `s3://name/prefix`, `name/prefix` or `name`, as the worker's
    --output and the launcher's --bucket take them; the prefix ends in '/' unless empty. The
    bucket is as written (possibly empty): `split_bucket` checks it."""
    rest = text[len("s3://") :] if is_s3_uri(text) else text
    bucket, _, prefix = rest.partition("/")
    prefix = prefix.strip("/")
    return bucket, f"{prefix}/" if prefix else ""


def split_bucket(text: str) -> tuple[str, str]:
    """`parse_s3_uri`, and ValueError when the bucket is not an S3 bucket name."""
    bucket, prefix = parse_s3_uri(text)
    if not BUCKET_NAME.fullmatch(bucket):
        raise ValueError(
            f"{bucket!r} is not an S3 bucket name (lower-case letters, digits, '.' and '-')"
        )
    return bucket, prefix
