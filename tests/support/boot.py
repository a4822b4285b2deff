"""An instance's boot without an instance: the settings file the UserData writes, a file:// copy
of this project as the worker's git remote, worker/instance/bootstrap.sh's environment, and the units
(the boot unit musicgen-worker.service, its root script, the start script) from the rendered
UserData, run by the fake `systemctl` (tests/fake_systemctl.py) with a fake `nvidia-smi`.

The `remote` fixture built on `make_remote` is in tests/conftest.py.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import boto3
import pytest

from tests.systemd_units import UNIT_DIR
from tests.tf_support import REPO_ROOT

BOOTSTRAP = REPO_ROOT / "worker" / "instance" / "bootstrap.sh"
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
        # Where the units leave their statuses, the boot unit its failure, the end program is.
        "MUSICGEN_RUN_DIR": str(tmp_path / "run"),
        "MUSICGEN_BOOT_FAILURE_FILE": str(tmp_path / "boot" / "failure"),
        "MUSICGEN_END_PROGRAM": str(FILES / "instance_end.py"),
        "MUSICGEN_CLONE_RETRY_S": "0",
        # One torch thread per worker: a unit's environment is clean (no OMP_NUM_THREADS from
        # the tests), and a worker taking every core fights the test processes for them.
        "MUSICGEN_THREADS": "1",
    }


def bootstrap_env(env_file: Path) -> dict[str, str]:
    env = {**os.environ, "MUSICGEN_ENV_FILE": str(env_file)}
    env.pop("MUSICGEN_IMDS_ENDPOINT", None)
    return env


def keys(bucket: str) -> list[str]:
    listed = boto3.client("s3").list_objects_v2(Bucket=bucket)
    return sorted(item["Key"] for item in listed.get("Contents", []))


UNITS = (
    "musicgen-worker.service",
    "musicgen-checkout.service",
    "musicgen-worker@.service",
    "musicgen-scale-in.service",
)
START = "/usr/local/sbin/musicgen-worker-start"
BATCH_RUN = "/usr/local/sbin/musicgen-batch-run"
ENV_FILE = "/etc/musicgen-batch/worker.env"
FAKE_SYSTEMCTL = REPO_ROOT / "tests" / "fake_systemctl.py"
FILES = REPO_ROOT / "terraform" / "modules" / "worker" / "files"
SCALE_IN = "musicgen-scale-in.service"


def executable(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(0o755)
    return path


@dataclass
class Machine:
    """An instance after its UserData ran, under a folder: the rendered units, the boot unit's
    root script and the start script reading the test's settings file, a fake `nvidia-smi` and
    the fake `systemctl` (tests/fake_systemctl.py) on PATH."""

    root: Path
    env: dict[str, str]
    journal: Path
    sbin: Path

    def systemctl(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.root / "bin" / "systemctl"), *args], env=self.env,
            capture_output=True, text=True, timeout=timeout, check=False,
        )

    def boot(self) -> tuple[int, list[dict]]:
        """`systemctl start --wait musicgen-worker.service`: the boot unit's status (from the
        journal) and the journal."""
        self.systemctl("start", "--wait", "musicgen-worker.service")
        events = self.events()
        (status,) = [e["status"] for e in events if e["event"] == "stop" and e["unit"] == "musicgen-worker.service"]
        return status, events

    def start_boot(self) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [str(self.root / "bin" / "systemctl"), "start", "--wait", "musicgen-worker.service"],
            env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True,
        )

    def events(self) -> list[dict]:
        if not self.journal.exists():
            return []
        return [json.loads(line) for line in self.journal.read_text().splitlines()]

    def output(self, unit: str) -> str:
        log = self.journal.parent / f"{unit}.log"
        return log.read_text() if log.exists() else ""

    def set_state(self, state: str) -> None:
        """The manager's state `systemctl is-system-running` prints (`stopping`: a shutdown)."""
        (self.root / "system-state").write_text(f"{state}\n")


def make_machine(root: Path, files: dict[str, str], env_file: Path, *, gpus: int | None,
                 start: Path | None = None) -> Machine:
    """`files`: what the rendered UserData writes. `start`: a stand-in for the start script (all
    three kinds of unit run it), else the real one. `gpus`: GPUs `nvidia-smi -L` lists (None: no
    driver)."""
    units = root / "units"
    units.mkdir(parents=True)
    for unit in UNITS:
        (units / unit).write_text(files[f"{UNIT_DIR}/{unit}"])
    sbin = root / "sbin"
    real_start = executable(sbin / "musicgen-worker-start", files[START].replace(ENV_FILE, str(env_file)))
    batch_run = executable(sbin / "musicgen-batch-run", files[BATCH_RUN].replace(ENV_FILE, str(env_file)))
    bin_dir = root / "bin"
    if gpus is None:
        executable(bin_dir / "nvidia-smi", "#!/bin/sh\nexit 9\n")
    else:
        listing = "".join(f"echo 'GPU {i}: Tesla T4 (UUID: GPU-{i:08d}-1111-2222-3333-444444444444)'\n" for i in range(gpus))
        executable(bin_dir / "nvidia-smi", f'#!/bin/bash\n[ "$1" = -L ] || exit 9\n{listing}')
    journal = root / "journal" / "journal.jsonl"
    journal.parent.mkdir()
    # The fake's settings live in its wrapper, as systemd's live in the manager: the units' clean
    # environments do not carry them.
    fake_settings = {
        "FAKE_SYSTEMD_UNIT_DIR": str(units),
        "FAKE_SYSTEMD_PATHS": json.dumps({START: str(start or real_start), BATCH_RUN: str(batch_run)}),
        "FAKE_SYSTEMD_JOURNAL": str(journal),
        "FAKE_SYSTEMD_STATE": str(root / "system-state"),
    }
    exports = "".join(f"export {name}={shlex.quote(value)}\n" for name, value in fake_settings.items())
    executable(bin_dir / "systemctl", f"#!/bin/bash\n{exports}exec {sys.executable} {FAKE_SYSTEMCTL} \"$@\"\n")
    env = {"PATH": f"{bin_dir}:{os.environ['PATH']}", "HOME": str(root)}
    return Machine(root, env, journal, sbin)


def stand_in_start(root: Path, env_file: Path, run_dir: Path, told: Path, *, statuses: list[str | None],
                   reasons: list[str] | None = None, checkout_status: int = 0,
                   checkout_reason: str = "", scale_in_status: int = 0) -> Path:
    """A stand-in for the start script, reading the settings file as it does: the checkout exits `checkout_status` (leaving
    `checkout_reason` as the real one does), each GPU's worker leaves its status from `statuses`
    (None: none) and its reason from `reasons` in the run folder, and the scale-in copies what the
    boot unit told the end program (its failure file) to `told`, then exits `scale_in_status`."""
    reasons = reasons or [""] * len(statuses)
    worker_cases = "".join(
        f"    {i}) {'' if code is None else f'echo {code} > {run_dir}/gpu{i}.exit; '}"
        f"{f'echo {shlex.quote(reason)} > {run_dir}/gpu{i}.reason; ' if reason else ''}"
        f"exit {code or 1} ;;\n"
        for i, (code, reason) in enumerate(zip(statuses, reasons, strict=True))
    )
    checkout_line = f"echo {shlex.quote(checkout_reason)} > {run_dir}/checkout.reason; " if checkout_reason else ""
    return executable(root / "stand-in-start", (
        f"#!/bin/bash\nset -a\n. {env_file}\nset +a\nmkdir -p {run_dir}\n"
        'case "$1" in\n'
        f"  checkout) {checkout_line}exit {checkout_status} ;;\n"
        f'  worker) case "$2" in\n{worker_cases}    *) exit 1 ;;\n  esac ;;\n'
        f'  scale-in) if [ -f "$MUSICGEN_BOOT_FAILURE_FILE" ]; then cp "$MUSICGEN_BOOT_FAILURE_FILE" {told}; '
        f"else : > {told}; fi; exit {scale_in_status} ;;\n"
        "esac\nexit 1\n"
    ))


def run_boot_unit(
    files: dict[str, str],
    folder: Path,
    env_file: Path,
    *,
    gpus: int | None,
    statuses: list[str | None],
    reasons: list[str] | None = None,
    checkout_status: int = 0,
    checkout_reason: str = "",
    scale_in_status: int = 0,
) -> tuple[int, list[dict], str, str | None]:
    """The boot unit, from the rendered UserData `files`, reading `env_file`, its units run by the
    fake systemctl with a stand-in start script (`stand_in_start`). The run folder holds a stale
    status of GPU 0 from an earlier run in this boot. Returns the boot unit's status, the
    journal, its output, and what the end program was told (None: the scale-in never ran; "":
    no failure); everything it writes stays in `folder`/boot-unit/."""
    base = folder / "boot-unit"
    settings = dict(
        line.split("=", 1) for line in env_file.read_text().splitlines() if "=" in line
    )
    run_dir = Path(settings["MUSICGEN_RUN_DIR"].strip("'"))
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "gpu0.exit").write_text("0\n")
    told = base / "told"
    start = stand_in_start(base, env_file, run_dir, told, statuses=statuses, reasons=reasons,
                           checkout_status=checkout_status, checkout_reason=checkout_reason,
                           scale_in_status=scale_in_status)
    machine = make_machine(base, files, env_file, gpus=gpus, start=start)
    status, events = machine.boot()
    return status, events, machine.output("musicgen-worker.service"), told.read_text() if told.exists() else None
