"""An output that cannot be used, or stops answering: a read-only folder, a full disk, an S3
endpoint that accepts and never answers, a 403 while a new instance's permissions propagate,
and bookkeeping objects too large to be real. Each ends in one line that names what, never a
traceback, and loses no song.

Mounting a tmpfs (read-only, or small enough to fill) needs root; without it those tests skip
and say so.
"""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import boto3
import pytest
import soundfile
from botocore.exceptions import ClientError

from contract.bucket import checkpoint_key, failure_key, lease_key, record_key
from tests.engines import FakeEngine
from worker.cli import main
from worker.output.report import parse_report
from worker.store.s3_store import S3Store
from worker.store.store import Unusable

ROOT = Path(__file__).resolve().parent.parent


def never(model):
    raise AssertionError("the model was loaded")


@pytest.fixture
def prompts(tmp_path):
    path = tmp_path / "prompts.txt"
    path.write_text("calm piano;2;calm\nfast drums;3;drums\n")
    return path


@pytest.fixture
def tmpfs(tmp_path):
    """mount(options) mounts a fresh tmpfs on a folder and returns it; unmounted afterwards."""
    if os.geteuid() != 0:
        pytest.skip("NOT TESTED: mounting a tmpfs (read-only or full output) needs root")
    where = tmp_path / "mnt"
    where.mkdir()
    mounted = []

    def mount(options: str) -> Path:
        subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)], check=True)
        mounted.append(where)
        return where

    yield mount
    for path in mounted:
        subprocess.run(["umount", str(path)], check=False)


# -- a read-only output --------------------------------------------------------------------------


def test_a_read_only_output_is_one_line_before_the_model_loads(tmpfs, prompts, capsys):
    out = tmpfs("ro,size=1m")
    assert main(["--prompts", str(prompts), "--output", str(out)], load_engine=never) == 1
    err = capsys.readouterr().err
    assert err == f"error: output {out}: folder {str(out)!r} cannot be written: Read-only file system\n"


# -- a full disk -----------------------------------------------------------------------------


def test_a_full_disk_names_what_could_not_be_written_and_a_rerun_stores_the_songs(tmpfs, prompts, tmp_path, capsys):
    out, spool = tmpfs("size=1m"), tmp_path / "spool"
    filler = out / "filler"

    def fill_the_disk(rows):
        if not filler.exists():
            with filler.open("wb") as handle:
                try:
                    while True:
                        handle.write(b"\0" * 65536)
                        handle.flush()
                except OSError:
                    pass

    argv = ["--prompts", str(prompts), "--output", str(out), "--spool-dir", str(spool)]
    assert main(argv, load_engine=lambda model: FakeEngine(fill_the_disk)) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert f"cannot use the output {out}: [Errno 28] No space left on device: '{out / 'cost_report.csv'}'" in err
    assert f"failed calm.wav: could not store it (OSError: [Errno 28] No space left on device: '{out / 'calm.wav'}')" in err
    assert [p.name for p in out.rglob(".tmp-*")] == []
    assert sorted(p.name for p in spool.iterdir()) == [
        "calm.wav", "calm.wav.record.json", "drums.wav", "drums.wav.record.json",
    ]

    filler.unlink()
    assert main(argv, load_engine=never) == 0
    assert soundfile.info(out / "calm.wav").frames == 2 * 8000 and soundfile.info(out / "drums.wav").frames == 3 * 8000
    assert [r["s3_filename"] for r in parse_report((out / "cost_report.csv").read_bytes())] == ["calm.wav", "drums.wav"]
    assert list(spool.iterdir()) == []


# -- oversized bookkeeping ---------------------------------------------------------------------


def sparse(path: Path, size: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as handle:
        handle.truncate(size)


def test_oversized_local_bookkeeping_is_ignored_and_named(tmp_path, prompts, capsys):
    out = tmp_path / "out"
    big = 64 * 1024 * 1024  # sparse: no disk, but reading it whole would take 64 MiB
    for key in (record_key("old.wav"), lease_key("calm.wav"), failure_key("calm.wav"), checkpoint_key("drums.wav")):
        sparse(out / key, big)
    argv = ["--prompts", str(prompts), "--output", str(out)]
    assert main(argv, load_engine=lambda model: FakeEngine()) == 0
    err = capsys.readouterr().err
    for key in (record_key("old.wav"), lease_key("calm.wav"), failure_key("calm.wav"), checkpoint_key("drums.wav")):
        assert f"ignored {out / key}: {big} bytes, more than any object of its kind" in err
    assert soundfile.info(out / "calm.wav").frames == 2 * 8000 and soundfile.info(out / "drums.wav").frames == 3 * 8000


def test_oversized_s3_bookkeeping_is_ignored_and_named(aws_env, prompts, capsys):
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket="songs")
    body = b"{" * (1024 * 1024 + 1)
    for key in (lease_key("calm.wav"), failure_key("drums.wav")):
        s3.put_object(Bucket="songs", Key=key, Body=body)
    assert main(["--prompts", str(prompts), "--output", "s3://songs"], load_engine=lambda model: FakeEngine()) == 0
    err = capsys.readouterr().err
    for key in (lease_key("calm.wav"), failure_key("drums.wav")):
        assert f"ignored s3://songs/{key}: {len(body)} bytes, more than any object of its kind" in err
    assert {item["Key"] for item in s3.list_objects_v2(Bucket="songs")["Contents"]} >= {"calm.wav", "drums.wav"}


# -- S3 that stalls, S3 that forbids -----------------------------------------------------------


@pytest.mark.slow  # a real worker process
def test_a_stalled_s3_is_named_while_the_worker_waits(aws_env, prompts):
    """A server on 127.0.0.1 that accepts connections (the kernel completes the handshake into
    the listen backlog) and never answers: botocore waits 60 s per try, 3 tries, in silence."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(16)
        env = {**os.environ, "AWS_ENDPOINT_URL": f"http://127.0.0.1:{server.getsockname()[1]}", "PYTHONUNBUFFERED": "1"}
        worker = subprocess.Popen(
            [sys.executable, "-m", "worker", "--prompts", str(prompts), "--output", "s3://songs/run"],
            cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True,
        )
        try:
            started = time.monotonic()
            for line in worker.stderr:
                if "waiting for S3" in line:
                    break
            waited = time.monotonic() - started
        finally:
            worker.kill()
            worker.wait()
    assert "waiting for S3: head_bucket s3://songs has had no answer for 10 s" in line
    assert "botocore waits up to 60 s for each of 3 tries" in line
    assert waited < 30


def forbidden(status: int = 403) -> ClientError:
    # HeadBucket has no body: botocore reports the bare status as the code.
    return ClientError({"Error": {"Code": str(status), "Message": "Forbidden"},
                        "ResponseMetadata": {"HTTPStatusCode": status}}, "HeadBucket")


class ForbiddenAtFirst:
    """A real client whose first `times` HeadBucket calls answer 403, as S3 does for a role
    whose policy has not reached it yet."""

    def __init__(self, client, times: int):
        self.client, self.times = client, times

    def __getattr__(self, name):
        if name != "head_bucket":
            return getattr(self.client, name)

        def head_bucket(**kwargs):
            if self.times:
                self.times -= 1
                raise forbidden()
            return self.client.head_bucket(**kwargs)

        return head_bucket


def test_a_403_at_startup_is_retried_then_the_batch_runs(aws_env, prompts, capsys):
    boto3.client("s3").create_bucket(Bucket="songs")
    flaky = ForbiddenAtFirst(boto3.client("s3"), times=2)
    argv = ["--prompts", str(prompts), "--output", "s3://songs"]
    assert main(argv, load_engine=lambda model: FakeEngine(), s3_client=lambda: flaky) == 0
    retries = [line for line in capsys.readouterr().err.splitlines() if "no access to bucket 'songs' yet" in line]
    assert len(retries) == 2
    assert "trying again in 1 s" in retries[0] and "trying again in 2 s" in retries[1]
    assert "calm.wav" in {item["Key"] for item in boto3.client("s3").list_objects_v2(Bucket="songs")["Contents"]}


def test_a_403_that_outlasts_the_wait_is_one_line_and_exit_1(aws_env, prompts, capsys):
    boto3.client("s3").create_bucket(Bucket="songs")
    flaky = ForbiddenAtFirst(boto3.client("s3"), times=1000)
    argv = ["--prompts", str(prompts), "--output", "s3://songs", "--access-wait-s", "2"]
    assert main(argv, load_engine=never, s3_client=lambda: flaky) == 1
    err = capsys.readouterr().err.splitlines()
    assert err[-1] == "error: output s3://songs: no access to bucket 'songs' (403 Forbidden), still after 2 s (--access-wait-s)"
    assert all("no access to bucket 'songs' yet" in line for line in err[:-1]) and len(err) >= 2


def test_the_403_wait_backs_off_and_is_bounded(aws_env):
    """Pure timing with a fake clock: pauses double up to 30 s and never pass the deadline."""
    now = [0.0]
    pauses = []

    def sleep(seconds):
        pauses.append(seconds)
        now[0] += seconds

    store = S3Store(ForbiddenAtFirst(boto3.client("s3"), 1000), "songs", sleep=sleep,
                    access_wait_s=100, clock=lambda: now[0])
    with pytest.raises(Unusable):
        store.problem()
    assert pauses == [1, 2, 4, 8, 16, 30, 30, 9]


def test_the_wait_log_names_what_is_awaited(caplog):
    from worker.store.stall import announced

    with caplog.at_level(logging.WARNING), announced("put_object s3://b/k", 0.05, object()):
        time.sleep(0.3)
    assert caplog.messages[0].startswith("waiting for S3: put_object s3://b/k has had no answer for 0 s")
    count = len(caplog.messages)
    time.sleep(0.2)
    assert len(caplog.messages) == count  # silent once the call returned


def test_launcher_status_does_not_read_an_oversized_failure_count(launcher):
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket="songs")
    s3.put_object(Bucket="songs", Key=failure_key("synthwave.wav"), Body=b"{" * (1024 * 1024 + 1))
    result = launcher("status", "--bucket", "songs")
    assert result.code == 0, result.err
    assert (
        f"warning: ignored s3://songs/{failure_key('synthwave.wav')}: 1048577 bytes, more than any failure count"
        in result.err
    )
    assert "    synthwave.wav  (line 2, 180 s)" in result.out
