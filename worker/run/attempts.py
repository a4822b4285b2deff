"""A worker's side of the failure counts, `.failures/<FILE_NAME>.json`, shared by every worker:
count a failed generation, decide whether the song is tried again here, and tell when a song has
been given up (the rule is contract.policy's, the record contract.records.Failure).

The count is written with the same conditional writes as the leases, so two workers failing the
same song at once both count."""

from __future__ import annotations

import logging
import traceback
from dataclasses import dataclass
from datetime import UTC, datetime

from contract.bucket import failure_key
from contract.policy import GIVEN_UP, RETRY, after_failure, attempts_for, is_given_up
from contract.prompts import Job
from contract.records import MAX_ERROR_CHARS, Failure
from worker.run.results import RunResult
from worker.store.store import Store

log = logging.getLogger(__name__)

# Tries of the read-modify-write before the count is given up as unwritable (each lost try
# means another worker wrote the count in between).
WRITE_TRIES = 5


def read_failure(store: Store, file_name: str) -> Failure | None:
    found = store.read(failure_key(file_name))
    if found is None:
        return None
    try:
        return Failure.from_json(found[0])
    except ValueError as error:
        log.warning("ignored the failure count of %s: %s", file_name, error)
        return None


def count_failure(store: Store, file_name: str, prompt_hash: str, error: str, worker: str) -> int:
    """Add one failed attempt; returns the attempts now counted (conditional writes, so a
    count written meanwhile by another worker is never lost)."""
    for _try in range(WRITE_TRIES):
        found = store.read(failure_key(file_name))
        previous = None
        if found is not None:
            try:
                previous = Failure.from_json(found[0])
            except ValueError:
                previous = None  # a hand-edited count starts again
        failure = Failure(
            file_name=file_name,
            prompt_hash=prompt_hash,
            attempts=attempts_for(previous, prompt_hash) + 1,
            error=" ".join(error.split())[:MAX_ERROR_CHARS],
            worker=worker,
            failed_at=datetime.now(UTC).isoformat(timespec="seconds"),
        )
        if found is None:
            written = store.create(failure_key(file_name), failure.to_json())
        else:
            written = store.replace(failure_key(file_name), failure.to_json(), found[1])
        if written is not None:
            return failure.attempts
    raise RuntimeError(f"the failure count of {file_name} kept changing under {WRITE_TRIES} tries")


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
