"""When to try an AWS call of a worker instance again, for the instance's root-owned programs (the
end program, the git credential helper). The standard library and botocore only.

- IAM is eventually consistent: a role, its policy or its instance profile created minutes ago
  may not work yet, so the first calls of a new instance can be refused (AccessDenied, or no
  credentials at all from the metadata service). While the instance is younger than
  MUSICGEN_IAM_GRACE_S seconds (its uptime, /proc/uptime) those refusals are tried again; after
  that a refusal is what it says. Unset (a laptop running the launcher's check): never.
- Auto Scaling answers ResourceContention or ScalingActivityInProgress while another change to the
  group is under way (TerminateInstanceInAutoScalingGroup's and SetDesiredCapacity's API
  reference): several instances ending together meet these for minutes, so they are tried again
  for as long as the caller allows.
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable, Mapping
from typing import TypeVar

from botocore.exceptions import ClientError, NoCredentialsError, PartialCredentialsError

T = TypeVar("T")
ACCESS_DENIED = frozenset({"AccessDenied", "AccessDeniedException", "UnauthorizedOperation"})
GROUP_BUSY = frozenset({"ResourceContention", "ScalingActivityInProgress"})
FIRST_WAIT_S = 2.0
LONGEST_WAIT_S = 60.0


def error_code(error: BaseException) -> str | None:
    if isinstance(error, ClientError):
        return error.response.get("Error", {}).get("Code")
    return None


def describe(error: BaseException) -> str:
    """One line: AWS's code and message, else the exception's own text."""
    if isinstance(error, ClientError):
        details = error.response.get("Error", {})
        message = " ".join(str(details.get("Message", "")).split())
        code = details.get("Code", "error")
        return f"{code}: {message}" if message else code
    return " ".join(str(error).split()) or type(error).__name__


def uptime_s(path: str = "/proc/uptime") -> float:
    """Seconds since this machine booted; infinite where that cannot be read."""
    try:
        with open(path) as handle:
            return float(handle.read().split()[0])
    except (OSError, ValueError, IndexError):
        return float("inf")


def iam_grace_left_s(environ: Mapping[str, str] = os.environ, uptime: Callable[[], float] = uptime_s) -> float:
    """How much longer a refusal counts as IAM still propagating (0: not at all)."""
    try:
        grace = float(environ.get("MUSICGEN_IAM_GRACE_S", "") or 0)
    except ValueError:
        grace = 0.0
    return max(0.0, grace - uptime())


def refused_while_iam_settles(
    environ: Mapping[str, str] = os.environ, uptime: Callable[[], float] = uptime_s
) -> Callable[[BaseException], bool]:
    """A predicate for `retry`: access refused (or no credentials yet) within the IAM grace."""

    def should_retry(error: BaseException) -> bool:
        refused = error_code(error) in ACCESS_DENIED or isinstance(
            error, NoCredentialsError | PartialCredentialsError
        )
        return refused and iam_grace_left_s(environ, uptime) > 0

    return should_retry


def group_busy(error: BaseException) -> bool:
    return error_code(error) in GROUP_BUSY


def retry(
    call: Callable[[], T],
    should_retry: Callable[[BaseException], bool],
    for_s: float,
    *,
    say: Callable[[str], None] = lambda line: None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> T:
    """`call()`, tried again while it raises what `should_retry` accepts and `for_s` seconds have
    not passed: waits double from 2 s up to 60 s, each drawn between half and all of that (so
    instances ending together spread out)."""
    deadline = clock() + for_s
    wait = FIRST_WAIT_S
    while True:
        try:
            return call()
        except Exception as error:  # re-raised unless the predicate takes it
            pause = wait * random.uniform(0.5, 1.0)
            if not should_retry(error) or clock() + pause > deadline:
                raise
            say(f"{describe(error)}; trying again in {pause:.0f} s")
            sleep(pause)
            wait = min(LONGEST_WAIT_S, wait * 2)
