"""Reasons for a worker to stop early: notices from the instance metadata service (IMDSv2) that
the instance is going away, polled in a thread, and its own time cap (--max-hours).

Two items say the instance is going away:
- `/latest/meta-data/spot/instance-action`: EC2's spot interruption notice, two minutes ahead
  (404 until then);
- `/latest/meta-data/autoscaling/target-lifecycle-state`: the state Auto Scaling is moving the
  instance to; `Terminated` means it is leaving its group (a rebalance, a scale-in, an instance
  refresh). AWS: "Retrieve the target lifecycle state through instance metadata", Amazon EC2
  Auto Scaling User Guide; the steady states are InService, Terminated, Detached, Standby and
  the Warmed:* states of a warm pool. Off an Auto Scaling group the item answers 404.
IMDSv2 needs a session token from a PUT first; an expired token answers 401.
The time cap stops the worker the same way, so a bug or a hung batch cannot bill for days.
"""

from __future__ import annotations

import logging
import threading
import time
import urllib.error
from collections.abc import Callable

from worker.instance.imds import Imds

log = logging.getLogger(__name__)

NOTICE_PATH = "/latest/meta-data/spot/instance-action"
LIFECYCLE_PATH = "/latest/meta-data/autoscaling/target-lifecycle-state"
LEAVING_STATE = "Terminated"


class SpotWatcher:
    """Polls the metadata service for a spot notice or the Auto Scaling state `Terminated`;
    `interrupted` turns true on either, and `reason` says which."""

    def __init__(self, endpoint: str, interval_s: float = 5.0, timeout_s: float = 2.0) -> None:
        self.imds = Imds(endpoint, timeout_s)
        self.interval_s = interval_s
        self.timeout_s = timeout_s
        self.reason: str | None = None
        self._stopped = threading.Event()
        self._noticed = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="spot-watcher", daemon=True)

    @property
    def interrupted(self) -> bool:
        return self._noticed.is_set()

    def start(self) -> SpotWatcher:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopped.set()
        self._thread.join(timeout=self.timeout_s + 1)

    def _get(self, path: str) -> str | None:
        """The item's body, or None where there is none (or the service cannot be reached)."""
        try:
            return self.imds.get(path)
        except urllib.error.HTTPError as error:
            log.debug("metadata service answered %s for %s", error.code, path)
        except OSError as error:
            log.debug("metadata service unreachable: %s", error)
        return None

    def poll(self) -> str | None:
        """The spot notice's body, or None if there is none."""
        notice = self._get(NOTICE_PATH)
        return None if notice is None else notice or "{}"

    def leaving_group(self) -> bool:
        """Whether Auto Scaling is taking this instance out of service (target state Terminated)."""
        return (self._get(LIFECYCLE_PATH) or "").strip() == LEAVING_STATE

    def check(self) -> str | None:
        """Why the instance is going away, in words, or None."""
        notice = self.poll()
        if notice is not None:
            return f"spot interruption notice: {notice}"
        if self.leaving_group():
            return f"Auto Scaling target lifecycle state {LEAVING_STATE}"
        return None

    def _loop(self) -> None:
        while not self._stopped.is_set():
            reason = self.check()
            if reason is not None:
                self.reason = reason
                log.warning("the instance is going away: %s", reason)
                self._noticed.set()
                return
            self._stopped.wait(self.interval_s)


class TimeCap:
    """`reached()` turns true `hours` after `started` (a time.monotonic() reading) and stays so;
    never without a cap. The first time it turns true it says so in the log."""

    def __init__(self, hours: float | None, started: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.deadline = None if hours is None else started + hours * 3600
        self.hours = hours
        self.clock = clock
        self.hit = False

    def reached(self) -> bool:
        if not self.hit and self.deadline is not None and self.clock() >= self.deadline:
            self.hit = True
            log.warning("time cap of %g h reached (--max-hours): stopping as on a spot notice", self.hours)
        return self.hit
