"""Where songs and bookkeeping go: an S3 prefix or a local folder, behind one small interface.

Every write that decides ownership is conditional (S3 `If-None-Match` / `If-Match`, or exclusive
file creation), so several workers can share one output without a scheduler.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from botocore.exceptions import ClientError

CONTENT_TYPES = {".wav": "audio/wav", ".flac": "audio/flac"}
MULTIPART_THRESHOLD = 64 * 1024 * 1024
PART_SIZE = 64 * 1024 * 1024


class Store(Protocol):
    def object_name(self, key: str) -> str: ...
    def uri(self, key: str) -> str: ...
    def exists(self, key: str) -> bool: ...
    def read(self, key: str) -> tuple[bytes, str] | None: ...
    def write(self, key: str, data: bytes, content_type: str | None = None) -> None: ...
    def create(self, key: str, data: bytes) -> str | None: ...
    def replace(self, key: str, data: bytes, version: str) -> str | None: ...
    def upload_new(self, path: Path, key: str, metadata: dict[str, str]) -> bool: ...
    def list(self, prefix: str) -> list[str]: ...
    def delete(self, key: str) -> None: ...
    def holds(self, path: Path, key: str, metadata: dict[str, str]) -> bool: ...
    def problem(self) -> str | None: ...
    def metadata(self, key: str) -> dict[str, str] | None: ...


def _status(error: ClientError) -> int:
    return int(error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))


def _code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


def _precondition_failed(error: ClientError) -> bool:
    """412: the condition was evaluated and failed (the key exists, or its ETag changed)."""
    return _status(error) == 412 or _code(error) == "PreconditionFailed"


def _conflict(error: ClientError) -> bool:
    """409 ConditionalRequestConflict: another request on the key was in flight, so S3 decided
    nothing; AWS's answer to it is to retry, and it says nothing about who owns the key."""
    return _status(error) == 409 or _code(error) == "ConditionalRequestConflict"


# Pauses between tries of a conditional write that met a 409; the last 409 is raised.
CONFLICT_RETRY_DELAYS_S = (0.2, 0.5, 1.0, 2.0, 4.0)


@dataclass
class S3Store:
    client: object
    bucket: str
    prefix: str = ""
    sleep: Callable[[float], None] = field(default=time.sleep, repr=False)

    def _conditional(self, call: Callable[[], dict]) -> dict:
        """Run a conditional write, again after each 409 ConditionalRequestConflict."""
        for delay in CONFLICT_RETRY_DELAYS_S:
            try:
                return call()
            except ClientError as error:
                if not _conflict(error):
                    raise
            self.sleep(delay)
        return call()

    def object_name(self, key: str) -> str:
        """The object's key in the bucket, prefix included."""
        return self.prefix + key

    _key = object_name

    def uri(self, key: str) -> str:
        return f"s3://{self.bucket}/{self._key(key)}"

    def exists(self, key: str) -> bool:
        try:
            self.client.head_object(Bucket=self.bucket, Key=self._key(key))
        except ClientError as error:
            if _status(error) == 404:
                return False
            raise
        return True

    def read(self, key: str) -> tuple[bytes, str] | None:
        """(content, ETag) or None when the object does not exist."""
        try:
            response = self.client.get_object(Bucket=self.bucket, Key=self._key(key))
        except ClientError as error:
            if _status(error) == 404 or _code(error) == "NoSuchKey":
                return None
            raise
        return response["Body"].read(), response["ETag"]

    def write(self, key: str, data: bytes, content_type: str | None = None) -> None:
        extra = {"ContentType": content_type} if content_type else {}
        self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data, **extra)

    def create(self, key: str, data: bytes) -> str | None:
        """Write only if the key does not exist: the new ETag, or None if an object is there."""
        try:
            response = self._conditional(
                lambda: self.client.put_object(
                    Bucket=self.bucket, Key=self._key(key), Body=data, IfNoneMatch="*"
                )
            )
        except ClientError as error:
            if _precondition_failed(error):
                return None
            raise
        return response["ETag"]

    def replace(self, key: str, data: bytes, version: str) -> str | None:
        """Write only if the object still has ETag `version`: the new ETag, or None."""
        try:
            response = self._conditional(
                lambda: self.client.put_object(
                    Bucket=self.bucket, Key=self._key(key), Body=data, IfMatch=version
                )
            )
        except ClientError as error:
            if _precondition_failed(error) or _status(error) == 404:
                return None
            raise
        return response["ETag"]

    def upload_new(self, path: Path, key: str, metadata: dict[str, str]) -> bool:
        """Upload a file unless the key exists (False then); multipart above 64 MiB."""
        args = {
            "Bucket": self.bucket,
            "Key": self._key(key),
            "Metadata": metadata,
            "ContentType": CONTENT_TYPES.get(Path(key).suffix.lower(), "application/octet-stream"),
        }
        size = path.stat().st_size

        def put() -> dict:
            if size > MULTIPART_THRESHOLD:
                return self._multipart(path, args)
            with path.open("rb") as body:
                return self.client.put_object(Body=body, IfNoneMatch="*", **args)

        try:
            self._conditional(put)
        except ClientError as error:
            # Only a 412 that a HEAD confirms means another worker's file is there; anything
            # else keeps the spooled song for the next try.
            if _precondition_failed(error) and self.exists(key):
                return False
            raise
        return True

    def _multipart(self, path: Path, args: dict) -> dict:
        # boto3's upload_file cannot send If-None-Match, so parts go up by hand and the
        # condition rides on the completion request.
        upload_id = self.client.create_multipart_upload(**args)["UploadId"]
        target = {"Bucket": args["Bucket"], "Key": args["Key"], "UploadId": upload_id}
        try:
            parts = []
            with path.open("rb") as source:
                for number in range(1, 10001):
                    chunk = source.read(PART_SIZE)
                    if not chunk:
                        break
                    etag = self.client.upload_part(Body=chunk, PartNumber=number, **target)["ETag"]
                    parts.append({"ETag": etag, "PartNumber": number})
            return self.client.complete_multipart_upload(
                MultipartUpload={"Parts": parts}, IfNoneMatch="*", **target
            )
        except BaseException:
            self.client.abort_multipart_upload(**target)
            raise

    def list(self, prefix: str) -> list[str]:
        keys = []
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=self._key(prefix)):
            keys += [item["Key"][len(self.prefix) :] for item in page.get("Contents", [])]
        return sorted(keys)

    def delete(self, key: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=self._key(key))

    def holds(self, path: Path, key: str, metadata: dict[str, str]) -> bool:
        """Whether `key` is this very upload of `path` (same size and metadata, which names
        the song's seed), not another worker's file."""
        try:
            head = self.client.head_object(Bucket=self.bucket, Key=self._key(key))
        except ClientError as error:
            if _status(error) == 404:
                return False
            raise
        return head.get("Metadata") == metadata and head.get("ContentLength") == path.stat().st_size

    def metadata(self, key: str) -> dict[str, str] | None:
        """The object's user metadata (prompt hash, seed, model, duration), or None."""
        try:
            return self.client.head_object(Bucket=self.bucket, Key=self._key(key)).get("Metadata")
        except ClientError as error:
            if _status(error) == 404:
                return None
            raise

    def problem(self) -> str | None:
        """Why this output cannot be used (checked before the model loads), or None."""
        try:
            self.client.head_bucket(Bucket=self.bucket)
        except ClientError as error:
            if _status(error) == 404 or _code(error) in ("404", "NoSuchBucket"):
                return f"bucket {self.bucket!r} does not exist"
            if _status(error) == 403:
                return f"no access to bucket {self.bucket!r} (403 Forbidden)"
            raise
        return None


@dataclass
class LocalStore:
    """A folder; the same guarantees as S3 through atomic renames and exclusive links."""

    root: Path

    def _path(self, key: str) -> Path:
        return self.root / key

    def object_name(self, key: str) -> str:
        return key

    def uri(self, key: str) -> str:
        return str(self._path(key))

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    @staticmethod
    def _version(stat: os.stat_result) -> str:
        # Every write lands as a new inode (rename or link of a fresh temp file).
        return f"{stat.st_ino}-{stat.st_mtime_ns}-{stat.st_size}"

    def read(self, key: str) -> tuple[bytes, str] | None:
        try:
            with self._path(key).open("rb") as handle:
                return handle.read(), self._version(os.fstat(handle.fileno()))
        except FileNotFoundError:
            return None

    def _staged(self, key: str, data: bytes) -> Path:
        target = self._path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        # mkstemp creates 0600; the user's umask should decide, as for any other file.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(name, 0o666 & ~umask)
        return Path(name)

    def write(self, key: str, data: bytes, content_type: str | None = None) -> None:
        # A file's type is its name's; content_type only matters to S3, which serves the object.
        os.replace(self._staged(key, data), self._path(key))

    def create(self, key: str, data: bytes) -> str | None:
        staged = self._staged(key, data)
        version = self._version(staged.stat())
        return version if self._link_new(staged, self._path(key)) else None

    def replace(self, key: str, data: bytes, version: str) -> str | None:
        current = self.read(key)
        if current is None or current[1] != version:
            return None
        # A rename is atomic but not a compare-and-swap: two workers replacing the same lease
        # in the same instant could both succeed. A lease is renewed by its owner only, so
        # what is left is a taker of an expired lease racing another taker.
        staged = self._staged(key, data)
        new_version = self._version(staged.stat())
        os.replace(staged, self._path(key))
        return new_version

    def upload_new(self, path: Path, key: str, metadata: dict[str, str]) -> bool:
        staged = self._staged(key, path.read_bytes())
        return self._link_new(staged, self._path(key))

    @staticmethod
    def _link_new(staged: Path, target: Path) -> bool:
        try:
            os.link(staged, target)
        except FileExistsError:
            return False
        finally:
            staged.unlink()
        return True

    def list(self, prefix: str) -> list[str]:
        base = self._path(prefix)
        folder = base if prefix.endswith("/") or not prefix else base.parent
        if not folder.is_dir():
            return []
        keys = []
        for path in folder.rglob("*"):
            key = path.relative_to(self.root).as_posix()
            if path.is_file() and key.startswith(prefix) and not path.name.startswith(".tmp-"):
                keys.append(key)
        return sorted(keys)

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def holds(self, path: Path, key: str, metadata: dict[str, str]) -> bool:
        try:
            return self._path(key).read_bytes() == path.read_bytes()
        except FileNotFoundError:
            return False

    def problem(self) -> str | None:
        return None

    def metadata(self, key: str) -> dict[str, str] | None:
        return None  # a folder keeps none; the song's record tells the same


def is_s3_uri(output: str) -> bool:
    # URI schemes are case-insensitive (RFC 3986); "S3://b" must never become a local folder.
    return output[:5].lower() == "s3://"


def local_path(text: str) -> Path:
    """A local path as a shell would have expanded it (`--output=~/x` reaches us unexpanded)."""
    return Path(text).expanduser()


def make_folder(path: Path, what: str) -> None:
    """Create a folder (and its parents); ValueError in one line when a file is in the way."""
    if path.exists() and not path.is_dir():
        raise ValueError(f"{what} {str(path)!r} is a file, not a folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ValueError(f"{what} {str(path)!r} cannot be created: {error.strerror or error}") from None


def open_store(output: str, s3_client_factory) -> Store:
    """`s3://bucket/prefix` or a local folder (created if missing); ValueError if unusable."""
    if is_s3_uri(output):
        bucket, _, prefix = output[len("s3://") :].partition("/")
        if not bucket:
            raise ValueError(f"output {output!r} names no bucket")
        if prefix and not prefix.endswith("/"):
            prefix += "/"
        return S3Store(s3_client_factory(), bucket, prefix)
    root = local_path(output)
    make_folder(root, "output")
    return LocalStore(root)
