"""What the two stores (store.LocalStore, s3_store.S3Store) share: how a stored object is
described without reading it, the bound on bookkeeping reads, where damaged songs are kept, and
the error for an output that exists but cannot be used."""

from __future__ import annotations

import logging
from dataclasses import dataclass

log = logging.getLogger(__name__)

# Records, leases and failure counts are a few kilobytes (a record's longest parts are a
# 2000-character prompt and a 200-point waveform); one larger than this was not written by a
# worker, and reading it whole could exhaust memory. Checkpoints have a bound of their own.
BOOKKEEPING_LIMIT = 1024 * 1024
DAMAGED_PREFIX = ".damaged/"


def damaged_key(file_name: str, stamp: str) -> str:
    """Where a damaged song is kept: `.damaged/FILE_NAME.<UTC time>`."""
    return f"{DAMAGED_PREFIX}{file_name}.{stamp}"


class Unusable(Exception):
    """The output exists but this worker cannot use it (read-only, no access): one line, exit 1."""


@dataclass(frozen=True)
class Stored:
    """A stored object as the output describes it without reading it."""

    size: int
    version: str  # the S3 ETag, or a local file's inode, mtime and size
    metadata: dict[str, str]  # the S3 object's user metadata; a local file has none


def oversized(uri: str, size: int, limit: int) -> None:
    """Name a bookkeeping object that is not read because of its size."""
    log.warning(
        "ignored %s: %d bytes, more than any object of its kind (%d); it reads as unreadable",
        uri, size, limit,
    )
