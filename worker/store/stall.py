"""A log line while a call to S3 has not answered yet.

botocore waits up to its read timeout for each try (60 s by default: `DEFAULT_TIMEOUT` in
botocore/endpoint.py, `read_timeout` in botocore.config.Config) and, in the standard retry mode,
retries a timed-out read silently (ReadTimeoutError is an HTTPClientError, which
botocore/retries/standard.py counts as transient), so an endpoint that accepts connections and
never answers keeps a worker quiet for minutes. `announced` says what the worker is waiting
for, every `every_s` seconds until the call returns."""

from __future__ import annotations

import itertools
import logging
import math
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

log = logging.getLogger(__name__)

# Long enough that an ordinary request (S3 answers in well under a second) never logs, short
# enough that a stall shows long before botocore's first timeout.
DEFAULT_EVERY_S = 10.0
STANDARD_MODE_ATTEMPTS = 3  # botocore's standard retry mode without AWS_MAX_ATTEMPTS


def limits(client: object) -> str:
    """How long botocore keeps trying, from the client's own configuration."""
    config = getattr(getattr(client, "meta", None), "config", None)
    if config is None:
        return "botocore's timeouts and retries apply"
    attempts = (config.retries or {}).get("total_max_attempts", STANDARD_MODE_ATTEMPTS)
    return f"botocore waits up to {config.read_timeout:g} s for each of {attempts} tries"


class _Watcher:
    """One daemon thread for every call in flight: a call only registers and unregisters (a
    dictionary entry under a lock), so the lease heartbeat's frequent calls cost nothing more."""

    def __init__(self) -> None:
        self._wake = threading.Condition()
        self._calls: dict[int, list] = {}  # token -> [what, started, due, every_s, client]
        self._tokens = itertools.count()
        self._sleeps_until = math.inf
        self._thread: threading.Thread | None = None

    def add(self, what: str, every_s: float, client: object) -> int:
        now = time.monotonic()
        token = next(self._tokens)
        with self._wake:
            self._calls[token] = [what, now, now + every_s, every_s, client]
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="s3-wait", daemon=True)
                self._thread.start()
            elif now + every_s < self._sleeps_until:
                self._wake.notify()
        return token

    def remove(self, token: int) -> None:
        with self._wake:
            self._calls.pop(token, None)

    def _run(self) -> None:
        with self._wake:
            while True:
                now = time.monotonic()
                for entry in self._calls.values():
                    what, started, due, every_s, client = entry
                    if due <= now:
                        log.warning(
                            "waiting for S3: %s has had no answer for %.0f s (%s)",
                            what, now - started, limits(client),
                        )
                        entry[2] = now + every_s
                self._sleeps_until = min((entry[2] for entry in self._calls.values()), default=math.inf)
                self._wake.wait(None if self._sleeps_until == math.inf else self._sleeps_until - now)


_WATCHER = _Watcher()


@contextmanager
def announced(what: str, every_s: float, client: object) -> Iterator[None]:
    """Log that `what` is still awaited every `every_s` seconds while the block runs."""
    token = _WATCHER.add(what, every_s, client)
    try:
        yield
    finally:
        _WATCHER.remove(token)
