"""A failing instance, end to end: the units, the boot unit's root script and the start script
from the rendered UserData, run by the fake systemctl (tests/fake_systemctl.py), the real
worker/instance/bootstrap.sh and worker from a file:// clone of this project, the real end program, moto's
S3 and Auto Scaling over HTTP, and the metadata stub naming the instance.

This machine's torch is a CPU build, as a broken GPU instance's would look to CUDA: the worker
units ask for the GPU (MUSICGEN_DEVICE=cuda) and the real worker exits 6 with torch's own reason.
Where a test needs the worker to generate, its settings file asks for the CPU instead.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import boto3
import pytest

from tests.imds_stub import ImdsStub
from tests.support.autoscaling import group, make_group
from tests.support.boot import make_machine, settings_for, write_env_file

# Real processes (the boot, the bootstrap, the worker, the end program): the inner loop skips them.
pytestmark = pytest.mark.slow

BUCKET = "musicgen-batch-failing"
UNUSABLE = "error: GPU unusable: Torch not compiled with CUDA enabled"


def boot_settings(root: Path, url: str, imds: str, aws_env: str, model: Path, **extra: str) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    settings = {
        **settings_for(root, url, BUCKET, model),
        "MUSICGEN_IMDS_ENDPOINT": imds,
        "MUSICGEN_KEEP_ALIVE": "0",
        "MUSICGEN_MAX_FAILED_BOOTS": "3",
        "AWS_ENDPOINT_URL": aws_env,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_REGION": "us-east-1",
        **extra,
    }
    return write_env_file(root / "worker.env", settings)


def record(instance: str) -> dict:
    body = boto3.client("s3").get_object(Bucket=BUCKET, Key=f".boot-failures/{instance}.json")["Body"]
    return json.loads(body.read())


def logs(instance: str, kind: str) -> list[str]:
    s3 = boto3.client("s3")
    listed = s3.list_objects_v2(Bucket=BUCKET, Prefix=f"logs/{instance}-{kind}-").get("Contents", [])
    return [s3.get_object(Bucket=BUCKET, Key=item["Key"])["Body"].read().decode() for item in listed]


@pytest.fixture
def bucket(aws_env: str) -> str:
    boto3.client("s3").create_bucket(Bucket=BUCKET)
    return BUCKET


def test_a_checkout_that_keeps_failing_ends_in_a_group_at_zero(
    tmp_path: Path, bucket: str, aws_env: str, user_data_files: dict[str, str], tiny_model_dir: Path
) -> None:
    """An unreachable repository on three boots of a four-instance group: each boot records its
    failure and its clone's log, leaves the group, and the third sets the group to 0, so the
    fourth instance goes too and nothing is launched again."""
    instances = make_group(desired=4, max_size=4)
    for count, instance in enumerate(instances[:3], start=1):
        root = tmp_path / instance
        with ImdsStub(instance_id=instance) as imds:
            env_file = boot_settings(root, f"file://{tmp_path}/missing.git", imds.url, aws_env, tiny_model_dir)
            machine = make_machine(root, user_data_files, env_file, gpus=1)
            status, events = machine.boot()
        output = machine.output("musicgen-worker.service")
        assert status == 4, output
        assert not [e for e in events if e.get("unit", "").startswith("musicgen-worker@")]
        written = record(instance)
        assert written["nothing_ran"] is True and written["failed_boots"] == count, written
        assert written["reason"].startswith("the git checkout failed: fatal:"), written
        (log,) = logs(instance, "scale-in")
        assert "missing.git" in log and "cannot clone" in log
    assert [record(i)["group_set_to_zero"] for i in instances[:3]] == [False, False, True]
    after = group()
    assert (after["DesiredCapacity"], after["Instances"]) == (0, [])


def test_an_unusable_gpu_is_recorded_and_the_instance_leaves_its_group(
    tmp_path: Path, remote: tuple[str, Path], bucket: str, aws_env: str,
    user_data_files: dict[str, str], tiny_model_dir: Path,
) -> None:
    """The worker unit asks for the GPU (MUSICGEN_DEVICE=cuda); the real worker finds CUDA
    unusable, exits 6 with torch's reason before it claims anything, and the instance records it
    and leaves instead of generating on the CPU."""
    me, other = make_group(desired=2)
    url, _ = remote
    with ImdsStub(instance_id=me) as imds:
        env_file = boot_settings(tmp_path, url, imds.url, aws_env, tiny_model_dir)
        machine = make_machine(tmp_path, user_data_files, env_file, gpus=1)
        status, _ = machine.boot()
    assert status == 6, machine.output("musicgen-worker.service")
    written = record(me)
    assert written["reason"] == f"GPU 0: {UNUSABLE}"
    assert (written["nothing_ran"], written["failed_boots"]) == (True, 1)
    assert [i["InstanceId"] for i in group()["Instances"]] == [other]
    assert group()["DesiredCapacity"] == 1
    (worker_log,) = logs(me, "gpu0")
    assert UNUSABLE in worker_log and "worker exited 6" in worker_log
    claimed = boto3.client("s3").list_objects_v2(Bucket=BUCKET, Prefix=".leases/").get("Contents")
    assert not claimed, claimed


@pytest.mark.parametrize(("system_state", "worker_status", "scaled_in"), [
    ("running", "143", True),  # systemctl stop of the boot unit: the batch ends, the instance goes
    ("stopping", "3", False),  # a shutdown: the instance is going away, nothing more to do
])
def test_a_stop_is_an_instance_stop_only_when_the_system_is_stopping(
    tmp_path: Path, remote: tuple[str, Path], bucket: str, aws_env: str,
    user_data_files: dict[str, str], tiny_model_dir: Path,
    system_state: str, worker_status: str, scaled_in: bool,
) -> None:
    """`systemctl stop musicgen-worker.service` mid-song stops the workers with it (PartOf=);
    the real worker saves its checkpoint and exits 143, or 3 when systemd is shutting down
    (systemctl(1), is-system-running: "stopping"), and the boot unit scales the instance in only
    in the first case. No spot notice comes in either."""
    me, other = make_group(desired=2)
    url, _ = remote
    with ImdsStub(instance_id=me) as imds:
        prompts = tmp_path / "long.txt"
        prompts.write_text("a long ambient piano song ; 120 ; long\n")
        env_file = boot_settings(tmp_path, url, imds.url, aws_env, tiny_model_dir,
                                 MUSICGEN_DEVICE="cpu", MUSICGEN_PROMPTS=str(prompts))
        machine = make_machine(tmp_path, user_data_files, env_file, gpus=1)
        booting = machine.start_boot()
        s3 = boto3.client("s3")
        try:
            deadline = time.monotonic() + 300
            while not s3.list_objects_v2(Bucket=BUCKET, Prefix=".checkpoints/").get("Contents"):
                assert booting.poll() is None and time.monotonic() < deadline, machine.output("musicgen-worker.service")
                time.sleep(0.2)
            machine.set_state(system_state)
            machine.systemctl("stop", "musicgen-worker.service")
            booting.wait(timeout=300)
        finally:
            if booting.poll() is None:
                booting.kill()
    output = machine.output("musicgen-worker.service")
    assert (tmp_path / "run" / "gpu0.exit").read_text() == f"{worker_status}\n", output
    assert f"worker on GPU 0 exited {worker_status}" in output
    remaining = [i["InstanceId"] for i in group()["Instances"]]
    assert remaining == ([other] if scaled_in else [me, other]), output
    assert group()["DesiredCapacity"] == (1 if scaled_in else 2)
    assert not s3.list_objects_v2(Bucket=BUCKET, Prefix=".boot-failures/").get("Contents")
    assert s3.list_objects_v2(Bucket=BUCKET, Prefix=".checkpoints/long.wav").get("Contents")
    says = "scaled in: the group terminates this instance" if scaled_in else "the instance is stopping; no end action"
    assert says in output
