"""Reasons for a worker to stop early: spot interruption notices from the instance metadata
service (IMDSv2), polled in a thread, and its own time cap (--max-hours).

EC2 announces a spot interruption two minutes ahead at /latest/meta-data/spot/instance-action
(404 until then). IMDSv2 needs a session token from a PUT first; an expired token answers 401.
The time cap stops the worker the same way, so a bug or a hung batch cannot bill for days.
"""

from __future__ import annotations

import logging
import threading
import time
import urllib.error
from collections.abc import Callable

from .imds import Imds

log = logging.getLogger(__name__)

NOTICE_PATH = "/latest/meta-data/spot/instance-action"


class SpotWatcher:
    def __init__(self, endpoint: str, interval_s: float = 5.0, timeout_s: float = 2.0) -> None:
        self.imds = Imds(endpoint, timeout_s)
        self.interval_s = interval_s
        self.timeout_s = timeout_s
        self.notice: str | None = None
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

    def poll(self) -> str | None:
        """The notice's body, or None if there is none (or the service cannot be reached)."""
        try:
            notice = self.imds.get(NOTICE_PATH)
        except urllib.error.HTTPError as error:
            log.debug("metadata service answered %s", error.code)
            return None
        except OSError as error:
            log.debug("metadata service unreachable: %s", error)
            return None
        return None if notice is None else notice or "{}"

    def _loop(self) -> None:
        while not self._stopped.is_set():
            notice = self.poll()
            if notice is not None:
                self.notice = notice
                log.warning("spot interruption notice: %s", notice)
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
