"""musicgen-gpu-devices.service's root script, from the rendered UserData, run against a stand-in
`nvidia-modprobe` that follows NVIDIA's source (tests/fake_nvidia_modprobe.py) on a fake /proc
holding the driver's per-GPU `information` files: the device nodes it leaves (name -> major,
minor), and that the worker units may open every one of them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.systemd_units import values, worker_units
from tests.tf_support import REPO_ROOT

STAND_IN = REPO_ROOT / "tests" / "fake_nvidia_modprobe.py"
SCRIPT = "/usr/local/sbin/musicgen-gpu-devices"
NV_MAJOR = 195


def machine(tmp_path: Path, minors: list[int]) -> Path:
    """A fake root: one `proc/driver/nvidia/gpus/<bus>/information` per GPU, written as the open
    driver's nv_procfs_read_gpu_info does ("Device Minor: \\t %u"), and an empty /dev."""
    root = tmp_path / "nvidia"
    (root / "proc").mkdir(parents=True)
    for index, minor in enumerate(minors):
        bus = root / "proc" / "driver" / "nvidia" / "gpus" / f"0000:00:{0x1e + index:02x}.0"
        bus.mkdir(parents=True)
        (bus / "information").write_text(
            "Model: \t\t Tesla T4\nIRQ:   \t\t 42\nBus Type: \t PCIe\n"
            f"Bus Location: \t 0000:00:{0x1e + index:02x}.0\nDevice Minor: \t {minor}\n"
            "GPU Excluded:\t No\n"
        )
    return root


def run_devices(script: str, root: Path, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    stand_in = bin_dir / "nvidia-modprobe"
    stand_in.write_text(f"#!/bin/sh\nexec {sys.executable} {STAND_IN} \"$@\"\n")
    stand_in.chmod(0o755)
    program = tmp_path / "musicgen-gpu-devices"
    program.write_text(script)
    return subprocess.run(
        ["bash", str(program)],
        env={
            "PATH": f"{bin_dir}:/usr/bin:/bin",
            "MUSICGEN_PROC_DIR": str(root / "proc"),
            "FAKE_NVIDIA_ROOT": str(root),
        },
        capture_output=True, text=True, timeout=60, check=False,
    )


def nodes(root: Path) -> dict[str, tuple[int, int]]:
    table = root / "dev.json"
    return {path: tuple(number) for path, number in json.loads(table.read_text()).items()} if table.exists() else {}


def uvm_major(root: Path) -> int:
    for line in (root / "proc" / "devices").read_text().splitlines():
        if line.endswith(" nvidia-uvm"):
            return int(line.split()[0])
    raise AssertionError("nvidia-uvm is not registered")


@pytest.mark.parametrize("minors", [[0], [0, 1, 2, 3], [2, 5]], ids=["one-gpu", "four-gpus", "sparse-minors"])
def test_every_node_gets_its_own_minor(user_data_files: dict[str, str], tmp_path: Path, minors: list[int]) -> None:
    """The control node, the two unified-memory nodes at 0 and 1, and each GPU at the minor the
    driver reports for it (not its index)."""
    root = machine(tmp_path, minors)
    run = run_devices(user_data_files[SCRIPT], root, tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr
    uvm = uvm_major(root)
    assert nodes(root) == {
        "/dev/nvidiactl": (NV_MAJOR, 255),
        "/dev/nvidia-uvm": (uvm, 0),
        "/dev/nvidia-uvm-tools": (uvm, 1),
        **{f"/dev/nvidia{minor}": (NV_MAJOR, minor) for minor in minors},
    }


def test_wrong_nodes_left_by_an_earlier_run_are_made_again(user_data_files: dict[str, str], tmp_path: Path) -> None:
    root = machine(tmp_path, [0])
    (root / "proc" / "devices").write_text("Character devices:\n195 nvidia-frontend\n508 nvidia-uvm\n\n")
    (root / "dev.json").write_text(json.dumps({"/dev/nvidia-uvm": [508, 1], "/dev/nvidia-uvm-tools": [508, 2]}))
    run = run_devices(user_data_files[SCRIPT], root, tmp_path)
    assert run.returncode == 0, run.stderr
    assert nodes(root)["/dev/nvidia-uvm"] == (508, 0)
    assert nodes(root)["/dev/nvidia-uvm-tools"] == (508, 1)


def test_the_stand_in_reproduces_nvidia_modprobes_uvm_numbering(tmp_path: Path) -> None:
    """The stand-in itself, as NVIDIA's source behaves: a second `-c` with `-u` moves
    nvidia-uvm onto the tools device's minor and nvidia-uvm-tools onto a minor that does not
    exist. (The devices script once asked for exactly that.)"""
    root = machine(tmp_path, [0])
    done = subprocess.run(
        [sys.executable, str(STAND_IN), "-u", "-c", "0", "-c", "1"],
        env={"FAKE_NVIDIA_ROOT": str(root)}, capture_output=True, text=True, check=False,
    )
    assert done.returncode == 0, done.stderr
    uvm = uvm_major(root)
    assert nodes(root) == {"/dev/nvidia-uvm": (uvm, 1), "/dev/nvidia-uvm-tools": (uvm, 2)}


def test_without_an_nvidia_gpu_the_unit_fails(user_data_files: dict[str, str], tmp_path: Path) -> None:
    """nvidia-modprobe loads nothing without an NVIDIA PCI device; the unit fails, and the workers
    (which only want it) find CUDA unusable and say so."""
    root = machine(tmp_path, [])
    run = run_devices(user_data_files[SCRIPT], root, tmp_path)
    assert run.returncode != 0
    assert nodes(root) == {}


def test_a_driver_file_without_a_minor_fails_the_unit(user_data_files: dict[str, str], tmp_path: Path) -> None:
    root = machine(tmp_path, [0])
    (info,) = (root / "proc").rglob("information")
    info.write_text("Model: \t\t Tesla T4\n")
    run = run_devices(user_data_files[SCRIPT], root, tmp_path)
    assert run.returncode == 1
    assert run.stderr == f"musicgen-gpu-devices: no device minor in {info}\n"


def test_the_worker_units_may_open_every_node_made(user_data_files: dict[str, str], tmp_path: Path) -> None:
    """Each node is allowed by path, or by its major's name in /proc/devices as
    DeviceAllow=char-NAME reads it (systemd.resource-control(5))."""
    root = machine(tmp_path, [0, 1])
    assert run_devices(user_data_files[SCRIPT], root, tmp_path).returncode == 0
    names = {
        int(line.split()[0]): line.split()[1]
        for line in (root / "proc" / "devices").read_text().splitlines()
        if line[:1].isspace() or line[:1].isdigit()
    }
    for unit_name, unit in worker_units(user_data_files).items():
        allowed = {value.split()[0] for value in values(unit, "Service", "DeviceAllow")}
        for path, (major, _) in nodes(root).items():
            assert path in allowed or f"char-{names[major]}" in allowed, (unit_name, path)
