"""What a run did with each song, and the exit code that sums it up (one table for every code)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from contract.records import Failure

# The worker's exit codes (docs/worker.md#exit-codes).
EXIT_OK = 0  # every song done: written (here, earlier or by another worker), held by a live worker, or given up
EXIT_FAILED = 1  # a song failed here and is neither, or the output or the model is unusable
EXIT_USAGE = 2  # unusable input, found before the model loads
EXIT_STOPPED = 3  # the instance is stopping (spot notice, Auto Scaling's Terminated, a system shutdown), and nothing else
EXIT_TIME_CAP = 5  # --max-hours was reached, noticed by the worker or by a signal after it
EXIT_GPU_UNUSABLE = 6  # --device cuda (or auto with a GPU) and CUDA or the GPU self-test failed
EXIT_SIGINT = 130  # Ctrl-C while the instance is not stopping (128 + SIGINT, as a shell reports it)
EXIT_SIGTERM = 143  # SIGTERM (systemctl stop) while the instance is not stopping (128 + SIGTERM)


@dataclass
class RunResult:
    generated: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    elsewhere: list[str] = field(default_factory=list)  # claimed by another worker (this round)
    left_to: dict[str, str] = field(default_factory=dict)  # file name -> the live worker holding it at the end
    unfinished: list[str] = field(default_factory=list)  # not finished when the run was stopped
    saved: list[str] = field(default_factory=list)  # unfinished songs checkpointed at a window by this run
    why_failed: dict[str, str] = field(default_factory=dict)  # file name -> error, for the page
    given_up: dict[str, Failure] = field(default_factory=dict)  # failed max_attempts times
    retry: list[str] = field(default_factory=list)  # failed with attempts left: tried again here
    tries: dict[str, int] = field(default_factory=dict)  # failed generations in this run, per song

    def exit_code(self, stopped: int | None = None) -> int:
        """See `run_exit_code`."""
        done = {*self.generated, *self.skipped, *self.given_up}
        return run_exit_code(self.unfinished, self.failed, done, stopped)

    def not_written(self) -> list[str]:
        """Songs that failed in this run and were not written in the end, in order of failure."""
        return not_written(self.failed, {*self.generated, *self.skipped})


def run_exit_code(
    unfinished: Iterable[str], failed: Iterable[str], done: set[str], stopped: int | None = None
) -> int:
    """Stopped early (songs `unfinished`): `stopped`, the code of the reason the run stopped
    (3, 5, 130 or 143, see stopping.py). Otherwise 0 when every song that failed here is done in
    the end (`done`: written here, earlier or by another worker, or given up after max_attempts
    failures, which the worker lists), 1 when one is not, so a later run or another worker must
    try it again. Songs left to live workers are theirs: they count for neither."""
    if any(True for _ in unfinished):
        if stopped is None:
            raise ValueError("songs are unfinished, but nothing stopped the run")
        return stopped
    return EXIT_FAILED if any(name not in done for name in failed) else EXIT_OK


def not_written(failed: Iterable[str], written: set[str]) -> list[str]:
    """The failed songs not in `written`, once each, in order of failure."""
    return [name for name in dict.fromkeys(failed) if name not in written]


def what_is_left(result: RunResult, code: int | None, max_hours: float | None) -> str:
    """What a stopped run leaves for the next, in words: checkpoints only where it saved any."""
    held = set(result.elsewhere)
    parts = []
    if result.saved:
        parts.append(f"saved {', '.join(result.saved)} at the last window: run again to resume from the checkpoints")
    fresh = [name for name in result.unfinished if name not in result.saved and name not in held]
    if fresh:
        parts.append(f"nothing saved of {', '.join(fresh)} (no window generated in this run): run again to generate")
    if held & set(result.unfinished):
        parts.append(f"{', '.join(sorted(held & set(result.unfinished)))} held by other workers")
    if code == EXIT_TIME_CAP and fresh and not result.saved and not result.generated:
        parts.append(f"--max-hours {max_hours:g} ended the run before any window")
    return "; ".join(parts)
