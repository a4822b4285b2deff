"""Real worker processes (`python -m worker`) on the tiny model, and what they leave in the
bucket: checkpoints, songs; and a stand-in `systemctl` that tells them the system's state."""

import io
import os
import subprocess
import sys
import time
from pathlib import Path

import soundfile

from contract.bucket import checkpoint_key
from contract.records import Checkpoint

ROOT = Path(__file__).resolve().parents[2]
WINDOW = ["--window-s", "4", "--stride-s", "2.5"]


def fake_systemctl(folder: Path, state: str) -> Path:
    """A folder holding a `systemctl` whose `is-system-running` prints `state` and exits 0 only
    for `running`, as systemctl(1) documents (the states: initializing, starting, running,
    degraded, maintenance, stopping, offline, unknown); any other command exits 1."""
    folder.mkdir(parents=True, exist_ok=True)
    script = folder / "systemctl"
    script.write_text(
        '#!/bin/sh\n[ "$1" = is-system-running ] || exit 1\n'
        f'echo {state}\n[ {state} = running ]\n'
    )
    script.chmod(0o755)
    return folder


def start_worker(prompts, output, model, *extra, system_state=None, tmp=None):
    """`python -m worker` on the tiny model; with `system_state`, systemd (a stand-in under
    `tmp`) says the system is in that state."""
    command = [sys.executable, "-m", "worker", "--prompts", str(prompts), "--output", output,
               "--model", str(model), *WINDOW, *extra]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    if system_state is not None:
        env["PATH"] = f"{fake_systemctl(Path(tmp) / 'systemd-bin', system_state)}{os.pathsep}{env['PATH']}"
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
