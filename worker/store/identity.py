"""Who holds a lease: by default `HOST:PID:START` (start = the process's start time, epoch s).

Two workers on one host (one per GPU, or a second run started by hand) get different names, so
neither takes over the other's leases. A rerun on the same host recognises a lease of its own
earlier life by the host name and a process that no longer exists (or whose pid now belongs
to a process started at another time).
"""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

# A recorded start time and the one /proc gives for the same process agree to the clock tick;
# more than this apart, the pid has been reused by another process.
START_TOLERANCE_S = 2.0


def _boot_time() -> float | None:
    try:
        for line in Path("/proc/stat").read_text().splitlines():
            if line.startswith("btime "):
                return float(line.split()[1])
    except OSError:
        pass
    return None


def process_start(pid: int) -> float | None:
    """Start time of `pid` in epoch seconds from /proc, or None where there is no /proc."""
    boot = _boot_time()
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    if boot is None:
        return None
    # The command name (field 2) may hold spaces and parentheses; fields after it are plain.
    fields = stat[stat.rindex(")") + 2 :].split()
    return boot + int(fields[19]) / os.sysconf("SC_CLK_TCK")


def default_worker_id() -> str:
    pid = os.getpid()
    start = process_start(pid)
    return f"{socket.gethostname()}:{pid}:{int(start if start is not None else time.time())}"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: alive
        return True
    return True


def earlier_self(owner: str, me: str) -> bool:
    """Whether a lease owner named `owner` is an earlier, now dead, worker process on this
    host (both names in the default form); never true for a live process."""
    try:
        host, pid_text, start_text = owner.rsplit(":", 2)
        my_host = me.rsplit(":", 2)[0]
        pid, start = int(pid_text), float(start_text)
    except ValueError:
        return False
    if host != my_host or owner == me or pid <= 0:
        return False
    if not _alive(pid):
        return True
    now_start = process_start(pid)
    return now_start is not None and abs(now_start - start) > START_TOLERANCE_S
