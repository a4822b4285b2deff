"""A stand-in for NVIDIA's `nvidia-modprobe` that follows its source, on a fake /proc and /dev.

NVIDIA/nvidia-modprobe, nvidia-modprobe.c and modprobe-utils/nvidia-modprobe-utils.c:

- options (option-table.h): `-c`/`--create-nvidia-device-file MINOR` (repeatable), `-u`/
  `--unified-memory`; anything else is "Invalid commandline" and exit 1;
- without `-u`: load `nvidia` (modprobe_helper: fails when no NVIDIA PCI device exists), then
  `nvidia_mknod(minor)` for each `-c`: major 195, `/dev/nvidiactl` for minor 255
  (NV_CTL_DEVICE_NUM), `/dev/nvidiaN` for 0-254, no name (a failure) otherwise;
- with `-u`: load `nvidia-uvm`, then `nvidia_uvm_mknod(minor)` for each `-c`: the major of
  "nvidia-uvm" in /proc/devices, `/dev/nvidia-uvm` at `minor` and `/dev/nvidia-uvm-tools` at
  `minor + 1`;
- `mknod_helper`: a node with the right major and minor is kept, one with another number is
  removed and made again;
- the exit status is `!ret`: 0 when every step succeeded, 1 at the first failure.

FAKE_NVIDIA_ROOT holds `proc/` (the driver's `driver/nvidia/gpus/*/information` files, one per GPU,
and `devices`, which the fake modules register in) and `dev.json`, the node table
{path: [major, minor]} standing in for /dev. Each call is appended to `calls.jsonl`.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

NV_MAJOR = 195
NV_CTL_MINOR = 255
# The nvidia-uvm module registers a dynamic major; this one is as good as any.
UVM_MAJOR = 508
MODULE_MAJORS = {"nvidia": (NV_MAJOR, "nvidia-frontend"), "nvidia-uvm": (UVM_MAJOR, "nvidia-uvm")}


class Machine:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.proc = root / "proc"
        self.table_path = root / "dev.json"
        self.nodes: dict[str, list[int]] = (
            json.loads(self.table_path.read_text()) if self.table_path.exists() else {}
        )

    def save(self) -> None:
        self.table_path.write_text(json.dumps(self.nodes, indent=1, sort_keys=True))

    def nvidia_gpus(self) -> int:
        gpus = self.proc / "driver" / "nvidia" / "gpus"
        return len(list(gpus.iterdir())) if gpus.is_dir() else 0

    def chardev_major(self, name: str) -> int:
        """nvidia_get_chardev_major: the number before `name` in /proc/devices'
        "Character devices:" section, else -1."""
        devices = self.proc / "devices"
        lines = devices.read_text().splitlines() if devices.exists() else []
        in_chars = False
        for line in lines:
            if line == "Character devices:":
                in_chars = True
            elif not line.strip():
                in_chars = False
            elif in_chars and line.split()[1:] == [name]:
                return int(line.split()[0])
        return -1

    def modprobe(self, module: str) -> bool:
        """modprobe_helper: no NVIDIA PCI device means no module (and a failure)."""
        if self.nvidia_gpus() == 0:
            return False
        major, name = MODULE_MAJORS[module]
        if self.chardev_major(name) < 0:
            devices = self.proc / "devices"
            text = devices.read_text() if devices.exists() else "Character devices:\n"
            head, _, rest = text.partition("Character devices:\n")
            devices.write_text(f"{head}Character devices:\n{major:3d} {name}\n{rest}")
        return True

    def mknod(self, major: int, minor: int, path: str) -> bool:
        if not path:
            return False
        self.nodes[path] = [major, minor]  # kept when equal, replaced otherwise
        return True


def device_file_name(minor: int) -> str:
    """assign_device_file_name: an empty name outside 0-255."""
    if minor < 0 or minor > NV_CTL_MINOR:
        return ""
    return "/dev/nvidiactl" if minor == NV_CTL_MINOR else f"/dev/nvidia{minor}"


def parse(argv: list[str]) -> tuple[bool, list[int]] | None:
    uvm, minors, args = False, [], list(argv)
    while args:
        arg = args.pop(0)
        if arg in ("-u", "--unified-memory"):
            uvm = True
        elif arg in ("-c", "--create-nvidia-device-file") and args:
            minors.append(int(args.pop(0)))
        elif arg.startswith("--create-nvidia-device-file="):
            minors.append(int(arg.split("=", 1)[1]))
        else:
            return None
    return uvm, minors


def run(machine: Machine, uvm: bool, minors: list[int]) -> bool:
    if uvm:
        if not machine.modprobe("nvidia-uvm"):
            return False
        major = machine.chardev_major("nvidia-uvm")
        for minor in minors:
            if major < 0:
                return False
            if not (
                machine.mknod(major, minor, "/dev/nvidia-uvm")
                and machine.mknod(major, minor + 1, "/dev/nvidia-uvm-tools")
            ):
                return False
        return True
    if not machine.modprobe("nvidia"):
        return False
    return all(machine.mknod(NV_MAJOR, minor, device_file_name(minor)) for minor in minors)


def main(argv: list[str]) -> int:
    root = Path(os.environ["FAKE_NVIDIA_ROOT"])
    with open(root / "calls.jsonl", "a") as calls:
        calls.write(json.dumps(argv) + "\n")
    parsed = parse(argv)
    if parsed is None:
        print("ERROR: Invalid commandline, please run `nvidia-modprobe --help` for usage information.",
              file=sys.stderr)
        return 1
    machine = Machine(root)
    ok = run(machine, *parsed)
    machine.save()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
