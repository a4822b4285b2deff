"""An instance's boot without an instance: the settings file the UserData writes, a file:// copy
of this project as the worker's git remote, worker/bootstrap.sh's environment, and the boot
unit's root script (musicgen-worker.service) run with stand-ins for `systemctl` and `nvidia-smi`.

The `remote` fixture built on `make_remote` is in tests/conftest.py.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import boto3
import pytest

from tests.systemd_units import BOOT_UNIT, exec_programs, unit_with_dropins
from tests.tf_support import REPO_ROOT

BOOTSTRAP = REPO_ROOT / "worker" / "bootstrap.sh"
PROMPTS = "calm piano ; 1.5 ; calm\nepic cinematic drums ; 2 ; epic.wav\n"
GIT_IDENTITY = ["-c", "user.name=musicgen-batch", "-c", "user.email=musicgen-batch@example.com"]


def git(*args: str, cwd: Path) -> str:
    result = subprocess.run(
        ["git", *GIT_IDENTITY, *args], cwd=cwd, check=True, capture_output=True, text=True
    )
    return result.stdout.strip()


def make_remote(root: Path) -> tuple[str, Path]:
    """A bare repository holding this project's files plus a prompts file; returns its file://
    URL and a working clone to push changes from."""
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
    """The boot's bucket, in moto; a module uses this fixture with `bucket = boot.bucket`."""
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
    }


def bootstrap_env(env_file: Path) -> dict[str, str]:
    env = {**os.environ, "MUSICGEN_ENV_FILE": str(env_file)}
    env.pop("MUSICGEN_IMDS_ENDPOINT", None)
    return env


def keys(bucket: str) -> list[str]:
    listed = boto3.client("s3").list_objects_v2(Bucket=bucket)
    return sorted(item["Key"] for item in listed.get("Contents", []))


def run_boot_unit(
    files: dict[str, str],
    folder: Path,
    env_file: Path,
    *,
    gpus: int | None,
    statuses: list[str | None],
    checkout_status: int = 0,
    scale_in_status: int = 0,
) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    """The boot unit's root script, from the rendered UserData `files`, reading `env_file`, with
    a stand-in `systemctl`: the checkout unit exits `checkout_status`, each worker unit leaves
    its status from `statuses` in the run folder (None: none), the scale-in unit exits
    `scale_in_status`. `nvidia-smi` lists `gpus` GPUs (None: no driver). The run folder holds a
    stale status of GPU 0 from an earlier run in this boot. Returns the run and the systemctl
    calls in order; everything it writes stays in `folder`/boot-unit/."""
    ((_, _, program),) = exec_programs(unit_with_dropins(BOOT_UNIT, files))
    base = folder / "boot-unit"
    run_dir, fake_bin = base / "run", base / "bin"
    for path in (run_dir, fake_bin):
        path.mkdir(parents=True, exist_ok=True)
    script = base / "musicgen-batch-run"
    script.write_text(files[program])
    (run_dir / "gpu0.exit").write_text("0\n")
    calls = base / "systemctl-calls"
    calls.unlink(missing_ok=True)
    writes = "".join(
        f"echo {code} > {run_dir}/gpu{i}.exit\n" for i, code in enumerate(statuses) if code is not None
    )
    (fake_bin / "systemctl").write_text(
        f'#!/bin/bash\necho "$*" >> {calls}\n'
        f'case "$*" in\n'
        f'  "start --wait musicgen-checkout.service") exit {checkout_status} ;;\n'
        f'  "start --wait musicgen-worker@"*) {writes.strip() or ":"}\n'
        f'    grep -qvx 0 {run_dir}/gpu*.exit && exit 1; exit 0 ;;\n'
        f'  "start --wait musicgen-scale-in.service") exit {scale_in_status} ;;\n'
        f'  "--no-block poweroff") exit 0 ;;\n'
        f'esac\nexit 1\n'
    )
    if gpus is None:
        (fake_bin / "nvidia-smi").write_text("#!/bin/sh\nexit 9\n")
    else:
        listing = "".join(f"echo 'GPU {i}: Tesla T4 (UUID: GPU-{i})'\n" for i in range(gpus))
        (fake_bin / "nvidia-smi").write_text(f'#!/bin/bash\n[ "$1" = -L ] || exit 9\n{listing}')
    for tool in fake_bin.iterdir():
        tool.chmod(0o755)
    run = subprocess.run(
        ["bash", str(script)],
        env={
            "PATH": f"{fake_bin}:/usr/bin:/bin",
            "MUSICGEN_ENV_FILE": str(env_file),
            "MUSICGEN_RUN_DIR": str(run_dir),
        },
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    return run, calls.read_text().splitlines() if calls.exists() else []
