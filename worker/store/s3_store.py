"""The output as an S3 prefix: conditional writes for everything that decides ownership, bounded
reads of bookkeeping, and damaged songs copied aside then replaced with If-Match on their ETag
(the bucket policy lets a worker write a song key only with If-None-Match or If-Match)."""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from botocore.exceptions import ClientError

from contract.aws import error_status, missing, precondition_failed, retry_conflicts
from contract.bucket import BOOKKEEPING_LIMIT, damaged_key
from contract.songs import size_problem
from worker.store.stall import DEFAULT_EVERY_S, announced
from worker.store.stored import Stored, Unusable, oversized

log = logging.getLogger(__name__)

CONTENT_TYPES = {".wav": "audio/wav", ".flac": "audio/flac"}
MULTIPART_THRESHOLD = 64 * 1024 * 1024
PART_SIZE = 64 * 1024 * 1024
# A 403 at the first look is retried this long by default: an instance can boot before its
# role's permissions have reached every S3 endpoint (IAM is eventually consistent: "Changes that
# I make are not always immediately visible", IAM User Guide, Troubleshooting general issues).
DEFAULT_ACCESS_WAIT_S = 120.0
ACCESS_RETRY_FIRST_S, ACCESS_RETRY_MAX_S = 1.0, 30.0
STAMP = re.compile(r"\d{8}T\d{6}Z")


@dataclass
class S3Store:
    client: object
    bucket: str
    prefix: str = ""
    sleep: Callable[[float], None] = field(default=time.sleep, repr=False)
    access_wait_s: float = DEFAULT_ACCESS_WAIT_S
    stall_log_s: float = DEFAULT_EVERY_S
    clock: Callable[[], float] = field(default=time.monotonic, repr=False)
    # Song keys holding a damaged object this worker set aside, with that object's ETag: the
    # remade song replaces exactly it (If-Match), and while it is there the song does not exist.
    _replacing: dict[str, str] = field(default_factory=dict, repr=False)

    def _call(self, operation: str, key: str | None, **kwargs) -> dict:
        where = f"s3://{self.bucket}" if key is None else self.uri(key)
        with announced(f"{operation} {where}", self.stall_log_s, self.client):
            return getattr(self.client, operation)(Bucket=self.bucket, **kwargs)

    def _conditional(self, call: Callable[[], dict]) -> dict:
        """Run a conditional write, again after each 409 ConditionalRequestConflict."""
        return retry_conflicts(call, self.sleep)

    def object_name(self, key: str) -> str:
        """The object's key in the bucket, prefix included."""
        return self.prefix + key

    _key = object_name

    def uri(self, key: str) -> str:
        return f"s3://{self.bucket}/{self._key(key)}"

    def _head(self, key: str) -> dict | None:
        try:
            return self._call("head_object", key, Key=self._key(key))
        except ClientError as error:
            if error_status(error) == 404:
                return None
            raise

    def exists(self, key: str) -> bool:
        head = self._head(key)
        return head is not None and head.get("ETag") != self._replacing.get(key)

    def stat(self, key: str) -> Stored | None:
        head = self._head(key)
        if head is None:
            return None
        return Stored(int(head.get("ContentLength", 0)), head["ETag"], dict(head.get("Metadata") or {}))

    def read(self, key: str, limit: int = BOOKKEEPING_LIMIT) -> tuple[bytes, str] | None:
        """(content, ETag) or None when the object does not exist. An object over `limit`
        bytes is named and reads as empty: its body is closed unread (GetObject's
        Content-Length arrives before the body)."""
        try:
            response = self._call("get_object", key, Key=self._key(key))
        except ClientError as error:
            if missing(error):
                return None
            raise
        size = int(response.get("ContentLength", 0))
        if size > limit:
            response["Body"].close()
            oversized(self.uri(key), size, limit)
            return b"", response["ETag"]
        with announced(f"the body of {self.uri(key)}", self.stall_log_s, self.client):
            return response["Body"].read(), response["ETag"]

    def write(self, key: str, data: bytes, content_type: str | None = None) -> None:
        extra = {"ContentType": content_type} if content_type else {}
        self._call("put_object", key, Key=self._key(key), Body=data, **extra)

    def _put(self, key: str, data: bytes, condition: dict[str, str]) -> str | None:
        try:
            response = self._conditional(
                lambda: self._call("put_object", key, Key=self._key(key), Body=data, **condition)
            )
        except ClientError as error:
            if precondition_failed(error) or error_status(error) == 404:
                return None
            raise
        return response["ETag"]

    def create(self, key: str, data: bytes) -> str | None:
        """Write only if the key does not exist: the new ETag, or None if an object is there."""
        return self._put(key, data, {"IfNoneMatch": "*"})

    def replace(self, key: str, data: bytes, version: str) -> str | None:
        """Write only if the object still has ETag `version`: the new ETag, or None."""
        return self._put(key, data, {"IfMatch": version})

    def upload_new(self, path: Path, key: str, metadata: dict[str, str]) -> bool:
        """Upload a file unless a song is at the key (False then); multipart above 64 MiB. A
        damaged object this worker set aside is replaced, and only that very object."""
        args = {
            "Key": self._key(key),
            "Metadata": metadata,
            "ContentType": CONTENT_TYPES.get(Path(key).suffix.lower(), "application/octet-stream"),
        }
        damaged = self._replacing.get(key)
        condition = {"IfNoneMatch": "*"} if damaged is None else {"IfMatch": damaged}
        size = path.stat().st_size

        def put() -> dict:
            if size > MULTIPART_THRESHOLD:
                return self._multipart(path, key, args, condition)
            with path.open("rb") as body:
                return self._call("put_object", key, Body=body, **condition, **args)

        try:
            self._conditional(put)
        except ClientError as error:
            # Only a 412 that a HEAD confirms means another worker's song is there; anything
            # else keeps the spooled song for the next try.
            if precondition_failed(error) and self.exists(key):
                return False
            raise
        self._replacing.pop(key, None)
        return True

    def _multipart(self, path: Path, key: str, args: dict, condition: dict[str, str]) -> dict:
        # boto3's upload_file cannot send If-None-Match or If-Match, so parts go up by hand and
        # the condition rides on the completion request.
        upload_id = self._call("create_multipart_upload", key, **args)["UploadId"]
        target = {"Key": args["Key"], "UploadId": upload_id}
        try:
            parts = []
            with path.open("rb") as source:
                for number in range(1, 10001):
                    chunk = source.read(PART_SIZE)
                    if not chunk:
                        break
                    etag = self._call("upload_part", key, Body=chunk, PartNumber=number, **target)["ETag"]
                    parts.append({"ETag": etag, "PartNumber": number})
            return self._call(
                "complete_multipart_upload", key, MultipartUpload={"Parts": parts}, **condition, **target
            )
        except BaseException:
            self._call("abort_multipart_upload", key, **target)
            raise

    def _items(self, prefix: str) -> Iterator[dict]:
        paginator = self.client.get_paginator("list_objects_v2")
        with announced(f"list_objects_v2 {self.uri(prefix)}", self.stall_log_s, self.client):
            for page in paginator.paginate(Bucket=self.bucket, Prefix=self._key(prefix)):
                yield from page.get("Contents", [])

    def list(self, prefix: str) -> list[str]:
        return sorted(item["Key"][len(self.prefix) :] for item in self._items(prefix))

    def delete(self, key: str) -> None:
        self._call("delete_object", key, Key=self._key(key))

    def holds(self, path: Path, key: str, metadata: dict[str, str]) -> bool:
        """Whether `key` is this very upload of `path` (same size and metadata, which names
        the song's seed), not another worker's file."""
        head = self._head(key)
        return head is not None and head.get("Metadata") == metadata and head.get("ContentLength") == path.stat().st_size

    def damage(self, key: str, stored: Stored, duration_s: float) -> str | None:
        """Why the object at `key` is not a whole song of `duration_s` seconds, from its size
        and metadata alone (no download), or None."""
        return size_problem(key, stored.size, stored.metadata, duration_s)

    def set_aside(self, key: str, stored: Stored, stamp: str) -> str | None:
        """Copy a damaged song to `.damaged/` (once: a copy with its ETag and size is reused)
        and let the remade song replace it; None when the object changed meanwhile."""
        aside = damaged_key(key, "")
        kept = next(
            (
                item["Key"][len(self.prefix) :]
                for item in list(self._items(aside))
                if STAMP.fullmatch(item["Key"][len(self._key(aside)) :])
                and item.get("ETag") == stored.version and item.get("Size") == stored.size
            ),
            None,
        )
        if kept is None:
            # `.damaged/` stays outside the bucket policy's song keys: with conditional writes
            # enforced on a prefix, CopyObject into it without If-None-Match or If-Match is
            # refused (S3 User Guide, "Enforce conditional writes on Amazon S3 buckets"), and
            # boto3's floor, 1.35.69, cannot send either on CopyObject.
            kept = damaged_key(key, stamp)
            source = {"Bucket": self.bucket, "Key": self._key(key)}
            try:
                self._call("copy_object", kept, Key=self._key(kept), CopySource=source, CopySourceIfMatch=stored.version)
            except ClientError as error:
                if precondition_failed(error) or missing(error):
                    return None
                raise
        self._replacing[key] = stored.version
        return self.uri(kept)

    def problem(self) -> str | None:
        """Why this output cannot be used, checked before the model loads: a bucket that does
        not exist (None when it does). A 403 is retried for `access_wait_s` seconds with
        backoff, one line per try, then raises Unusable."""
        deadline = self.clock() + self.access_wait_s
        pause = ACCESS_RETRY_FIRST_S
        while True:
            try:
                self._call("head_bucket", None)
                return None
            except ClientError as error:
                if missing(error):
                    return f"bucket {self.bucket!r} does not exist"
                if error_status(error) != 403:
                    raise
            left = deadline - self.clock()
            if left <= 0:
                raise Unusable(
                    f"no access to bucket {self.bucket!r} (403 Forbidden), still after "
                    f"{self.access_wait_s:g} s (--access-wait-s)"
                )
            pause = min(pause, left)
            log.warning(
                "no access to bucket %r yet (403 Forbidden; a new instance's permissions can take "
                "a while to reach S3): trying again in %.0f s, for %.0f s more (--access-wait-s)",
                self.bucket, pause, left,
            )
            self.sleep(pause)
            pause = min(2 * pause, ACCESS_RETRY_MAX_S)
