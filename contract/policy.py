"""The rules every worker follows, and the launcher reports by: when a song is given up after
failing, and when a lease keeps a worker off a song. Pure functions over the records
(contract.records); the worker applies them to what it reads and writes, the launcher to what
it lists.

A song is done when its file exists or when it has failed `max_attempts` times, whichever
worker made the attempts. A failure made for another prompt or duration (the line was edited
since) does not count: the edited song gets its full attempts again.
"""

from __future__ import annotations

from collections.abc import Iterable

from .bucket import failure_file_name
from .records import Failure


def attempts_for(failure: Failure | None, prompt_hash: str) -> int:
    """Failed attempts that count against the song as the prompts file now describes it."""
    if failure is None or failure.prompt_hash != prompt_hash:
        return 0
    return failure.attempts


def is_given_up(failure: Failure | None, prompt_hash: str, max_attempts: int) -> bool:
    """Whether the song, as the prompts file now describes it, has failed max_attempts times."""
    return failure is not None and attempts_for(failure, prompt_hash) >= max_attempts


def failures_by_song(objects: Iterable[tuple[str, bytes]]) -> dict[str, Failure]:
    """Failure counts by file name, from (key, body) pairs listed under `.failures/` (keys
    relative to the output's prefix), without any I/O, so a status listing (the launcher's)
    can use it on what it fetched itself. Other keys and unreadable bodies are skipped."""
    found = {}
    for key, body in objects:
        file_name = failure_file_name(key)
        if file_name is None:
            continue
        try:
            found[file_name] = Failure.from_json(body)
        except ValueError:
            continue
    return found


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


def blocks(expires_at: float, now: float, ours: bool) -> bool:
    """Whether a lease keeps this worker off its song: another worker's, renewed within its TTL.
    A lease nobody renewed within its TTL, or this worker's own from an earlier life, may be
    taken over."""
    return not ours and expires_at > now
