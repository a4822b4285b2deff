"""Failed attempts per song, shared by every worker: `.failures/<FILE_NAME>.json`.

A song is done when its WAV exists or when it has failed `max_attempts` times, whichever worker
made the attempts. The count is written with the same conditional writes as the leases, so two
workers failing the same song at once both count. A failure made for another prompt or duration
(the line was edited since) does not count: the edited song gets its full attempts again.

`given_up` reads the failures from listed objects without any I/O, so a status listing (the
launcher's) can use it on what it fetched itself.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from .leases import blocks
from .settings import DEFAULT_MAX_ATTEMPTS  # noqa: F401 - the launcher takes its default from here
from .store import Store

log = logging.getLogger(__name__)

FAILURES_PREFIX = ".failures/"
# Tries of the read-modify-write before the count is given up as unwritable (each lost try
# means another worker wrote the count in between).
WRITE_TRIES = 5
# The stored error is cut to this, so a count stays far below the bound on bookkeeping reads.
MAX_ERROR_CHARS = 2000


@dataclass(frozen=True)
class Failure:
    file_name: str
    prompt_hash: str
    attempts: int
    error: str  # the last attempt's error, one line
    worker: str
    failed_at: str

    def to_json(self) -> bytes:
        return json.dumps(self.__dict__, ensure_ascii=False, indent=1).encode("utf-8")

    @classmethod
    def from_json(cls, data: bytes) -> Failure:
        """ValueError for anything but a failure count this version wrote (it can be edited by
        hand in the bucket)."""
        try:
            raw = json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, RecursionError, ValueError) as error:
            raise ValueError(f"unreadable failure count: {error}") from None
        if not isinstance(raw, dict) or set(raw) != {f for f in cls.__dataclass_fields__}:
            raise ValueError("not a failure count")
        attempts = raw["attempts"]
        if isinstance(attempts, bool) or not isinstance(attempts, int) or attempts < 0:
            raise ValueError(f"attempts must be a whole number >= 0, not {attempts!r}")
        if not all(isinstance(raw[name], str) for name in raw if name != "attempts"):
            raise ValueError("a failure count's fields other than attempts are text")
        return cls(**raw)


def failure_key(file_name: str) -> str:
    return f"{FAILURES_PREFIX}{file_name}.json"


def attempts_for(failure: Failure | None, prompt_hash: str) -> int:
    """Failed attempts that count against the song as the prompts file now describes it."""
    if failure is None or failure.prompt_hash != prompt_hash:
        return 0
    return failure.attempts


# What a worker does with one song of the batch (see `decide`).
DONE = "done"  # its WAV exists
GIVE_UP = "give up"  # failed max_attempts times: done, listed with its error
CLAIM = "claim"  # nobody holds it: generate it
WAIT = "wait"  # another worker's live lease: poll until it is stored or the lease expires
TAKE_OVER = "take over"  # a lease nobody renewed within its TTL, or ours from an earlier life


def decide(
    wav_exists: bool,
    attempts: int,
    max_attempts: int,
    lease_owner: str | None,
    lease_expires_at: float,
    now: float,
    ours: bool,
) -> str:
    """The one rule every worker follows for a song; `lease_owner` None means no lease, `ours`
    that the lease is this worker's (or an earlier life of it)."""
    if wav_exists:
        return DONE
    if attempts >= max_attempts:
        return GIVE_UP
    if lease_owner is None:
        return CLAIM
    return WAIT if blocks(lease_expires_at, now, ours) else TAKE_OVER


def given_up(objects: Iterable[tuple[str, bytes]], max_attempts: int) -> dict[str, Failure]:
    """Songs failed for good, by file name, from (key, body) pairs listed under `.failures/`
    (keys relative to the output's prefix). Unreadable bodies are skipped; whether a count
    still matches the prompts file is for the caller to check with `attempts_for`."""
    found = {}
    for key, body in objects:
        if not key.startswith(FAILURES_PREFIX) or not key.endswith(".json"):
            continue
        try:
            failure = Failure.from_json(body)
        except ValueError:
            continue
        if failure.attempts >= max_attempts:
            found[key[len(FAILURES_PREFIX) : -len(".json")]] = failure
    return found


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


def is_given_up(failure: Failure | None, prompt_hash: str, max_attempts: int) -> bool:
    """Whether the song, as the prompts file now describes it, has failed max_attempts times."""
    return failure is not None and attempts_for(failure, prompt_hash) >= max_attempts


# What a worker does with a song whose generation just failed (see `after_failure`).
RETRY = "retry"  # attempts left: try it again here, after the other songs
LEAVE = "leave"  # attempts left, but this run tried it max_attempts times: not again here
GIVEN_UP = "given up"  # max_attempts counted: done, listed with its error


def after_failure(attempts: int, tries: int, max_attempts: int) -> str:
    """`attempts` counted across workers, `tries` made by this run. This run's own tries bound
    it too, so a count that cannot be written (or keeps being reset by hand) never loops."""
    if attempts >= max_attempts:
        return GIVEN_UP
    return RETRY if tries < max_attempts else LEAVE
