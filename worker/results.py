"""What a run did with each song, and the exit code that sums it up (one table for every code)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from .failures import Failure

# The worker's exit codes.
EXIT_OK = 0  # every song done: written (here, earlier or by another worker) or given up
EXIT_FAILED = 1  # a song failed here and is neither, or the output or the model is unusable
EXIT_USAGE = 2  # unusable input, found before the model loads
EXIT_STOPPED = 3  # a spot interruption notice or a shutdown (SIGTERM, Ctrl-C) stopped the run
EXIT_TIME_CAP = 5  # --max-hours stopped the run


@dataclass
class RunResult:
    generated: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    elsewhere: list[str] = field(default_factory=list)  # claimed by another worker
    unfinished: list[str] = field(default_factory=list)  # stopped by an interruption notice
    why_failed: dict[str, str] = field(default_factory=dict)  # file name -> error, for the page
    given_up: dict[str, Failure] = field(default_factory=dict)  # failed max_attempts times
    retry: list[str] = field(default_factory=list)  # failed with attempts left: tried again here
    tries: dict[str, int] = field(default_factory=dict)  # failed generations in this run, per song

    def exit_code(self, time_cap_hit: bool = False, interrupted: bool = False) -> int:
        """See `run_exit_code`."""
        done = {*self.generated, *self.skipped, *self.given_up}
        return run_exit_code(self.unfinished, self.failed, done, time_cap_hit, interrupted)

    def not_written(self) -> list[str]:
        """Songs that failed in this run and were not written in the end, in order of failure."""
        return not_written(self.failed, {*self.generated, *self.skipped})


def run_exit_code(
    unfinished: Iterable[str], failed: Iterable[str], done: set[str], time_cap_hit: bool = False,
    interrupted: bool = False,
) -> int:
    """Stopped early: 5 when the time cap did it and no shutdown or spot notice came, else 3.
    Otherwise 0 when every song that failed here is done in the end (`done`: written here,
    earlier or by another worker, or given up after max_attempts failures, which the worker
    lists), 1 when one is not, so a later run or another worker must try it again."""
    if any(True for _ in unfinished):
        return EXIT_TIME_CAP if time_cap_hit and not interrupted else EXIT_STOPPED
    return EXIT_FAILED if any(name not in done for name in failed) else EXIT_OK


def not_written(failed: Iterable[str], written: set[str]) -> list[str]:
    """The failed songs not in `written`, once each, in order of failure."""
    return [name for name in dict.fromkeys(failed) if name not in written]
