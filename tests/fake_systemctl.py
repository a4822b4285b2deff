"""A stand-in for `systemctl start --wait UNIT...` that runs the units' own texts.

Reads each unit (template units `NAME@.service` for `NAME@INSTANCE.service`) from
FAKE_SYSTEMD_UNIT_DIR, starts its ExecStart with its Environment= lines and `%i` replaced by the
instance, all units at once as systemd would, and waits for every one of them. Like systemd it
gives each unit a clean environment (PATH and HOME only, plus the unit's own settings). The
executable paths in FAKE_SYSTEMD_PATHS (JSON: real path -> test path) are redirected. Each unit's
output goes to JOURNAL_DIR/UNIT.log; FAKE_SYSTEMD_JOURNAL gets one JSON line per start and stop.
`--no-block poweroff` only notes a "poweroff" entry there. Anything else exits 1, so a script that
needs more of systemctl is caught.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path


def read_unit(unit_dir: Path, name: str) -> tuple[dict[str, list[str]], str]:
    match = re.fullmatch(r"(?P<prefix>[^@]+@)(?P<instance>[^.]*)\.service", name)
    path = unit_dir / (f"{match['prefix']}.service" if match else name)
    instance = match["instance"] if match else ""
    settings: dict[str, list[str]] = {}
    section = ""
    for line in path.read_text().splitlines():
        line = line.strip()
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
        elif section == "Service" and "=" in line and not line.startswith("#"):
            key, value = line.split("=", 1)
            settings.setdefault(key, []).append(value.replace("%i", instance))
    return settings, instance


def journal(entry: dict) -> None:
    with open(os.environ["FAKE_SYSTEMD_JOURNAL"], "a") as handle:
        handle.write(json.dumps({**entry, "time": time.time()}) + "\n")


def main(argv: list[str]) -> int:
    if argv == ["--no-block", "poweroff"]:
        journal({"event": "poweroff"})
        return 0
    if argv[:2] != ["start", "--wait"] or len(argv) < 3:
        print(f"fake systemctl: unsupported: {argv}", file=sys.stderr)
        return 1
    unit_dir = Path(os.environ["FAKE_SYSTEMD_UNIT_DIR"])
    paths = json.loads(os.environ.get("FAKE_SYSTEMD_PATHS", "{}"))
    logs = Path(os.environ["FAKE_SYSTEMD_JOURNAL"]).parent
    running = []
    for name in argv[2:]:
        settings, _ = read_unit(unit_dir, name)
        env = {key: os.environ[key] for key in ("PATH", "HOME") if key in os.environ}
        for assignment in settings.get("Environment", []):
            for item in shlex.split(assignment):
                key, value = item.split("=", 1)
                env[key] = value
        (exec_start,) = settings["ExecStart"]
        command = shlex.split(exec_start)
        command[0] = paths.get(command[0], command[0])
        with open(logs / f"{name}.log", "w") as output:  # the child keeps its own descriptor
            process = subprocess.Popen(command, env=env, stdout=output, stderr=subprocess.STDOUT)
        journal({"event": "start", "unit": name, "pid": process.pid, "command": command, "env": env})
        running.append((name, process))
    failed = False
    for name, process in running:
        code = process.wait()
        journal({"event": "stop", "unit": name, "status": code})
        failed = failed or code != 0
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
