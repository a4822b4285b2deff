"""`python launcher download`: copy a batch's songs, cost report and listening page from S3.

What to copy is decided by pure functions (`wanted`, `plan`); the copying itself goes through
boto3's transfer manager, several files at a time, with one progress bar for all the bytes.

A file is skipped when it is already there with the same size and ETag. A local file has no
ETag, and a multipart upload's ETag is not the content's MD5, so the ETag of every file copied
is kept in a small manifest in the folder.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from boto3.s3.transfer import TransferConfig, create_transfer_manager
from botocore.exceptions import BotoCoreError, ClientError
from s3transfer.subscribers import BaseSubscriber
from tqdm import tqdm

from contract.bucket import LOGS_PREFIX, PAGE_KEY, is_bookkeeping

MANIFEST_NAME = ".musicgen-download.json"


@dataclass(frozen=True)
class RemoteFile:
    key: str  # relative to the batch's prefix
    size: int
    etag: str


@dataclass
class Plan:
    copy: list[RemoteFile] = field(default_factory=list)
    up_to_date: list[RemoteFile] = field(default_factory=list)
    bookkeeping: int = 0
    logs: int = 0
    unsafe: list[str] = field(default_factory=list)  # keys that would land outside the folder

    @property
    def copy_bytes(self) -> int:
        return sum(item.size for item in self.copy)


def local_path(directory: Path, key: str) -> Path | None:
    """Where `key` goes inside `directory`; None for a key that would land outside it."""
    parts = key.split("/")
    if any(part in ("", ".", "..") for part in parts):
        return None
    return directory.joinpath(*parts)


def plan(
    remote: Iterable[RemoteFile],
    local_sizes: dict[str, int],
    manifest: dict[str, dict[str, Any]],
    *,
    include_logs: bool,
) -> Plan:
    """Sort the batch's objects into copy / up to date / left out.

    `local_sizes`: the size of each key's file in the folder, where one exists. `manifest`: the
    size and ETag each key had when it was last copied into the folder."""
    result = Plan()
    for item in remote:
        if is_bookkeeping(item.key):
            result.bookkeeping += 1
        elif item.key.startswith(LOGS_PREFIX) and not include_logs:
            result.logs += 1
        elif item.key in local_sizes and local_sizes[item.key] == item.size and manifest.get(
            item.key
        ) == {"etag": item.etag, "size": item.size}:
            result.up_to_date.append(item)
        else:
            result.copy.append(item)
    return result


def list_batch(s3: Any, bucket: str, prefix: str) -> list[RemoteFile]:
    files = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for item in page.get("Contents", []):
            files.append(RemoteFile(item["Key"][len(prefix) :], item["Size"], item["ETag"]))
    return files


def read_manifest(directory: Path, source: str) -> dict[str, dict[str, Any]]:
    """What was copied from `source` into the folder before; empty when unknown or unreadable."""
    try:
        data = json.loads((directory / MANIFEST_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict) or data.get("source") != source:
        return {}
    files = data.get("files")
    return files if isinstance(files, dict) else {}


def write_manifest(directory: Path, source: str, files: dict[str, dict[str, Any]]) -> None:
    fd, name = tempfile.mkstemp(dir=directory, prefix=".tmp-manifest-")
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump({"source": source, "files": files}, handle, indent=1, sort_keys=True)
    os.replace(name, directory / MANIFEST_NAME)


class FolderError(Exception):
    """The folder cannot be created or written into; the message names it and says why."""


def prepare_folder(directory: Path) -> None:
    """Create the folder, and show that a file can be written in it before copying anything:
    a read-only mount, a folder of another user or a full disk each answer this one write."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise FolderError(f"cannot create the folder {directory}: {exc.strerror or exc}") from None
    try:
        with tempfile.TemporaryFile(dir=directory, prefix=".tmp-download-"):
            pass
    except OSError as exc:
        raise FolderError(f"cannot write into the folder {directory}: {exc.strerror or exc}") from None


class _Progress(BaseSubscriber):
    def __init__(self, bar: tqdm) -> None:
        self.bar = bar

    def on_progress(self, future: Any, bytes_transferred: int, **kwargs: Any) -> None:
        self.bar.update(bytes_transferred)


@dataclass
class Result:
    plan: Plan
    copied: list[RemoteFile] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)  # (key, why)


def download_batch(
    s3: Any,
    bucket: str,
    prefix: str,
    directory: Path,
    *,
    include_logs: bool,
    progress: TextIO,
) -> Result:
    """Copy what `plan` says into `directory`; the manifest is saved after every file, so an
    interrupted download resumes where it stopped."""
    source = f"s3://{bucket}/{prefix}"
    listing = list_batch(s3, bucket, prefix)  # before creating anything: the bucket may not exist
    prepare_folder(directory)
    manifest = read_manifest(directory, source)
    remote, targets, unsafe = [], {}, []
    for item in listing:
        if not item.key or item.key.endswith("/"):
            continue  # a "folder" made in the S3 console, not a file
        target = local_path(directory, item.key)
        if target is None:
            unsafe.append(item.key)
            continue
        remote.append(item)
        targets[item.key] = target
    local_sizes = {key: path.stat().st_size for key, path in targets.items() if path.is_file()}
    result = Result(plan(remote, local_sizes, manifest, include_logs=include_logs))
    result.plan.unsafe = unsafe
    if not result.plan.copy:
        return result
    with (
        tqdm(
            total=result.plan.copy_bytes,
            unit="B",
            unit_scale=True,
            unit_divisor=1024,
            desc="download",
            file=progress,
            disable=None,  # no bar when the output is not a terminal
        ) as bar,
        create_transfer_manager(s3, TransferConfig()) as manager,
    ):
        futures = []
        for item in result.plan.copy:
            target = targets[item.key]
            target.parent.mkdir(parents=True, exist_ok=True)
            future = manager.download(
                bucket, prefix + item.key, str(target), subscribers=[_Progress(bar)]
            )
            futures.append((item, future))
        for item, future in futures:
            try:
                future.result()
            except (ClientError, BotoCoreError, OSError) as error:
                result.failed.append((item.key, str(error)))
                continue
            result.copied.append(item)
            manifest[item.key] = {"etag": item.etag, "size": item.size}
            write_manifest(directory, source, manifest)
    return result


def page_path(directory: Path) -> Path | None:
    path = directory / PAGE_KEY
    return path if path.is_file() else None


def human_size(size: int) -> str:
    if size < 1024:
        return f"{size} B"
    value = size / 1024
    for unit in ("KiB", "MiB"):
        if value < 1024:
            return f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GiB"
