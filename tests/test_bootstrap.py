"""worker/bootstrap.sh end to end, without systemd: a file:// copy of this project as the git
remote, moto's S3 server as the bucket, this venv as the AMI's venv and the tiny model."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import boto3
import pytest

from tests.tf_support import REPO_ROOT

BOOTSTRAP = REPO_ROOT / "worker" / "bootstrap.sh"
PROMPTS = "calm piano ; 1.5 ; calm\nepic cinematic drums ; 2 ; epic.wav\n"
GIT_IDENTITY = ["-c", "user.name=musicgen-batch", "-c", "user.email=musicgen-batch@example.com"]


def git(*args: str, cwd: Path) -> str:
    result = subprocess.run(
        ["git", *GIT_IDENTITY, *args], cwd=cwd, check=True, capture_output=True, text=True
    )
    return result.stdout.strip()


@pytest.fixture(scope="module")
def remote(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    """A bare repository holding this project's files plus a prompts file; returns its file://
    URL and a working clone to push changes from."""
    root = tmp_path_factory.mktemp("remote")
    work = root / "work"
    listed = git("ls-files", "-z", "--cached", "--others", "--exclude-standard", cwd=REPO_ROOT)
    for name in filter(None, listed.split("\0")):
        source = REPO_ROOT / name
        if source.is_file():
            (work / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, work / name)
    (work / "prompts.txt").write_text(PROMPTS)
    git("init", "--quiet", "--initial-branch=main", cwd=work)
    git("add", "--all", cwd=work)
    git("commit", "--quiet", "-m", "songs", cwd=work)
    bare = root / "songs.git"
    git("clone", "--quiet", "--bare", str(work), str(bare), cwd=root)
    git("remote", "add", "bare", str(bare), cwd=work)
    return f"file://{bare}", work


@pytest.fixture
def bucket(aws_env: str) -> str:
    boto3.client("s3").create_bucket(Bucket="musicgen-batch-bootstrap")
    return "musicgen-batch-bootstrap"


def write_env_file(path: Path, settings: dict[str, str]) -> Path:
    path.write_text("".join(f"{name}='{value}'\n" for name, value in settings.items()))
    return path


def settings_for(tmp_path: Path, url: str, bucket: str, model: Path) -> dict[str, str]:
    return {
        "MUSICGEN_REPO_URL": url,
        "MUSICGEN_REPO_REF": "main",
        "MUSICGEN_BUCKET": bucket,
        "MUSICGEN_CHECKOUT_DIR": str(tmp_path / "app"),
        "MUSICGEN_VENV": sys.prefix,
        "MUSICGEN_LOG_DIR": str(tmp_path / "logs"),
        "MUSICGEN_MODEL": str(model),
        "HOURLY_COST_USD": "0.5",
        "MUSICGEN_BATCH_SIZE": "2",
        "MUSICGEN_WINDOW_S": "4",
        "MUSICGEN_STRIDE_S": "2.5",
        "MUSICGEN_SHUTDOWN_WHEN_DONE": "1",
        "MUSICGEN_SHUTDOWN_CMD": f"touch {tmp_path / 'shutdown-requested'}",
    }


def bootstrap_env(env_file: Path) -> dict[str, str]:
    env = {**os.environ, "MUSICGEN_ENV_FILE": str(env_file)}
    env.pop("MUSICGEN_IMDS_ENDPOINT", None)
    return env


def run_bootstrap(env_file: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(BOOTSTRAP)],
        env=bootstrap_env(env_file),
        check=False,
        capture_output=True,
        text=True,
        timeout=600,
    )


def keys(bucket: str) -> list[str]:
    listed = boto3.client("s3").list_objects_v2(Bucket=bucket)
    return sorted(item["Key"] for item in listed.get("Contents", []))


def test_bootstrap_is_valid_bash() -> None:
    subprocess.run(["bash", "-n", str(BOOTSTRAP)], check=True)
    if shutil.which("shellcheck") is None:
        pytest.skip("SHELLCHECK NOT RUN: no `shellcheck` on PATH (apt-get install shellcheck)")
    result = subprocess.run(
        ["shellcheck", str(BOOTSTRAP)], check=False, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout


def test_boot_runs_the_batch_uploads_the_log_and_shuts_down(
    tmp_path: Path, remote: tuple[str, Path], bucket: str, tiny_model_dir: Path
) -> None:
    url, work = remote
    settings = settings_for(tmp_path, url, bucket, tiny_model_dir)
    env_file = write_env_file(tmp_path / "worker.env", settings)

    first = run_bootstrap(env_file)
    assert first.returncode == 0, first.stdout + first.stderr
    found = keys(bucket)
    assert {"calm.wav", "epic.wav", "cost_report.csv"} <= set(found)
    (log_key,) = [k for k in found if k.startswith("logs/")]
    assert log_key.endswith(".log")
    log = boto3.client("s3").get_object(Bucket=bucket, Key=log_key)["Body"].read().decode()
    assert "worker exited 0" in log
    assert (tmp_path / "shutdown-requested").exists()
    checkout = Path(settings["MUSICGEN_CHECKOUT_DIR"])
    assert git("rev-parse", "HEAD", cwd=checkout) == git("rev-parse", "HEAD", cwd=work)

    # The next boot (a spot worker started again): the ref moved and the checkout was modified.
    (work / "NOTES.md").write_text("moved on\n")
    git("add", "NOTES.md", cwd=work)
    git("commit", "--quiet", "-m", "move main", cwd=work)
    git("push", "--quiet", "bare", "main", cwd=work)
    (checkout / "prompts.txt").write_text("local edit that the reset must drop\n")
    (tmp_path / "shutdown-requested").unlink()
    write_env_file(env_file, {**settings, "MUSICGEN_SHUTDOWN_WHEN_DONE": "0"})

    second = run_bootstrap(env_file)
    assert second.returncode == 0, second.stdout + second.stderr
    assert git("rev-parse", "HEAD", cwd=checkout) == git("rev-parse", "HEAD", cwd=work)
    assert (checkout / "prompts.txt").read_text() == PROMPTS
    assert len([k for k in keys(bucket) if k.startswith("logs/")]) == 2
    assert not (tmp_path / "shutdown-requested").exists()


def test_failed_batch_keeps_the_worker_up(
    tmp_path: Path, remote: tuple[str, Path], bucket: str, tiny_model_dir: Path
) -> None:
    url, _ = remote
    settings = settings_for(tmp_path, url, bucket, tiny_model_dir)
    settings["MUSICGEN_PROMPTS"] = "no-such-prompts.txt"
    result = run_bootstrap(write_env_file(tmp_path / "worker.env", settings))
    assert result.returncode == 2, result.stdout + result.stderr
    assert not (tmp_path / "shutdown-requested").exists()
    (log_key,) = keys(bucket)
    assert log_key.startswith("logs/")


def test_unreachable_repository_does_not_run_a_stale_checkout(
    tmp_path: Path, bucket: str, tiny_model_dir: Path
) -> None:
    settings = settings_for(tmp_path, f"file://{tmp_path}/missing.git", bucket, tiny_model_dir)
    result = run_bootstrap(write_env_file(tmp_path / "worker.env", settings))
    assert result.returncode == 4, result.stdout + result.stderr
    assert "not running the worker" in result.stdout
    assert "worker exited" not in result.stdout
    assert [k for k in keys(bucket) if k.startswith("logs/")]


def test_a_shutdown_mid_batch_saves_the_checkpoint_and_still_uploads_the_log(
    tmp_path: Path, remote: tuple[str, Path], bucket: str, tiny_model_dir: Path
) -> None:
    url, _ = remote
    prompts = tmp_path / "long.txt"
    prompts.write_text("a long ambient piano song ; 120 ; long\n")
    settings = settings_for(tmp_path, url, bucket, tiny_model_dir)
    settings["MUSICGEN_PROMPTS"] = str(prompts)
    env_file = write_env_file(tmp_path / "worker.env", settings)
    # Its own process group stands in for the systemd unit: stopping the unit signals them all.
    boot = subprocess.Popen(
        ["bash", str(BOOTSTRAP)], env=bootstrap_env(env_file), start_new_session=True,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        deadline = time.monotonic() + 180
        while not [k for k in keys(bucket) if k.startswith(".checkpoints/")]:
            assert boot.poll() is None and time.monotonic() < deadline, "no window was saved"
            time.sleep(0.2)
        os.killpg(boot.pid, signal.SIGTERM)
        output, _ = boot.communicate(timeout=60)
    finally:
        if boot.poll() is None:
            os.killpg(boot.pid, signal.SIGKILL)
    assert boot.returncode == 3, output
    assert "saved long.wav at window" in output
    (log_key,) = [k for k in keys(bucket) if k.startswith("logs/")]
    log = boto3.client("s3").get_object(Bucket=bucket, Key=log_key)["Body"].read().decode()
    assert "SIGTERM: waiting for the worker" in log and "worker exited 3" in log
    assert "saved long.wav at window" in log
    assert "long.wav" not in keys(bucket)
    assert not (tmp_path / "shutdown-requested").exists()
