"""Whether a stored song still matches its line in prompts.txt (pure).

A stored WAV carries the prompt hash and duration it was generated from (S3 metadata, and the
song's record). When the prompts file now says something else under the same file name, the
stored song is kept (writes are conditional) and the user is told how to regenerate it.
"""

from __future__ import annotations

from .prompts import Job

REGENERATE_HINT = "rename the song or delete the stored file to generate it again"


def duration_text(seconds: float) -> str:
    """How a duration is written into a WAV's metadata (`duration-s`)."""
    return f"{seconds:g}"


def describe_change(job: Job, stored_prompt_hash: str | None, stored_duration: str | None) -> str | None:
    """What changed since the stored song was generated ("the prompt", "the duration (2 s,
    now 3 s)"), or None when nothing did or nothing is known."""
    changes = []
    if stored_prompt_hash is not None and stored_prompt_hash != job.prompt_hash:
        changes.append("the prompt")
    if stored_duration is not None and stored_duration != duration_text(job.duration_s):
        changes.append(f"the duration ({stored_duration} s, now {duration_text(job.duration_s)} s)")
    return " and ".join(changes) or None
