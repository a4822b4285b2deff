"""A stand-in for the parts of `systemctl` the instance's scripts use, running the units' own texts.

- `start --wait UNIT...`: reads each unit (template units `NAME@.service` for `NAME@INSTANCE.service`)
  from FAKE_SYSTEMD_UNIT_DIR, starts its ExecStart with its Environment= lines and `%i` replaced by
  the instance, all units at once, and waits for every one of them (systemctl(1): "--wait ...
  wait until the started units terminate again"); exit 1 when one of them failed. Like systemd it
  gives each unit a clean environment (PATH and HOME only, plus the unit's own settings) and a
  group of its own (its cgroup: a stop signals all of a unit's processes and only them).
- `stop UNIT...`: SIGTERM to the unit's processes and to those of every running unit with
  PartOf=UNIT (systemd.unit(5): "When systemd stops or restarts the units listed here, the action
  is propagated to this unit"), SIGKILL after the unit's TimeoutStopSec= (default 90 s); it
  returns once they are gone.
- `is-system-running`: the manager's state (FAKE_SYSTEMD_STATE, a file; "running" without it),
  printed, exit 0 only for "running" (systemctl(1)).
- `--no-block poweroff`: only notes a "poweroff" entry.

The executable paths in FAKE_SYSTEMD_PATHS (JSON: real path -> test path) are redirected. Each
unit's output goes to JOURNAL_DIR/UNIT.log; FAKE_SYSTEMD_JOURNAL (in JOURNAL_DIR) gets one JSON
line per start and stop. Running units are listed in JOURNAL_DIR/running/. Anything else exits 1,
so a script that needs more of systemctl is caught.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

UNIT_NAME = re.compile(r"(?P<prefix>[^@]+@)(?P<instance>[^.]*)\.service")


def read_unit(unit_dir: Path, name: str) -> dict[str, dict[str, list[str]]]:
    """Section -> setting -> values, `%i` replaced by the instance."""
    match = UNIT_NAME.fullmatch(name)
    path = unit_dir / (f"{match['prefix']}.service" if match else name)
    instance = match["instance"] if match else ""
    sections: dict[str, dict[str, list[str]]] = {}
    section = ""
    for line in path.read_text().splitlines():
        line = line.strip()
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
        elif "=" in line and not line.startswith("#"):
            key, value = line.split("=", 1)
            sections.setdefault(section, {}).setdefault(key, []).append(value.replace("%i", instance))
    return sections


def journal(entry: dict) -> None:
    with open(os.environ["FAKE_SYSTEMD_JOURNAL"], "a") as handle:
        handle.write(json.dumps({**entry, "time": time.time()}) + "\n")


def running_dir() -> Path:
    folder = Path(os.environ["FAKE_SYSTEMD_JOURNAL"]).parent / "running"
    folder.mkdir(exist_ok=True)
    return folder


def seconds(value: str) -> float:
    """A systemd time span of the forms the units use: 110, 100s, 5min, 22min."""
    number = re.fullmatch(r"(\d+)\s*(s|sec|min)?", value.strip())
    if number is None:
        return 90.0
    return float(number[1]) * (60 if number[2] == "min" else 1)


def start(names: list[str]) -> int:
    unit_dir = Path(os.environ["FAKE_SYSTEMD_UNIT_DIR"])
    paths = json.loads(os.environ.get("FAKE_SYSTEMD_PATHS", "{}"))
    logs = Path(os.environ["FAKE_SYSTEMD_JOURNAL"]).parent
    running = []
    for name in names:
        service = read_unit(unit_dir, name).get("Service", {})
        env = {key: os.environ[key] for key in ("PATH", "HOME") if key in os.environ}
        for assignment in service.get("Environment", []):
            for item in shlex.split(assignment):
                key, value = item.split("=", 1)
                env[key] = value
        (exec_start,) = service["ExecStart"]
        command = shlex.split(exec_start)
        command[0] = paths.get(command[0], command[0])
        with open(logs / f"{name}.log", "w") as output:  # the child keeps its own descriptor
            process = subprocess.Popen(
                command, env=env, stdout=output, stderr=subprocess.STDOUT, start_new_session=True
            )
        (running_dir() / name).write_text(str(process.pid))
        journal({"event": "start", "unit": name, "pid": process.pid, "command": command, "env": env})
        running.append((name, process))
    failed = False
    for name, process in running:
        code = process.wait()
        (running_dir() / name).unlink(missing_ok=True)
        journal({"event": "stop", "unit": name, "status": code})
        failed = failed or code != 0
    return 1 if failed else 0


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def stop(names: list[str]) -> int:
    unit_dir = Path(os.environ["FAKE_SYSTEMD_UNIT_DIR"])
    targets = []
    for entry in sorted(running_dir().iterdir()):
        unit = read_unit(unit_dir, entry.name)
        part_of = " ".join(unit.get("Unit", {}).get("PartOf", [])).split()
        if entry.name in names or set(part_of) & set(names):
            timeout = seconds((unit.get("Service", {}).get("TimeoutStopSec") or ["90"])[-1])
            targets.append((entry.name, int(entry.read_text()), timeout))
    for name, pgid, _ in targets:
        journal({"event": "stopping", "unit": name})
        try:
            os.killpg(pgid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    for _, pgid, timeout in targets:
        deadline = time.monotonic() + timeout
        while group_alive(pgid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if group_alive(pgid):
            os.killpg(pgid, signal.SIGKILL)
    return 0


def main(argv: list[str]) -> int:
    if argv == ["--no-block", "poweroff"]:
        journal({"event": "poweroff"})
        return 0
    if argv == ["is-system-running"]:
        state_file = os.environ.get("FAKE_SYSTEMD_STATE")
        state = Path(state_file).read_text().strip() if state_file and Path(state_file).exists() else "running"
        print(state)
        return 0 if state == "running" else 1
    if argv[:2] == ["start", "--wait"] and len(argv) > 2:
        return start(argv[2:])
    if argv[:1] == ["stop"] and len(argv) > 1:
        return stop(argv[1:])
    print(f"fake systemctl: unsupported: {argv}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
