"""A song already in the output, looked at before it is skipped: whole (then it is done, and a
lost or unreadable record is rebuilt from the file) or damaged (then the file is kept aside in
`.damaged/` and the song is made again).

A rebuilt record takes what the stored song tells (its name, length, and on S3 its metadata:
prompt hash, seed, model) and the prompts file's line; what no file tells (generation time,
cost, batch, worker) is null, and `rebuilt_at` says when it was rebuilt. The report, the page and
`launcher status` show those as unknown.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

from contract.bucket import record_key
from contract.prompts import Job
from contract.records import SongRecord, is_set_aside, set_aside_marker
from contract.songs import made_for_s
from worker.store.store import Store, Stored

log = logging.getLogger(__name__)


class NotSetAside(Exception):
    """A damaged song could not be kept aside (so it cannot be made again here)."""


@dataclass(frozen=True)
class RecordFound:
    record: SongRecord | None
    version: str | None  # the record object's version: None when there is none
    why: str = ""  # why `record` is None although an object is there


@dataclass(frozen=True)
class WholeSong:
    stored: Stored
    record: SongRecord | None  # None only when asked not to rebuild a missing one


def _seed(metadata: Mapping[str, str]) -> int | None:
    try:
        return int(metadata.get("seed", ""))
    except ValueError:
        return None


def rebuilt_record(job: Job, s3_filename: str, metadata: Mapping[str, str], when: str) -> SongRecord:
    """A record for a stored song whose own is lost: the prompts file's line, and on S3 the
    object's metadata; the prompt is left empty when the metadata says the song was made from
    another one (the line changed since)."""
    stored_hash = metadata.get("prompt-hash")
    return SongRecord(
        s3_filename=s3_filename,
        prompt=job.prompt if stored_hash in (None, job.prompt_hash) else "",
        requested_duration_s=made_for_s(metadata, job.duration_s),
        generation_time_s=None,
        estimated_cost_usd=None,
        file_name=job.file_name,
        seed=_seed(metadata),
        model=metadata.get("model"),
        batch_size=None,
        windows=None,
        started_at=None,
        finished_at=None,
        worker=None,
        rebuilt_at=when,
    )


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass
class Inspection:
    store: Store
    clock: Callable[[], datetime] = field(default=_now, repr=False)

    def read_record(self, file_name: str) -> RecordFound:
        found = self.store.read(record_key(file_name))
        if found is None:
            return RecordFound(None, None, "it has none")
        data, version = found
        if is_set_aside(data):
            return RecordFound(None, version, "its record marks an earlier file set aside")
        try:
            return RecordFound(SongRecord.from_json(data), version)
        except (ValueError, TypeError) as error:
            return RecordFound(None, version, f"its record is unreadable ({error})")

    def whole(self, job: Job, rebuild: bool = True) -> WholeSong | None:
        """The song stored for `job`, when it is whole (with its record, rebuilt if needed and
        `rebuild`); None when nothing is stored, or when the stored file was damaged and has
        been set aside. Raises NotSetAside when a damaged file cannot be kept aside."""
        name = job.file_name
        stored = self.store.stat(name)
        if stored is None:
            return None
        found = self.read_record(name)
        asked = found.record.requested_duration_s if found.record else job.duration_s
        why = self.store.damage(name, stored, made_for_s(stored.metadata, asked))
        if why is not None:
            return self._set_aside(job, stored, found, why)
        if found.record is not None or not rebuild:
            return WholeSong(stored, found.record)
        return WholeSong(stored, self._rebuild(job, stored, found))

    def _rebuild(self, job: Job, stored: Stored, found: RecordFound) -> SongRecord:
        record = rebuilt_record(job, self.store.object_name(job.file_name), stored.metadata, self._stamp())
        key = record_key(job.file_name)
        # Conditional: the worker that just stored the song may be writing its true record.
        if found.version is None:
            written = self.store.create(key, record.to_json())
        else:
            written = self.store.replace(key, record.to_json(), found.version)
        if written is not None:
            log.warning(
                "rebuilt the record of %s (line %d) from the stored file: %s; its generation time "
                "and cost are unknown", job.file_name, job.line_no, found.why,
            )
        return record

    def _set_aside(self, job: Job, stored: Stored, found: RecordFound, why: str) -> WholeSong | None:
        name = job.file_name
        try:
            where = self.store.set_aside(name, stored, self.clock().strftime("%Y%m%dT%H%M%SZ"))
        except Exception as error:  # e.g. a bucket policy without CopyObject: this song fails
            raise NotSetAside(
                f"{name} in the output is damaged ({why}) and could not be kept aside "
                f"({type(error).__name__}: {error})"
            ) from error
        if where is None:  # replaced meanwhile: looked at again in the next round
            log.info("%s changed in the output while it was looked at", name)
            return None
        log.warning("%s (line %d) in the output is damaged: %s; kept it as %s, making it again", name, job.line_no, why, where)
        if found.version is not None:
            # Its record no longer describes a song in the output (the report and the page
            # must not list it); the remade song writes a new one.
            self.store.replace(record_key(name), set_aside_marker(where, self._stamp()), found.version)
        return None

    def _stamp(self) -> str:
        return self.clock().isoformat(timespec="seconds")
