"""A worker's side of the failure counts: count a failed generation, decide whether the song is
tried again here, and tell when a song has been given up (see failures.py for the shared rule)."""

from __future__ import annotations

import logging
import traceback
from dataclasses import dataclass

from .failures import (
    GIVEN_UP,
    RETRY,
    after_failure,
    count_failure,
    failure_key,
    is_given_up,
    read_failure,
)
from .prompts import Job
from .results import RunResult
from .store import Store

log = logging.getLogger(__name__)


@dataclass
class Attempts:
    store: Store
    worker_id: str
    max_attempts: int
    result: RunResult

    def gave_up(self, job: Job) -> bool:
        """Whether the song has failed max_attempts times (then it is done, and listed)."""
        failure = read_failure(self.store, job.file_name)
        if not is_given_up(failure, job.prompt_hash, self.max_attempts):
            return False
        if job.file_name not in self.result.given_up:
            log.warning(
                "gave up on %s (line %d): failed %d times, last by %s: %s (remove %s to try again)",
                job.file_name, job.line_no, failure.attempts, failure.worker, failure.error,
                self.store.uri(failure_key(job.file_name)),
            )
            self.result.given_up[job.file_name] = failure
            self.result.why_failed.setdefault(job.file_name, failure.error)
        return True

    def record_failure(self, job: Job, error: BaseException) -> None:
        name = job.file_name
        self.result.failed.append(name)
        self.result.why_failed[name] = f"{type(error).__name__}: {error}"
        tries = self.result.tries[name] = self.result.tries.get(name, 0) + 1
        log.error(
            "failed %s (line %d): %s: %s\n%s",
            name, job.line_no, type(error).__name__, error,
            "".join(traceback.format_exception(error)).rstrip(),
        )
        try:
            attempts = count_failure(self.store, name, job.prompt_hash, self.result.why_failed[name], self.worker_id)
        except Exception as count_error:  # noqa: BLE001 - uncounted, the song is only tried again
            log.warning("could not count the failure of %s: %s", name, count_error)
            attempts = tries
        decision = after_failure(attempts, tries, self.max_attempts)
        if decision == RETRY:
            log.info(
                "%s failed attempt %d of %d; trying it again after the other songs",
                name, attempts, self.max_attempts,
            )
            self.result.retry.append(name)
        elif decision == GIVEN_UP:
            log.error("%s failed %d of %d attempts: given up", name, attempts, self.max_attempts)
            failure = read_failure(self.store, name)
            if failure is not None:
                self.result.given_up[name] = failure
        else:
            log.error(
                "%s failed %d times in this run; not trying it again here (%d of %d attempts counted)",
                name, tries, attempts, self.max_attempts,
            )
