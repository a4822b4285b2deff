"""Real worker processes (`python -m worker`) on the tiny model, and what they leave in the
bucket: checkpoints, songs."""

import io
import os
import subprocess
import sys
import time
from pathlib import Path

import soundfile

from worker.checkpoints import Checkpoint, checkpoint_key

ROOT = Path(__file__).resolve().parents[2]
WINDOW = ["--window-s", "4", "--stride-s", "2.5"]


def start_worker(prompts, output, model, *extra):
    command = [sys.executable, "-m", "worker", "--prompts", str(prompts), "--output", output,
               "--model", str(model), *WINDOW, *extra]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def finish(process, timeout=240):
    output, _ = process.communicate(timeout=timeout)
    return process.returncode, output


def read_checkpoint(s3, bucket, name, prefix=""):
    try:
        body = s3.get_object(Bucket=bucket, Key=prefix + checkpoint_key(name))["Body"].read()
    except s3.exceptions.NoSuchKey:
        return None
    return Checkpoint.from_json(body)


def wait_for_window(s3, bucket, name, window, process, prefix="", timeout=120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        checkpoint = read_checkpoint(s3, bucket, name, prefix)
        if checkpoint is not None and checkpoint.next_window >= window:
            return checkpoint
        assert process.poll() is None, process.communicate()[0]
        time.sleep(0.2)
    raise AssertionError(f"no checkpoint at window {window} within {timeout} s")


def wav_frames(s3, bucket, key):
    return soundfile.info(io.BytesIO(s3.get_object(Bucket=bucket, Key=key)["Body"].read())).frames
