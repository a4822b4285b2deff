"""A log line while a call to S3 has not answered yet.

botocore waits up to its read timeout for each try (60 s by default: `DEFAULT_TIMEOUT` in
botocore/endpoint.py, `read_timeout` in botocore.config.Config) and, in the standard retry mode,
retries a timed-out read silently (ReadTimeoutError is an HTTPClientError, which
botocore/retries/standard.py counts as transient), so an endpoint that accepts connections and
never answers keeps a worker quiet for minutes. `announced` says what the worker is waiting
for, every `every_s` seconds until the call returns."""

from __future__ import annotations

import logging
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


@contextmanager
def announced(what: str, every_s: float, client: object) -> Iterator[None]:
    """Log `what` is still awaited every `every_s` seconds while the block runs."""
    done = threading.Event()
    started = time.monotonic()

    def watch() -> None:
        while not done.wait(every_s):
            log.warning(
                "waiting for S3: %s has had no answer for %.0f s (%s)",
                what, time.monotonic() - started, limits(client),
            )

    threading.Thread(target=watch, name="s3-wait", daemon=True).start()
    try:
        yield
    finally:
        done.set()
