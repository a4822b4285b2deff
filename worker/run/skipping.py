"""Which songs of the batch still need generating: not handled by this run yet, not kept in the
spool for another output, not in the output already (whole: a damaged file is set aside and
made again, see inspection.py) and not given up."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from contract.prompts import Job, prompt_hash
from contract.records import SongRecord
from contract.songs import REGENERATE_HINT, describe_change, duration_text
from worker.run.attempts import Attempts
from worker.run.inspection import Inspection, NotSetAside, WholeSong
from worker.run.results import RunResult
from worker.store.store import Store

log = logging.getLogger(__name__)


def handled(generated: list[str], failed: list[str], retry: list[str]) -> set[str]:
    """Songs this run is done with: generated or failed here, except those to be tried again."""
    return set(generated + failed) - set(retry)


def stored_description(
    metadata: Mapping[str, str], record: Callable[[], SongRecord | None]
) -> tuple[str | None, str | None] | None:
    """(prompt hash, duration text) a stored song was made from: its object metadata, else its
    record (read only when needed); None when neither tells."""
    if metadata.get("prompt-hash") is not None:
        return metadata["prompt-hash"], metadata.get("duration-s")
    found = record()
    if found is None or not found.prompt:  # a rebuilt record may not know the prompt
        return None
    return prompt_hash(found.prompt), duration_text(found.requested_duration_s)


@dataclass
class Skipping:
    store: Store
    attempts: Attempts
    result: RunResult
    spool: Path  # where a song kept for another output would be overwritten

    def __post_init__(self) -> None:
        self.inspection = Inspection(self.store)

    def pending_jobs(self, jobs: list[Job], foreign_spool: set[str]) -> list[Job]:
        """Jobs whose song is not in the output yet; the others are logged as skipped.
        `foreign_spool`: file names whose spool slot holds a song made for another output or model."""
        pending = []
        done_here = handled(self.result.generated, self.result.failed, self.result.retry)
        for job in jobs:
            if job.file_name in done_here:
                continue
            if job.file_name in foreign_spool:
                # Generating it would overwrite that other output's only copy in the spool.
                log.error(
                    "failed %s (line %d): the spool holds %s for another output; upload it "
                    "there (rerun with that --output and --model) or move it away",
                    job.file_name, job.line_no, self.spool / job.file_name,
                )
                self.result.failed.append(job.file_name)
                continue
            try:
                song = self.inspection.whole(job)
            except NotSetAside as error:
                log.error("failed %s (line %d): %s", job.file_name, job.line_no, error)
                self.result.failed.append(job.file_name)
                self.result.why_failed[job.file_name] = str(error)
                continue
            if song is not None:
                log.info("skipped %s: already at %s", job.file_name, self.store.uri(job.file_name))
                self._warn_if_changed(job, song)
                self.result.skipped.append(job.file_name)
            elif not self.attempts.gave_up(job):
                pending.append(job)
        return pending

    def _warn_if_changed(self, job: Job, song: WholeSong) -> None:
        """Tell the user when the prompts file no longer says what the stored song was made
        from; the stored song stays (every write is conditional)."""
        stored = stored_description(song.stored.metadata, lambda: song.record)
        if stored is None:
            return
        change = describe_change(job, *stored)
        if change is not None:
            log.warning(
                "line %d: %s was generated before %s changed; kept the stored file (%s)",
                job.line_no, job.file_name, change, REGENERATE_HINT,
            )
