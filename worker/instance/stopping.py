"""Why a run stops early, decided once, when the worker first notices it should stop. Every
reason ends the run the same way (checkpoints saved, leases released, report written); only the
exit code and the last log line differ, and the boot unit acts on the code (CONTRACT: 3 means
the instance is going away and nothing else; any other code ends the batch, so the instance
scales itself in):

| reason | exit |
|---|---|
| the instance is stopping: a spot interruption notice, the Auto Scaling target lifecycle state `Terminated`, or a system shutdown (`systemctl is-system-running` prints `stopping`) | 3 |
| the time cap (--max-hours), noticed by the worker, or a signal that came after it (systemd's `RuntimeMaxSec=`) | 5 |
| SIGINT (Ctrl-C) while the instance is not stopping | 130 |
| SIGTERM (`systemctl stop`, `kill`) while the instance is not stopping | 143 |

A spot notice or a Terminated state polled from the metadata service counts even before any
signal. A signal alone says nothing about the instance: when one comes, the metadata service is
asked once more and systemd is asked for its state.
"""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from worker.instance.spot import SpotWatcher, TimeCap
from worker.run.results import EXIT_SIGINT, EXIT_SIGTERM, EXIT_STOPPED, EXIT_TIME_CAP

# systemctl(1), is-system-running: prints the manager's state, one of initializing, starting,
# running, degraded, maintenance, stopping ("the manager is shutting down"), offline or
# unknown, and exits non-zero for every state but running.
SYSTEM_STOPPING = "stopping"


def system_stopping(run: Callable[..., subprocess.CompletedProcess] = subprocess.run) -> bool:
    """Whether systemd is shutting the system down; False where there is no systemctl (a
    container, macOS) or it does not answer. `run` is subprocess.run or a stand-in."""
    try:
        done = run(["systemctl", "is-system-running"], capture_output=True, text=True, timeout=5, check=False)
    except (OSError, subprocess.SubprocessError):
        return False
    return done.stdout.strip() == SYSTEM_STOPPING


@dataclass(frozen=True)
class Cause:
    code: int  # the exit code (worker/run/results.py)
    why: str  # the reason in words, for the log: "stopped ..."


@dataclass
class Stop:
    watcher: SpotWatcher | None
    time_cap: TimeCap
    system_stopping: Callable[[], bool] = system_stopping
    signals: list[int] = field(default_factory=list)  # received, in order (set by the handlers)
    cause: Cause | None = None

    def requested(self) -> bool:
        """Whether the run must stop; the first time it must, the reason is decided (`cause`)."""
        if self.cause is None:
            self.cause = self._cause()
        return self.cause is not None

    def code(self) -> int | None:
        """The exit code of the reason the run stopped, or None when nothing stopped it."""
        return None if self.cause is None else self.cause.code

    def _cause(self) -> Cause | None:
        if self.watcher is not None and self.watcher.interrupted:
            return Cause(EXIT_STOPPED, f"stopped because the instance is stopping ({self.watcher.reason})")
        # Checked before the signals: a signal after the deadline is systemd's RuntimeMaxSec.
        if self.time_cap.reached():
            return Cause(EXIT_TIME_CAP, f"stopped at the time cap of {self.time_cap.hours:g} h (--max-hours)")
        if not self.signals:
            return None
        going = self._instance_going()
        if going is not None:
            return Cause(EXIT_STOPPED, f"stopped because the instance is stopping ({going})")
        if self.signals[0] == signal.SIGINT:
            return Cause(EXIT_SIGINT, "stopped by Ctrl-C (SIGINT)")
        return Cause(EXIT_SIGTERM, "stopped by SIGTERM (systemctl stop, kill) while the instance is not stopping")

    def _instance_going(self) -> str | None:
        """Asked once a signal came: does the metadata service or systemd say the instance is
        going away?"""
        if self.watcher is not None:
            reason = self.watcher.check()
            if reason is not None:
                return reason
        if self.system_stopping():
            return f"a system shutdown (systemctl is-system-running: {SYSTEM_STOPPING})"
        return None


@contextmanager
def stop_signals(
    imds_endpoint: str | None,
    imds_poll_s: float,
    max_hours: float | None,
    started: float,
    is_system_stopping: Callable[[], bool] = system_stopping,
    clock: Callable[[], float] = time.monotonic,
) -> Iterator[Stop]:
    """Watch for every reason to stop while the block runs (`started`: the run's time.monotonic()
    reading, from which the time cap counts); the previous signal handlers come back after.

    A SIGINT that arrives ignored stays ignored: a shell starts a background job (`cmd &`,
    `nohup cmd &`) with SIGINT ignored so that a Ctrl-C typed later reaches the foreground
    only (POSIX, Shell Command Language, "Asynchronous Lists"). SIGTERM always stops the run."""
    watcher = SpotWatcher(imds_endpoint, imds_poll_s).start() if imds_endpoint else None
    stop = Stop(watcher, TimeCap(max_hours, started, clock), is_system_stopping)
    watched = [signal.SIGTERM]
    if signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:
        watched.append(signal.SIGINT)
    previous_handlers = {
        number: signal.signal(number, lambda number, _frame: stop.signals.append(number))
        for number in watched
    }
    try:
        yield stop
    finally:
        for number, handler in previous_handlers.items():
            signal.signal(number, handler)
        if watcher is not None:
            watcher.stop()
