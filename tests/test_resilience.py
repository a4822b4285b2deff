"""Interruptions, crashes, two workers and an S3 outage, with real worker processes over HTTP."""

import io
import os
import re
import signal
import socket
import subprocess
import sys
import time

import boto3
import numpy as np
import pytest
import soundfile
from moto.server import ThreadedMotoServer

from tests.imds_stub import ImdsStub
from tests.support.worker_process import (
    ROOT,
    WINDOW,
    finish,
    read_checkpoint,
    start_worker,
    wait_for_window,
    wav_frames,
)
from worker.cli import main
from worker.output.report import parse_report

# Real processes (workers, the bootstrap): the inner loop skips them with -m 'not slow'.
pytestmark = pytest.mark.slow


@pytest.fixture
def bucket(aws_env):
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket="batch")
    return s3


def in_process(argv: list[str], engine, capsys) -> tuple[int, str]:
    """The next run, in this process on the engine it loaded once: what is under test is what
    the earlier (real, stopped or killed) process left in the bucket."""
    code = main(argv, load_engine=lambda model: engine)
    return code, capsys.readouterr().err


def test_spot_notice_checkpoints_stops_and_the_next_run_resumes(
    bucket, tiny_model_dir, loaded_tiny_engine, tmp_path, capsys
):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a long ambient piano song;30;long\n")
    with ImdsStub(expire_first_token=True) as imds:
        first = start_worker(prompts, "s3://batch", tiny_model_dir, "--imds-endpoint", imds.url,
                             "--imds-poll-s", "0.1")
        wait_for_window(bucket, "batch", "long.wav", 2, first)
        imds.interrupt()
        noticed = time.monotonic()
        code, output = finish(first)
        assert time.monotonic() - noticed < 10
    assert code == 3, output
    assert "stopped because the instance is stopping (spot interruption notice: {" in output
    saved = read_checkpoint(bucket, "batch", "long.wav")
    assert 2 <= saved.next_window < 12 and saved.generation_time_s > 0
    assert "Contents" not in bucket.list_objects_v2(Bucket="batch", Prefix="long.wav")
    assert "Contents" not in bucket.list_objects_v2(Bucket="batch", Prefix=".leases/")

    argv = ["--prompts", str(prompts), "--output", "s3://batch", "--model", str(tiny_model_dir),
            *WINDOW]
    code, output = in_process(argv, loaded_tiny_engine, capsys)
    assert code == 0, output
    assert f"resuming long.wav at window {saved.next_window + 1} of 12" in output
    assert wav_frames(bucket, "batch", "long.wav") == 30 * 8000
    rows = parse_report(bucket.get_object(Bucket="batch", Key="cost_report.csv")["Body"].read())
    assert [r["s3_filename"] for r in rows] == ["long.wav"]
    assert float(rows[0]["generation_time_s"]) > saved.generation_time_s
    assert read_checkpoint(bucket, "batch", "long.wav") is None


def test_sigterm_during_a_system_shutdown_exits_3_with_a_checkpoint(bucket, tiny_model_dir, tmp_path):
    """systemd stops the worker unit as the system shuts down: `systemctl is-system-running`
    (a stand-in on PATH) prints `stopping`, so the SIGTERM is an instance stop."""
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a long ambient piano song;30;long\n")
    worker = start_worker(prompts, "s3://batch", tiny_model_dir, system_state="stopping", tmp=tmp_path)
    wait_for_window(bucket, "batch", "long.wav", 2, worker)
    worker.send_signal(signal.SIGTERM)
    code, output = finish(worker, timeout=30)
    assert code == 3, output
    assert "saved long.wav at window" in output
    assert "stopped because the instance is stopping (a system shutdown (systemctl is-system-running: stopping))" in output
    assert read_checkpoint(bucket, "batch", "long.wav").next_window >= 2


def test_kill_9_mid_song_then_rerun_resumes_without_duplicates(
    bucket, tiny_model_dir, loaded_tiny_engine, tmp_path, capsys
):
    prompts = tmp_path / "prompts.txt"
    # 18 s is 7 windows: killed after the third, four are left to resume.
    prompts.write_text("a long ambient piano song;18;long\nshort jazz;2;short\n")
    worker = start_worker(prompts, "s3://batch/run", tiny_model_dir, "--worker-id", "host-1",
                          "--batch-size", "1")
    saved = wait_for_window(bucket, "batch", "long.wav", 3, worker, prefix="run/")
    worker.send_signal(signal.SIGKILL)
    worker.wait(timeout=30)

    argv = ["--prompts", str(prompts), "--output", "s3://batch/run", "--model", str(tiny_model_dir),
            *WINDOW, "--worker-id", "host-1"]
    code, output = in_process(argv, loaded_tiny_engine, capsys)
    assert code == 0, output
    assert "took over the lease on long.wav (ours, from an earlier run)" in output
    resumed = int(re.search(r"resuming long.wav at window (\d+) of 7", output).group(1))
    assert resumed >= saved.next_window + 1
    assert wav_frames(bucket, "batch", "run/long.wav") == 18 * 8000
    rows = parse_report(bucket.get_object(Bucket="batch", Key="run/cost_report.csv")["Body"].read())
    assert sorted(r["s3_filename"] for r in rows) == ["run/long.wav", "run/short.wav"]
    keys = [o["Key"] for o in bucket.list_objects_v2(Bucket="batch")["Contents"]]
    assert sorted(k for k in keys if k.endswith(".wav")) == ["run/long.wav", "run/short.wav"]
    assert not [k for k in keys if "/.leases/" in k or "/.checkpoints/" in k]


def test_two_workers_share_one_batch_and_generate_each_song_once(bucket, tiny_model_dir, tmp_path):
    prompts = tmp_path / "prompts.txt"
    names = [f"song{i}" for i in range(4)]
    prompts.write_text("".join(f"jazz piano number {i};3;{name}\n" for i, name in enumerate(names)))
    workers = [
        start_worker(prompts, "s3://batch", tiny_model_dir, "--worker-id", wid, "--batch-size", "1")
        for wid in ("worker-a", "worker-b")
    ]
    outputs = []
    for worker in workers:
        code, output = finish(worker)
        assert code == 0, output
        outputs.append(output)
    generated = re.findall(r"generated (song\d)\.wav", "".join(outputs))
    assert sorted(generated) == names  # each exactly once, across both workers
    rows = parse_report(bucket.get_object(Bucket="batch", Key="cost_report.csv")["Body"].read())
    assert [r["s3_filename"] for r in rows] == [f"{name}.wav" for name in names]
    records = bucket.list_objects_v2(Bucket="batch", Prefix=".records/")["Contents"]
    assert len(records) == 4


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_s3_outage_during_upload_keeps_the_song_and_the_rerun_uploads_it(
    tiny_model_dir, loaded_tiny_engine, tmp_path, monkeypatch, capsys
):
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "2")
    spool = tmp_path / "spool"
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket="outage")
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("calm piano;3;calm\n")
    argv = ["--prompts", str(prompts), "--output", "s3://outage", "--model", str(tiny_model_dir),
            "--spool-dir", str(spool), *WINDOW]

    class OutageEngine:
        """The real engine; S3 goes down the moment the song is decoded, before its upload."""

        def __init__(self, model, inner=loaded_tiny_engine):
            self.inner = inner

        def __getattr__(self, name):
            return getattr(self.inner, name)

        def with_params(self, params):
            return OutageEngine(None, self.inner.with_params(params))

        def decode(self, codes, num_samples):
            audio = self.inner.decode(codes, num_samples)
            server.stop()
            return audio

    try:
        assert main(argv, load_engine=OutageEngine) == 1
        err = capsys.readouterr().err
        assert "failed calm.wav: could not store it" in err
        assert f"kept {spool / 'calm.wav'} and its record for the next run" in err
        assert sorted(p.name for p in spool.iterdir()) == ["calm.wav", "calm.wav.record.json"]

        server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
        server.start()

        def must_not_generate(model):
            raise AssertionError("the kept song was generated again")

        assert main(argv, load_engine=must_not_generate) == 0
        assert "uploading calm.wav kept from an earlier run" in capsys.readouterr().err
        body = s3.get_object(Bucket="outage", Key="calm.wav")["Body"].read()
        assert soundfile.info(io.BytesIO(body)).frames == 3 * 8000
        rows = parse_report(s3.get_object(Bucket="outage", Key="cost_report.csv")["Body"].read())
        assert [r["s3_filename"] for r in rows] == ["calm.wav"] and float(rows[0]["generation_time_s"]) > 0
        assert list(spool.iterdir()) == []
    finally:
        server.stop()


def test_sigterm_on_a_stereo_song_then_the_rerun_resumes_it_exactly(
    bucket, tiny_stereo_model_dir, loaded_tiny_stereo_engine, tmp_path, capsys
):
    """`systemctl stop` of a worker on a running system: exit 143 (the batch ends here, the
    instance is not going away), the song checkpointed all the same."""
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a wide stereo ambient pad;12;wide\n")
    seeded = ["--seed", "11", "--format", "flac"]
    worker = start_worker(prompts, "s3://batch", tiny_stereo_model_dir, *seeded, system_state="running", tmp=tmp_path)
    wait_for_window(bucket, "batch", "wide.flac", 2, worker)
    worker.send_signal(signal.SIGTERM)
    code, output = finish(worker, timeout=30)
    assert code == 143, output
    assert "stopped by SIGTERM (systemctl stop, kill) while the instance is not stopping; saved wide.flac" in output
    saved = read_checkpoint(bucket, "batch", "wide.flac")
    assert saved.codes.shape[0] == 8  # left and right codebooks, interleaved

    code, output = finish(start_worker(prompts, "s3://batch", tiny_stereo_model_dir, *seeded))
    assert code == 0, output
    assert f"resuming wide.flac at window {saved.next_window + 1} of 5" in output
    body = bucket.get_object(Bucket="batch", Key="wide.flac")["Body"].read()
    resumed, rate = soundfile.read(io.BytesIO(body), dtype="int16")
    assert resumed.shape == (12 * 8000, 2) and rate == 8000

    # The same song generated without an interruption is the same song, sample for sample.
    argv = ["--prompts", str(prompts), "--output", str(tmp_path / "whole"),
            "--model", str(tiny_stereo_model_dir), *WINDOW, *seeded]
    code, output = in_process(argv, loaded_tiny_stereo_engine, capsys)
    assert code == 0, output
    whole, _ = soundfile.read(tmp_path / "whole" / "wide.flac", dtype="int16")
    np.testing.assert_array_equal(resumed, whole)
    assert not np.array_equal(resumed[:, 0], resumed[:, 1])


class CapAfterOneWindow:
    """The real engine; the run's clock (main's `clock`) passes the time cap while a window is
    generated, so every run generates exactly one window before it notices the cap."""

    def __init__(self, inner, now: list[float], cap_s: float):
        self.inner, self.now, self.cap_s = inner, now, cap_s

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def with_params(self, params):
        return CapAfterOneWindow(self.inner.with_params(params), self.now, self.cap_s)

    def generate(self, rows, on_step=None):
        codes = self.inner.generate(rows, on_step=on_step)
        self.now[0] += self.cap_s
        return codes


def test_the_time_cap_stops_like_a_spot_notice_and_the_next_run_resumes(
    bucket, tiny_model_dir, loaded_tiny_engine, tmp_path, monkeypatch, capsys
):
    """--max-hours as the instance's env file sets it (MUSICGEN_MAX_HOURS): a song far longer
    than the cap allows is checkpointed, its lease released, and the worker exits 5; the next
    run resumes it. The cap is measured with the test's clock, which passes it during each run's
    first window; a real worker process then stops at its own (immediate) cap with exit 5 and
    leaves the checkpoint for the next run."""
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a very long ambient piano song;1800;long\n")
    argv = ["--prompts", str(prompts), "--output", "s3://batch", "--model", str(tiny_model_dir),
            *WINDOW]
    monkeypatch.setenv("MUSICGEN_MAX_HOURS", "0.006")  # 21.6 s of the test's clock

    def no_leftovers():
        assert "Contents" not in bucket.list_objects_v2(Bucket="batch", Prefix="long.wav")
        assert "Contents" not in bucket.list_objects_v2(Bucket="batch", Prefix=".leases/")

    def capped_run() -> str:
        now = [1000.0]
        engine = CapAfterOneWindow(loaded_tiny_engine, now, 0.006 * 3600)
        code = main(argv, load_engine=lambda model: engine, clock=lambda: now[0])
        output = capsys.readouterr().err
        assert code == 5, output
        assert "time cap of 0.006 h reached (--max-hours): stopping as on a spot notice" in output
        assert "stopped at the time cap of 0.006 h (--max-hours); " in output
        no_leftovers()
        return output

    output = capped_run()
    saved = read_checkpoint(bucket, "batch", "long.wav")
    assert saved is not None and saved.next_window >= 1 and saved.generation_time_s > 0
    assert f"saved long.wav at window {saved.next_window} of 720" in output
    assert "saved long.wav at the last window: run again to resume from the checkpoints" in output

    output = capped_run()
    assert f"resuming long.wav at window {saved.next_window + 1} of 720" in output
    resumed = read_checkpoint(bucket, "batch", "long.wav")
    assert resumed.next_window >= saved.next_window

    # A real worker process: its cap (a few microseconds) has passed before its first window.
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "MUSICGEN_MAX_HOURS": "1e-9"}
    command = [sys.executable, "-m", "worker", *argv]
    started = time.monotonic()
    run = subprocess.run(
        command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=240, check=False
    )
    output = run.stdout + run.stderr
    assert run.returncode == 5, output
    assert time.monotonic() - started < 120
    assert "time cap of 1e-09 h reached (--max-hours): stopping as on a spot notice" in output
    assert "stopped at the time cap of 1e-09 h (--max-hours); " in output
    no_leftovers()
    left = read_checkpoint(bucket, "batch", "long.wav")
    assert left.next_window == resumed.next_window and np.array_equal(left.codes, resumed.codes)
