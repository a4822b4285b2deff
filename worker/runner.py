"""One run of the worker: skip what exists, generate the rest in batches, upload, report.

Durability, in the order a finished song is written: WAV and record go to the local spool first,
then the WAV is uploaded (If-None-Match), then the record, and only then are the spool copy, the
checkpoint and the lease removed. A crash or an S3 outage at any point leaves enough behind for
the next run to finish the job without generating the song again.

A run ends when every song is done (stored, or failed `max_attempts` times across workers): songs
under another worker's live lease are waited for, and taken over if that lease expires, and a
song whose generation failed goes back into the batch, after the others, until its attempts
(counted across workers) reach `max_attempts`, so one worker alone makes every attempt.
"""

from __future__ import annotations

import json
import logging
import secrets
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from .audio import master, song_comment, write_song
from .changes import REGENERATE_HINT, describe_change, duration_text
from .checkpoints import Checkpoint, Identity, checkpoint_key
from .engine import Engine
from .failures import (
    Failure,
    attempts_for,
    count_failure,
    failure_key,
    read_failure,
)
from .generation import derive_seed
from .leases import Heartbeat, Leases, poll_interval
from .page import PAGE_CONTENT_TYPE, PAGE_KEY, render_page
from .prompts import SUFFIXES, WAV_SUFFIX, Job, prompt_hash
from .report import (
    RECORDS_PREFIX,
    REPORT_KEY,
    SongRecord,
    estimated_cost,
    record_key,
    render_report,
)
from .scheduler import BatchScheduler, Callbacks, Song, new_song
from .settings import RunSettings
from .store import Store, is_s3_uri
from .waveform import envelope

log = logging.getLogger(__name__)


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

    @property
    def exit_code(self) -> int:
        """3 stopped early; else 0 when every song is done: written (here, earlier or by another
        worker) or given up after max_attempts failures (listed by the worker); 1 when a song
        failed here and is neither, so a later run or another worker must try it again."""
        if self.unfinished:
            return 3
        done = {*self.generated, *self.skipped, *self.given_up}
        return 1 if any(name not in done for name in self.failed) else 0

    def not_written(self) -> list[str]:
        """Songs that failed in this run and were not written in the end, in order of failure."""
        written = {*self.generated, *self.skipped}
        return [name for name in dict.fromkeys(self.failed) if name not in written]


def song_seed(base_seed: int | None, job: Job) -> int:
    """Random per song unless a base seed is set; then reproducible per file name.

    The seed ignores the format: a FLAC is the same song as the WAV of the same line, and WAV
    songs keep the seeds they always had."""
    if base_seed is None:
        return secrets.randbits(63)
    name = job.file_name
    for suffix in SUFFIXES.values():
        if suffix != WAV_SUFFIX and name.lower().endswith(suffix):
            name = name[: -len(suffix)] + WAV_SUFFIX
    return derive_seed(base_seed, name)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


# How a spooled song's upload ended.
STORED, EXISTS, FAILED = "stored", "exists", "failed"
# Key in a spooled record file naming the output the song was made for (not part of the record).
SPOOL_OUTPUT_KEY = "output"
SPOOL_RECORD_SUFFIX = ".record.json"


class ModelUnavailable(Exception):
    """The model could not be loaded (raised by the engine loader given to `run_batch`)."""


class Runner:
    def __init__(
        self, settings: RunSettings, store: Store, should_stop=lambda: False, earlier_self=lambda owner: False
    ) -> None:
        self.settings = settings
        self.store = store
        self.should_stop = should_stop
        self.leases = Leases(store, settings.worker_id, settings.lease_s, earlier_self=earlier_self)
        self.spool = Path(settings.spool_dir)
        self.result = RunResult()
        # File names whose spool slot holds a song made for another output or model.
        self.foreign_spool: set[str] = set()
        self.poll_s = poll_interval(settings.lease_s)

    def run_batch(self, jobs: list[Job], load_engine: Callable[[], Engine]) -> None:
        """Generate every missing song, try again the songs whose generation failed while they
        have attempts left, then wait for the songs other workers hold until each is done:
        stored by them, failed for good, or taken over here once its lease expires. The engine
        loads only when there is something to generate."""
        engine: Engine | None = None
        todo, waiting_for = jobs, set()
        while todo:
            self.result.elsewhere = []
            pending = self.pending_jobs(todo)
            self.result.retry = []
            if pending and self.should_stop():
                self.result.unfinished += [job.file_name for job in pending]
                return
            if pending:
                engine = engine or load_engine()
                self.generate(pending, engine)
            if self.result.unfinished:
                return
            if self.result.retry:
                # The failed songs go again after the others; songs held elsewhere are looked at
                # again with them.
                again = {*self.result.retry, *self.result.elsewhere}
                todo = [job for job in jobs if job.file_name in again]
                continue
            if not self.result.elsewhere:
                return
            held = set(self.result.elsewhere)
            if held != waiting_for:
                log.info(
                    "waiting for %d songs other workers hold (%s); looking again every %g s",
                    len(held), ", ".join(sorted(held)), self.poll_s,
                )
            waiting_for = held
            todo = [job for job in jobs if job.file_name in held]
            if self._pause(self.poll_s):
                self.result.unfinished += sorted(held)
                return

    def _pause(self, seconds: float) -> bool:
        """Sleep, waking early to stop; True if asked to stop."""
        deadline = time.monotonic() + seconds
        while not self.should_stop():
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            time.sleep(min(left, 0.2))
        return True

    def pending_jobs(self, jobs: list[Job]) -> list[Job]:
        """Jobs whose WAV is not in the output yet; the others are logged as skipped."""
        pending = []
        handled = set(self.result.generated + self.result.failed) - set(self.result.retry)
        for job in jobs:
            if job.file_name in handled:
                continue
            if job.file_name in self.foreign_spool:
                # Generating it would overwrite that other output's only copy in the spool.
                log.error(
                    "failed %s (line %d): the spool holds %s for another output; upload it "
                    "there (rerun with that --output and --model) or move it away",
                    job.file_name, job.line_no, self.spool / job.file_name,
                )
                self.result.failed.append(job.file_name)
            elif self.store.exists(job.file_name):
                log.info("skipped %s: already at %s", job.file_name, self.store.uri(job.file_name))
                self._warn_if_changed(job)
                self.result.skipped.append(job.file_name)
            elif not self._gave_up(job):
                pending.append(job)
        return pending

    def _gave_up(self, job: Job) -> bool:
        """Whether the song has failed max_attempts times (then it is done, and listed)."""
        failure = read_failure(self.store, job.file_name)
        attempts = attempts_for(failure, job.prompt_hash)
        if failure is None or attempts < self.settings.max_attempts:
            return False
        if job.file_name not in self.result.given_up:
            log.warning(
                "gave up on %s (line %d): failed %d times, last by %s: %s (remove %s to try again)",
                job.file_name, job.line_no, attempts, failure.worker, failure.error,
                self.store.uri(failure_key(job.file_name)),
            )
            self.result.given_up[job.file_name] = failure
            self.result.why_failed.setdefault(job.file_name, failure.error)
        return True

    def _warn_if_changed(self, job: Job) -> None:
        """Tell the user when the prompts file no longer says what the stored song was made
        from; the stored song stays (every write is conditional)."""
        try:
            metadata = self.store.metadata(job.file_name) or {}
            stored_hash, stored_duration = metadata.get("prompt-hash"), metadata.get("duration-s")
            if stored_hash is None:
                found = self.store.read(record_key(job.file_name))
                if found is None:
                    return
                record = SongRecord.from_json(found[0])
                stored_hash, stored_duration = prompt_hash(record.prompt), duration_text(record.requested_duration_s)
        except (ValueError, TypeError) as error:
            log.debug("cannot tell whether %s changed: %s", job.file_name, error)
            return
        change = describe_change(job, stored_hash, stored_duration)
        if change is not None:
            log.warning(
                "line %d: %s was generated before %s changed; kept the stored file (%s)",
                job.line_no, job.file_name, change, REGENERATE_HINT,
            )

    # -- the spool: finished songs whose upload has not gone through yet -------------------

    def upload_spooled(self, jobs: list[Job]) -> None:
        """Store songs a previous run generated but could not store (also when only the record
        is missing); they count as generated by this run. A spooled song belongs to the output
        and model it was made with: songs for others are listed and left alone."""
        by_name = {job.file_name: job for job in jobs}
        for record_file in sorted(self.spool.glob(f"*{SPOOL_RECORD_SUFFIX}")):
            file_name = record_file.name.removesuffix(SPOOL_RECORD_SUFFIX)
            wav = self.spool / file_name
            if not wav.is_file():
                continue
            try:
                output, record = self._read_spooled(record_file)
            except (ValueError, TypeError, OSError) as error:
                log.warning("left %s in the spool: its record %s is unreadable (%s)", wav, record_file, error)
                self.foreign_spool.add(file_name)
                continue
            if output is None:
                log.warning(
                    "left %s in the spool: its record does not name the output it was made for "
                    "(written by an older version); upload it by hand or move it away", wav,
                )
                self.foreign_spool.add(file_name)
                continue
            if (output, record.model) != (self._location(), self.settings.model):
                log.warning(
                    "left %s in the spool: it was made for %s with the model %s, not for this run's "
                    "%s with %s", wav, output, record.model, self._location(), self.settings.model,
                )
                self.foreign_spool.add(file_name)
                continue
            job = by_name.get(file_name)
            if job is None or (record.prompt, record.requested_duration_s) != (job.prompt, job.duration_s):
                continue
            log.info("uploading %s kept from an earlier run (%s)", job.file_name, wav)
            outcome = self._store_song(job, record)
            {STORED: self.result.generated, EXISTS: self.result.skipped, FAILED: self.result.failed}[
                outcome
            ].append(job.file_name)

    def _location(self) -> str:
        """The output as one string: the S3 URI, or the folder's absolute path."""
        uri = self.store.uri("")
        return uri if is_s3_uri(uri) else str(Path(uri).resolve())

    def _read_spooled(self, record_file: Path) -> tuple[str | None, SongRecord]:
        raw = json.loads(record_file.read_bytes())
        if not isinstance(raw, dict):
            raise TypeError("not a JSON object")
        output = raw.pop(SPOOL_OUTPUT_KEY, None)
        return None if output is None else str(output), SongRecord.from_dict(raw)

    def _spooled(self, file_name: str) -> tuple[Path, Path]:
        return self.spool / file_name, self.spool / f"{file_name}{SPOOL_RECORD_SUFFIX}"

    def _store_song(self, job: Job, record: SongRecord) -> str:
        """Spool -> output: STORED, EXISTS (another worker's file won; the spool copy goes) or
        FAILED (spool kept, failure named) when the output cannot be written."""
        wav, record_file = self._spooled(job.file_name)
        metadata = {
            "prompt-hash": job.prompt_hash,
            "seed": str(record.seed),
            "model": record.model,
            "duration-s": duration_text(job.duration_s),
        }
        try:
            # Ours also when an earlier try uploaded this very WAV and only the record failed.
            won = self.store.upload_new(wav, job.file_name, metadata) or self.store.holds(
                wav, job.file_name, metadata
            )
            if won:
                self.store.write(record_key(job.file_name), record.to_json())
        except Exception as error:  # noqa: BLE001 - S3 down: keep everything for the next run
            self.result.why_failed[job.file_name] = (
                f"could not store it ({type(error).__name__}: {error})"
            )
            log.error(
                "failed %s: could not store it (%s: %s); kept %s and its record for the next run",
                job.file_name, type(error).__name__, error, wav,
            )
            return FAILED
        if not won:
            # Its record is the winner's to write: one WAV, one record, the same seed.
            log.warning("%s appeared in the output meanwhile; kept the existing file", job.file_name)
        wav.unlink(missing_ok=True)
        record_file.unlink(missing_ok=True)
        self._forget(job.file_name)
        return STORED if won else EXISTS

    def _forget(self, file_name: str) -> None:
        """Drop the bookkeeping of a song that is safely stored; best effort."""
        try:
            self.store.delete(checkpoint_key(file_name))
            self.store.delete(failure_key(file_name))
            self.leases.release(file_name)
        except Exception as error:  # noqa: BLE001 - stale bookkeeping is harmless
            log.warning("could not remove the checkpoint or lease of %s: %s", file_name, error)

    # -- generation ------------------------------------------------------------------------

    def _identity(self, job: Job, engine: Engine) -> Identity:
        window_frames, stride_frames = self.settings.window.frames(engine.frame_rate)
        return Identity(job.prompt_hash, job.duration_s, self.settings.model, window_frames, stride_frames)

    def _resume(self, song: Song, engine: Engine) -> None:
        found = self.store.read(checkpoint_key(song.job.file_name))
        if found is None:
            return
        name = song.job.file_name
        try:
            checkpoint = Checkpoint.from_json(found[0])
        except ValueError as error:
            log.warning("ignored the checkpoint of %s: %s (the next window replaces it)", name, error)
            return
        why = self._identity(song.job, engine).mismatch(checkpoint.identity)
        frames = sum(plan.new_frames for plan in song.plans[: checkpoint.next_window])
        if why is None and (
            checkpoint.next_window > len(song.plans)
            or checkpoint.codes.shape != (engine.num_codebooks, frames)
        ):
            why = "its codes do not fit the song's windows"
        codebook_size = getattr(engine, "codebook_size", None)
        if why is None and checkpoint.codes.size and (
            checkpoint.codes.min() < 0
            or (codebook_size is not None and checkpoint.codes.max() >= codebook_size)
        ):
            why = "its codes are out of range for the model"
        if why is not None:
            log.warning("ignored the stale checkpoint of %s: %s (the next window replaces it)", name, why)
            return
        song.codes = torch.from_numpy(checkpoint.codes)
        song.next_window = checkpoint.next_window
        song.seed = checkpoint.seed
        song.generation_time_s = checkpoint.generation_time_s
        log.info(
            "resuming %s at window %d of %d (%.1f s of generation already spent)",
            name, song.next_window + 1, len(song.plans), song.generation_time_s,
        )

    def _checkpoint(self, song: Song, engine: Engine) -> None:
        checkpoint = Checkpoint(
            identity=self._identity(song.job, engine),
            seed=song.seed,
            next_window=song.next_window,
            generation_time_s=song.generation_time_s,
            codes=song.codes.numpy(),
        )
        try:
            self.store.write(checkpoint_key(song.job.file_name), checkpoint.to_json())
        except Exception as error:  # noqa: BLE001 - generation goes on; the upload decides
            log.warning("could not save the checkpoint of %s: %s", song.job.file_name, error)

    def generate(self, jobs: list[Job], engine: Engine) -> None:
        songs = [
            new_song(job, song_seed(self.settings.seed, job), self.settings.window, engine) for job in jobs
        ]
        window_frames, _ = self.settings.window.frames(engine.frame_rate)
        batch_size = self.settings.batch_size or engine.auto_batch_size(window_frames)
        log.info("%d songs to generate, up to %d at a time", len(songs), batch_size)
        started_at = _now()
        with (
            tqdm(total=len(songs), desc="songs", unit="song", position=0) as song_bar,
            tqdm(total=sum(s.total_frames for s in songs), desc="frames", unit="frame", position=1) as frame_bar,
        ):

            def claim(song: Song) -> bool:
                name = song.job.file_name
                if not self.leases.claim(name):
                    self.result.elsewhere.append(name)
                    song_bar.update(1)
                    return False
                if self.store.exists(name):  # finished by another worker since we looked
                    log.info("skipped %s: another worker finished it", name)
                    self.leases.release(name)
                    self.result.skipped.append(name)
                    song_bar.update(1)
                    return False
                if self._gave_up(song.job):  # failed for good by another worker since we looked
                    self.leases.release(name)
                    song_bar.update(1)
                    return False
                self._resume(song, engine)
                frame_bar.update(song.codes.shape[-1])
                return True

            def still_ours(song: Song) -> bool:
                """False once the heartbeat lost the lease: the taker resumes the song from
                its checkpoint and stores it; this worker waits for it like for any other."""
                if self.leases.holds(song.job.file_name):
                    return True
                self.result.elsewhere.append(song.job.file_name)
                song_bar.update(1)
                return False

            def on_window(song: Song) -> bool:
                if not still_ours(song):
                    return False
                self._checkpoint(song, engine)
                return True

            def on_done(song: Song, audio: np.ndarray) -> None:
                if still_ours(song):
                    self._save_song(song, audio, engine, started_at)
                    song_bar.update(1)

            def on_failed(song: Song, error: BaseException) -> None:
                self._record_failure(song.job, error)
                if self.leases.holds(song.job.file_name):
                    self.leases.release(song.job.file_name)
                song_bar.update(1)

            callbacks = Callbacks(
                claim=claim,
                on_window=on_window,
                on_done=on_done,
                on_failed=on_failed,
                should_stop=self.should_stop,
                on_frames=frame_bar.update,
            )
            with Heartbeat(self.leases):
                unfinished = BatchScheduler(engine, batch_size, callbacks).run(songs)
        for song in unfinished:
            self.result.unfinished.append(song.job.file_name)
            if self.leases.holds(song.job.file_name) and (song.in_batch or song.next_window):
                self._checkpoint(song, engine)
                self.leases.release(song.job.file_name)
                log.info(
                    "saved %s at window %d of %d for the next run",
                    song.job.file_name, song.next_window, len(song.plans),
                )

    def _tags(self, song: Song, engine: Engine) -> tuple[str, str]:
        """Title and comment written into the file, so a downloaded song tells how it was made."""
        params = engine.params
        details = {
            "seed": song.seed,
            "model": self.settings.model,
            "duration_s": f"{song.job.duration_s:g}",
            "window_s": f"{self.settings.window.window_s:g}",
            "stride_s": f"{self.settings.window.stride_s:g}",
            "top_k": params.top_k,
            "temperature": f"{params.temperature:g}",
            "guidance_scale": f"{params.guidance_scale:g}",
        }
        comment = song_comment(song.job.prompt, details, self.settings.audio_format)
        return Path(song.job.file_name).stem, comment

    def _save_song(self, song: Song, audio: np.ndarray, engine: Engine, started_at: str) -> None:
        job = song.job
        wav, record_file = self._spooled(job.file_name)
        try:
            mastered = master(audio, engine.sample_rate, self.settings.mastering)
        except ValueError as error:  # non-finite audio: this song fails, the batch goes on
            self._record_failure(job, error)
            self.leases.release(job.file_name)
            return
        measured = (
            "loudness not measurable (under 0.4 s, or silent)"
            if mastered.measured_lufs is None
            else f"{mastered.measured_lufs:.1f} LUFS measured"
        )
        log.info(
            "level %s: %s, gain %+.1f dB, %d samples limited, %d samples clipped",
            job.file_name, measured, mastered.gain_db, mastered.limited_samples, mastered.clipped_samples,
        )
        record = SongRecord(
            s3_filename=self.store.object_name(job.file_name),
            prompt=job.prompt,
            requested_duration_s=job.duration_s,
            generation_time_s=song.generation_time_s,
            estimated_cost_usd=estimated_cost(song.generation_time_s, self.settings.hourly_cost_usd),
            file_name=job.file_name,
            seed=song.seed,
            model=self.settings.model,
            batch_size=song.batch_size,
            windows=len(song.plans),
            started_at=started_at,
            finished_at=_now(),
            worker=self.settings.worker_id,
            waveform=envelope(mastered.samples),
            measured_lufs=mastered.measured_lufs,
            gain_db=mastered.gain_db,
            clipped_samples=mastered.clipped_samples,
        )
        title, comment = self._tags(song, engine)
        try:
            self.spool.mkdir(parents=True, exist_ok=True)
            write_song(
                wav, mastered.samples, engine.sample_rate, self.settings.audio_format, title, comment
            )
            spooled = {SPOOL_OUTPUT_KEY: self._location(), **json.loads(record.to_json())}
            record_file.write_bytes(json.dumps(spooled, ensure_ascii=False, indent=1).encode("utf-8"))
        except Exception as error:  # noqa: BLE001 - one bad song must not stop the batch
            self._record_failure(job, error)
            return
        outcome = self._store_song(job, record)
        if outcome == FAILED:
            self.result.failed.append(job.file_name)
            return
        if outcome == EXISTS:
            self.result.skipped.append(job.file_name)
            return
        self.result.generated.append(job.file_name)
        log.info(
            "generated %s: %g s of audio in %.1f s, $%.4f (upper bound)",
            job.file_name, job.duration_s, song.generation_time_s, record.estimated_cost_usd,
        )

    def _record_failure(self, job: Job, error: BaseException) -> None:
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
            attempts = count_failure(
                self.store, name, job.prompt_hash, self.result.why_failed[name], self.settings.worker_id,
            )
        except Exception as count_error:  # noqa: BLE001 - uncounted, the song is only tried again
            log.warning("could not count the failure of %s: %s", name, count_error)
            attempts = tries
        # This run's own tries bound it too, so a count that cannot be written (or keeps being
        # reset by hand) never loops.
        if attempts < self.settings.max_attempts and tries < self.settings.max_attempts:
            log.info(
                "%s failed attempt %d of %d; trying it again after the other songs",
                name, attempts, self.settings.max_attempts,
            )
            self.result.retry.append(name)
            return
        if attempts < self.settings.max_attempts:
            log.error(
                "%s failed %d times in this run; not trying it again here (%d of %d attempts counted)",
                name, tries, attempts, self.settings.max_attempts,
            )
            return
        log.error("%s failed %d of %d attempts: given up", name, attempts, self.settings.max_attempts)
        failure = read_failure(self.store, name)
        if failure is not None:
            self.result.given_up[name] = failure

    # -- the report ------------------------------------------------------------------------

    def _records(self) -> dict[str, SongRecord]:
        records = {}
        for key in self.store.list(RECORDS_PREFIX):
            found = self.store.read(key)
            if found is None:
                continue
            try:
                records[key] = SongRecord.from_json(found[0])
            except (ValueError, TypeError) as error:
                log.warning("ignored unreadable record %s: %s", key, error)
        return records

    def write_report(self, jobs: list[Job]) -> None:
        """Rebuild cost_report.csv and the listening page from every record; any worker may,
        the last one wins.

        Re-read after writing: a worker that finished meanwhile may have written its report
        first, and then this one must include its record too.
        """
        order = [job.file_name for job in jobs]
        records = self._records()
        for _attempt in range(3):
            self.store.write(REPORT_KEY, render_report(list(records.values()), order))
            latest = self._records()
            if latest.keys() == records.keys():
                break
            records = latest
        log.info("wrote %s (%d songs)", self.store.uri(REPORT_KEY), len(records))
        page = render_page(jobs, list(records.values()), self.result.why_failed)
        self.store.write(PAGE_KEY, page, content_type=PAGE_CONTENT_TYPE)
        log.info("wrote %s", self.store.uri(PAGE_KEY))
