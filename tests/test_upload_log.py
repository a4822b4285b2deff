"""`python -m worker.instance.upload_log`, the boot script's log upload and instance name, as processes
against moto's S3 server and the metadata stub."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import boto3

from tests.imds_stub import ImdsStub

ROOT = Path(__file__).resolve().parent.parent


def upload_log(*args: str, imds: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ}
    env.pop("MUSICGEN_IMDS_ENDPOINT", None)
    if imds is not None:
        env["MUSICGEN_IMDS_ENDPOINT"] = imds
    return subprocess.run(
        [sys.executable, "-m", "worker.instance.upload_log", *args], cwd=ROOT, env=env,
        capture_output=True, text=True, timeout=120, check=False,
    )


def test_the_instance_name_is_the_instance_id_else_the_host_name():
    with ImdsStub(instance_id="i-0123456789abcdef0") as imds:
        assert upload_log("--instance-name", imds=imds.url).stdout == "i-0123456789abcdef0\n"
    with ImdsStub() as imds:  # no instance id: 404
        assert upload_log("--instance-name", imds=imds.url).stdout == f"{socket.gethostname()}\n"
    assert upload_log("--instance-name", imds="http://127.0.0.1:9").stdout == f"{socket.gethostname()}\n"
    assert upload_log("--instance-name").stdout == f"{socket.gethostname()}\n"


def test_the_log_is_uploaded_and_a_failed_upload_is_one_line(aws_env, tmp_path):
    boto3.client("s3").create_bucket(Bucket="logs-bucket")
    log = tmp_path / "run.log"
    log.write_text("bootstrap: worker exited 0\n")
    done = upload_log(str(log), "logs-bucket", "logs/i-1-gpu0-20261129T000000Z.log")
    assert (done.returncode, done.stdout) == (0, "bootstrap: log uploaded to s3://logs-bucket/logs/i-1-gpu0-20261129T000000Z.log\n")
    body = boto3.client("s3").get_object(Bucket="logs-bucket", Key="logs/i-1-gpu0-20261129T000000Z.log")["Body"].read()
    assert body == b"bootstrap: worker exited 0\n"

    missing = upload_log(str(log), "no-such-bucket", "logs/x.log")
    assert missing.returncode == 1 and len(missing.stderr.splitlines()) == 1
    assert missing.stderr.startswith(f"bootstrap: cannot upload {log} to s3://no-such-bucket/logs/x.log: ")
    assert "Traceback" not in missing.stderr
    usage = upload_log(str(log))
    assert usage.returncode == 2 and usage.stderr.endswith("error: give FILE BUCKET KEY, or --instance-name\n")
