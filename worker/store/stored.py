"""What the two stores (store.LocalStore, s3_store.S3Store) share: how a stored object is
described without reading it, and the error for an output that exists but cannot be used (the
bound on bookkeeping reads and where damaged songs are kept are contract.bucket's)."""

from __future__ import annotations

import logging
from dataclasses import dataclass

log = logging.getLogger(__name__)

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
