"""Reasons a run stops early, gathered for its duration: SIGTERM (systemd stopping the unit as
the instance shuts down), SIGINT (Ctrl-C at a terminal), a spot interruption notice and the
--max-hours time cap. Each ends the run the same way: checkpoints saved, leases released,
report written."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from .spot import SpotWatcher, TimeCap


@dataclass
class Stop:
    terminated: threading.Event
    watcher: SpotWatcher | None
    time_cap: TimeCap

    def interrupted(self) -> bool:
        """A shutdown, Ctrl-C or a spot interruption notice came."""
        return self.terminated.is_set() or (self.watcher is not None and self.watcher.interrupted)

    def requested(self) -> bool:
        # Checked before the cap, so a shutdown that comes first is reported as one (exit 3).
        return self.interrupted() or self.time_cap.reached()


@contextmanager
def stop_signals(
    imds_endpoint: str | None, imds_poll_s: float, max_hours: float | None, started: float
) -> Iterator[Stop]:
    """Watch for every reason to stop while the block runs (`started`: the run's time.monotonic()
    reading, from which the time cap counts); the previous signal handlers come back after."""
    watcher = SpotWatcher(imds_endpoint, imds_poll_s).start() if imds_endpoint else None
    terminated = threading.Event()
    previous_handlers = {
        number: signal.signal(number, lambda *_: terminated.set()) for number in (signal.SIGTERM, signal.SIGINT)
    }
    try:
        yield Stop(terminated, watcher, TimeCap(max_hours, started))
    finally:
        for number, handler in previous_handlers.items():
            signal.signal(number, handler)
        if watcher is not None:
            watcher.stop()
