"""`python launcher download` against the local moto server, and its pure planning."""

from __future__ import annotations

import io
import json
import subprocess
from datetime import datetime
from pathlib import Path

import boto3
import pytest

from contract.bucket import BOOKKEEPING_PREFIXES
from launcher import aws
from launcher.cli import Console, Deps, main
from launcher.download import MANIFEST_NAME, RemoteFile, human_size, local_path, plan
from tests.support.launcher import Launcher, Result

pytestmark = pytest.mark.filterwarnings("ignore:The 'warn' method is deprecated")

SONGS = {
    "calm.wav": b"RIFF" + b"c" * 2000,
    "epic.flac": b"fLaC" + b"e" * 3000,
    "cost_report.csv": b"s3_filename,prompt\ncalm.wav,calm piano\n",
    "index.html": b"<!DOCTYPE html><title>batch</title>",
}
# Every bookkeeping folder the workers and the instances write: none belongs in a songs folder.
BOOKKEEPING = {
    ".records/calm.wav.json": b"{}",
    ".leases/epic.flac": b"{}",
    ".checkpoints/epic.flac.json": b"{}",
    ".failures/lost.wav.json": b'{"attempts": 1}',
    ".boot-failures/i-0abc.json": b'{"instance_id": "i-0abc"}',
    ".damaged/calm.wav.20261204T160000Z": b"RIFF",
}
assert {key.split("/")[0] + "/" for key in BOOKKEEPING} == set(BOOKKEEPING_PREFIXES)
LOGS = {"logs/i-0abc/worker.log": b"worker log\n", "logs/i-0abc/bootstrap.log": b"boot log\n"}
# Above the 5 MiB minimum part size: uploaded in two parts, so its ETag is not an MD5.
BIG = "long.wav"
BIG_PARTS = [b"L" * (5 * 1024 * 1024), b"tail"]


def put_batch(s3, bucket: str, prefix: str = "") -> None:
    for key, body in {**SONGS, **BOOKKEEPING, **LOGS}.items():
        s3.put_object(Bucket=bucket, Key=prefix + key, Body=body)
    upload = s3.create_multipart_upload(Bucket=bucket, Key=prefix + BIG)
    parts = [
        {
            "PartNumber": number,
            "ETag": s3.upload_part(
                Bucket=bucket, Key=prefix + BIG, UploadId=upload["UploadId"], PartNumber=number,
                Body=body,
            )["ETag"],
        }
        for number, body in enumerate(BIG_PARTS, start=1)
    ]
    s3.complete_multipart_upload(
        Bucket=bucket, Key=prefix + BIG, UploadId=upload["UploadId"],
        MultipartUpload={"Parts": parts},
    )
    assert s3.head_object(Bucket=bucket, Key=prefix + BIG)["ETag"].endswith('-2"')


def files_in(folder: Path) -> dict[str, bytes]:
    return {
        path.relative_to(folder).as_posix(): path.read_bytes()
        for path in folder.rglob("*")
        if path.is_file() and path.name != MANIFEST_NAME
    }


def stamps(folder: Path) -> dict[str, int]:
    return {key: (folder / key).stat().st_mtime_ns for key in files_in(folder)}


@pytest.fixture
def s3(aws_env):
    client = boto3.client("s3")
    client.create_bucket(Bucket="songs")
    return client


@pytest.fixture
def launcher(aws_env, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return Launcher(prices=[])


def test_download_copies_a_batch_once_then_only_what_changed(s3, launcher, tmp_path):
    put_batch(s3, "songs")
    everything = {**SONGS, BIG: b"".join(BIG_PARTS)}
    page = (tmp_path / "songs" / "index.html").as_uri()

    first = launcher("download", "--bucket", "songs")
    assert (first.code, first.err) == (0, "")
    assert first.out == (
        "Copied 5 files (5.0 MiB) from s3://songs/ to songs.\n"
        "Left out 6 files of the worker's bookkeeping and 2 logs (--logs copies them).\n"
        f"Listen: {page}\n"
    )
    assert files_in(tmp_path / "songs") == everything
    before = stamps(tmp_path / "songs")

    second = launcher("download", "--bucket", "songs")
    assert second.code == 0
    assert second.out.splitlines()[0] == (
        "Nothing to copy from s3://songs/ to songs: 5 files already up to date."
    )
    assert stamps(tmp_path / "songs") == before

    # The same size with other bytes: only the ETag tells; a local file cut short is fetched too.
    s3.put_object(Bucket="songs", Key="calm.wav", Body=b"RIFF" + b"C" * 2000)
    (tmp_path / "songs" / "epic.flac").write_bytes(b"fLaC")
    third = launcher("download", "--bucket", "songs")
    assert third.out.splitlines()[0] == (
        "Copied 2 files (4.9 KiB) from s3://songs/ to songs; 3 files already up to date."
    )
    assert files_in(tmp_path / "songs") == {**everything, "calm.wav": b"RIFF" + b"C" * 2000}
    unchanged = stamps(tmp_path / "songs")
    for key in ("cost_report.csv", "index.html", BIG):
        assert unchanged[key] == before[key]

    logs = launcher("download", "--bucket", "songs", "--logs")
    assert logs.out == (
        "Copied 2 files (20 B) from s3://songs/ to songs; 5 files already up to date.\n"
        "Left out 6 files of the worker's bookkeeping.\n"
        f"Listen: {page}\n"
    )
    assert files_in(tmp_path / "songs") == {
        **everything, "calm.wav": b"RIFF" + b"C" * 2000, **LOGS
    }
    manifest = json.loads((tmp_path / "songs" / MANIFEST_NAME).read_text())
    assert manifest["source"] == "s3://songs/"
    assert manifest["files"][BIG]["etag"].endswith('-2"')


def test_download_of_a_prefixed_batch_into_a_named_folder(s3, launcher, tmp_path):
    put_batch(s3, "songs", prefix="batch1/")
    s3.put_object(Bucket="songs", Key="other/calm.wav", Body=b"another batch")
    s3.put_object(Bucket="songs", Key="batch1/", Body=b"")  # a console-made folder marker

    result = launcher("download", str(tmp_path / "mine"), "--bucket", "songs", "--prefix", "batch1")
    assert result.code == 0
    assert result.out.splitlines()[0] == (
        f"Copied 5 files (5.0 MiB) from s3://songs/batch1/ to {tmp_path / 'mine'}."
    )
    assert set(files_in(tmp_path / "mine")) == {*SONGS, BIG}
    # Another batch recorded in the manifest is not taken for this one.
    again = launcher("download", str(tmp_path / "mine"), "--bucket", "songs", "--prefix", "other/")
    assert again.out.splitlines()[0].startswith("Copied 1 file (13 B) from s3://songs/other/")
    assert "Nothing to copy" in launcher("download", str(tmp_path / "mine"), "--bucket", "songs",
                                         "--prefix", "other").out


def test_download_takes_the_prefix_from_the_bucket_as_status_does(s3, launcher, tmp_path):
    put_batch(s3, "songs", prefix="batch1/")
    result = launcher("download", str(tmp_path / "mine"), "--bucket", "s3://songs/batch1")
    assert result.code == 0
    assert set(files_in(tmp_path / "mine")) == {*SONGS, BIG}
    twice = launcher("download", "--bucket", "songs/batch1", "--prefix", "batch2")
    assert (twice.code, twice.err) == (
        2, "error: give the batch's prefix once: in --bucket or with --prefix\n"
    )


def test_download_of_a_batch_without_a_page_yet(s3, launcher):
    s3.put_object(Bucket="songs", Key="calm.wav", Body=b"RIFF")
    result = launcher("download", "--bucket", "songs")
    assert result.out == (
        "Copied 1 file (4 B) from s3://songs/ to songs.\n"
        "No listening page in s3://songs/ yet: the worker writes it with the cost report.\n"
    )


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["download", "--bucket", "nope"], "error: bucket nope does not exist\n"),
        (["status", "songs"], "error: unexpected argument 'songs' (only download takes a DIR)\n"),
    ],
)
def test_download_errors_are_one_line(s3, launcher, argv, message):
    result = launcher(*argv)
    assert (result.code, result.out, result.err) == (2, "", message)
    assert not (Path.cwd() / "songs").exists()


def test_download_into_a_file_is_refused(s3, launcher, tmp_path):
    (tmp_path / "songs").write_text("not a folder")
    result = launcher("download", "--bucket", "songs")
    assert (result.code, result.err) == (2, "error: songs exists and is not a folder\n")


CALM = RemoteFile("calm.wav", 10, '"aa"')
RECORD = RemoteFile(".records/calm.wav.json", 2, '"rr"')
LOG = RemoteFile("logs/i-1/worker.log", 5, '"ll"')
KNOWN = {"calm.wav": {"etag": '"aa"', "size": 10}}


@pytest.mark.parametrize(
    ("local_sizes", "manifest", "include_logs", "copy", "up_to_date", "left_out"),
    [
        ({}, {}, False, [CALM], [], (1, 1)),
        ({"calm.wav": 10}, KNOWN, False, [], [CALM], (1, 1)),
        ({"calm.wav": 10}, KNOWN, True, [LOG], [CALM], (1, 0)),
        ({"calm.wav": 9}, KNOWN, False, [CALM], [], (1, 1)),  # changed on disk
        ({"calm.wav": 10}, {}, False, [CALM], [], (1, 1)),  # there, but from where?
        ({"calm.wav": 10}, {"calm.wav": {"etag": '"bb"', "size": 10}}, False, [CALM], [], (1, 1)),
        ({"logs/i-1/worker.log": 5}, {}, False, [CALM], [], (1, 1)),
    ],
)
def test_plan(local_sizes, manifest, include_logs, copy, up_to_date, left_out):
    result = plan([CALM, RECORD, LOG], local_sizes, manifest, include_logs=include_logs)
    assert (result.copy, result.up_to_date) == (copy, up_to_date)
    assert (result.bookkeeping, result.logs) == left_out


@pytest.mark.parametrize("include_logs", [False, True])
def test_no_bookkeeping_folder_is_ever_planned_for_copying(include_logs):
    """Every prefix of the contract, and a dot folder a later version may add."""
    kept = [RemoteFile(f"{prefix}calm.wav.json", 2, '"bk"') for prefix in BOOKKEEPING_PREFIXES]
    kept.append(RemoteFile(".later/calm.wav.json", 2, '"bk"'))
    result = plan([CALM, *kept], {}, {}, include_logs=include_logs)
    assert (result.copy, result.bookkeeping) == ([CALM], len(kept))


@pytest.mark.parametrize(
    ("key", "inside"),
    [
        ("calm.wav", "calm.wav"),
        ("logs/i-1/worker.log", "logs/i-1/worker.log"),
        ("../calm.wav", None),
        ("a/../../calm.wav", None),
        ("/etc/passwd", None),
        ("a//b", None),
        ("./calm.wav", None),
    ],
)
def test_local_path_stays_inside_the_folder(tmp_path, key, inside):
    expected = None if inside is None else tmp_path.joinpath(*inside.split("/"))
    assert local_path(tmp_path, key) == expected


@pytest.mark.parametrize(
    ("size", "text"),
    [(0, "0 B"), (1023, "1023 B"), (1024, "1.0 KiB"), (5 * 1024**2 + 4, "5.0 MiB"), (3 * 1024**3, "3.0 GiB")],
)
def test_human_size(size, text):
    assert human_size(size) == text


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_download_shows_a_progress_bar_on_a_terminal(s3, aws_env, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    put_batch(s3, "songs")
    console = Console(io.StringIO(), io.StringIO(), Terminal(), True, True)
    deps = Deps(console, datetime.now, lambda *_: [], aws.ec2_client, aws.s3_client)
    assert main(["download", "--bucket", "songs"], deps) == 0
    bar = console.stderr.getvalue()
    assert "download: 100%" in bar and "5.00M/5.00M" in bar


class GhostListing:
    """The real client, but its listing shows an object deleted before it could be copied."""

    def __init__(self, client):
        self.client = client

    def __getattr__(self, name):
        return getattr(self.client, name)

    def get_paginator(self, operation):
        real = self.client.get_paginator(operation)

        class Paginator:
            def paginate(self, **kwargs):
                for page in real.paginate(**kwargs):
                    ghost = {"Key": kwargs["Prefix"] + "ghost.wav", "Size": 4, "ETag": '"gg"'}
                    yield {**page, "Contents": [*page.get("Contents", []), ghost]}

        return Paginator()


def test_a_file_that_cannot_be_copied_is_named_and_the_rest_kept(s3, aws_env, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    s3.put_object(Bucket="songs", Key="calm.wav", Body=b"RIFF")
    console = Console(io.StringIO(), io.StringIO(), io.StringIO(), True, False)
    deps = Deps(console, datetime.now, lambda *_: [], aws.ec2_client,
                lambda region: GhostListing(aws.s3_client(region)))
    assert main(["download", "--bucket", "songs"], deps) == 1
    assert console.stdout.getvalue().startswith("Copied 1 file (4 B) from s3://songs/ to songs.\n")
    assert console.stderr.getvalue().startswith("error: could not copy s3://songs/ghost.wav: ")
    assert files_in(tmp_path / "songs") == {"calm.wav": b"RIFF"}
    manifest = json.loads((tmp_path / "songs" / MANIFEST_NAME).read_text())
    assert set(manifest["files"]) == {"calm.wav"}


def test_a_listening_page_that_cannot_be_copied_is_not_called_missing(
    s3, aws_env, tmp_path, monkeypatch
):
    """The bucket lists a page, and its copy fails: the page exists, it was not copied."""

    class GhostPage(GhostListing):
        def get_paginator(self, operation):
            real = self.client.get_paginator(operation)

            class Paginator:
                def paginate(self, **kwargs):
                    for page in real.paginate(**kwargs):
                        ghost = {"Key": kwargs["Prefix"] + "index.html", "Size": 9, "ETag": '"pp"'}
                        yield {**page, "Contents": [*page.get("Contents", []), ghost]}

            return Paginator()

    monkeypatch.chdir(tmp_path)
    s3.put_object(Bucket="songs", Key="calm.wav", Body=b"RIFF")
    console = Console(io.StringIO(), io.StringIO(), io.StringIO(), True, False)
    deps = Deps(console, datetime.now, lambda *_: [], aws.ec2_client,
                lambda region: GhostPage(aws.s3_client(region)))
    assert main(["download", "--bucket", "songs"], deps) == 1
    assert console.stdout.getvalue().endswith(
        "The listening page s3://songs/index.html could not be copied (see the error above).\n"
    )
    assert "No listening page" not in console.stdout.getvalue()


@pytest.mark.parametrize(
    ("folder", "why"),
    [
        ("/proc/musicgen-songs", "No such file or directory"),
        ("a-file/songs", "Not a directory"),
    ],
)
def test_a_folder_that_cannot_be_created_is_one_line(s3, launcher, tmp_path, folder, why):
    (tmp_path / "a-file").write_text("not a folder")
    s3.put_object(Bucket="songs", Key="calm.wav", Body=b"RIFF")

    result = launcher("download", "--bucket", "songs", folder)

    assert result == Result(2, "", f"error: cannot create the folder {folder}: {why}\n")


@pytest.fixture
def read_only_folder(tmp_path: Path):
    """A tmpfs mounted read-only (root only): what a read-only mount answers, not a mode bit."""
    folder = tmp_path / "read-only"
    folder.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(folder)],
        capture_output=True, text=True, check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"READ-ONLY MOUNT NOT TESTED: cannot mount tmpfs ({mounted.stderr.strip()})")
    yield folder
    subprocess.run(["umount", str(folder)], check=True)


def test_a_read_only_folder_is_refused_before_anything_is_copied(
    s3, launcher, read_only_folder
):
    put_batch(s3, "songs")

    result = launcher("download", "--bucket", "songs", str(read_only_folder))

    # Not "No listening page": the bucket has one; the folder cannot take it.
    assert result == Result(
        2, "", f"error: cannot write into the folder {read_only_folder}: Read-only file system\n"
    )
    assert list(read_only_folder.iterdir()) == []
