"""One run of the worker: skip what exists, generate the rest in batches, upload, report."""

from __future__ import annotations

import logging
import secrets
import tempfile
import traceback
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from .audio import write_wav
from .engine import Engine, window_seed
from .prompts import Job
from .report import REPORT_KEY, SongRecord, estimated_cost, record_key, render_report
from .scheduler import BatchScheduler, Callbacks, Song
from .settings import RunSettings
from .store import Store
from .windows import plan_windows, song_frames, song_samples

log = logging.getLogger(__name__)


@dataclass
class RunResult:
    generated: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        return 1 if self.failed else 0


def song_seed(base_seed: int | None, job: Job) -> int:
    """Random per song unless a base seed is set; then reproducible per file name."""
    if base_seed is None:
        return secrets.randbits(63)
    return window_seed(base_seed, hash_name(job.file_name))


def hash_name(name: str) -> int:
    return int.from_bytes(name.encode("utf-8")[:8].ljust(8, b"\0"), "little")


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class Runner:
    def __init__(self, settings: RunSettings, store: Store) -> None:
        self.settings = settings
        self.store = store
        self.result = RunResult()

    def pending_jobs(self, jobs: list[Job]) -> list[Job]:
        """Jobs whose WAV is not in the output yet; the others are logged as skipped."""
        pending = []
        for job in jobs:
            if self.store.exists(job.file_name):
                log.info("skipped %s: already at %s", job.file_name, self.store.uri(job.file_name))
                self.result.skipped.append(job.file_name)
            else:
                pending.append(job)
        return pending

    def new_song(self, job: Job, engine: Engine) -> Song:
        window_frames, stride_frames = self.settings.window.frames(engine.frame_rate)
        total = song_frames(job.duration_s, engine.sample_rate, engine.hop_length)
        return Song(
            job=job,
            seed=song_seed(self.settings.seed, job),
            num_samples=song_samples(job.duration_s, engine.sample_rate),
            plans=plan_windows(total, window_frames, stride_frames),
            codes=torch.zeros((engine.num_codebooks, 0), dtype=torch.long),
        )

    def generate(self, jobs: list[Job], engine: Engine) -> None:
        songs = [self.new_song(job, engine) for job in jobs]
        window_frames, _ = self.settings.window.frames(engine.frame_rate)
        batch_size = self.settings.batch_size or engine.auto_batch_size(window_frames)
        log.info("%d songs to generate, up to %d at a time", len(songs), batch_size)
        started_at = _now()
        with (
            tqdm(total=len(songs), desc="songs", unit="song", position=0) as song_bar,
            tqdm(total=sum(s.total_frames for s in songs), desc="frames", unit="frame", position=1) as frame_bar,
        ):

            def on_done(song: Song, audio: np.ndarray) -> None:
                self._save_song(song, audio, engine, started_at)
                song_bar.update(1)

            def on_failed(song: Song, error: BaseException) -> None:
                self._record_failure(song.job, error)
                song_bar.update(1)

            callbacks = Callbacks(on_done=on_done, on_failed=on_failed, on_frames=frame_bar.update)
            BatchScheduler(engine, batch_size, callbacks).run(songs)

    def _save_song(self, song: Song, audio: np.ndarray, engine: Engine, started_at: str) -> None:
        job = song.job
        try:
            with tempfile.TemporaryDirectory(prefix="musicgen-") as folder:
                path = Path(folder) / job.file_name
                write_wav(path, audio, engine.sample_rate)
                metadata = {
                    "prompt-hash": job.prompt_hash,
                    "seed": str(song.seed),
                    "model": self.settings.model,
                    "duration-s": f"{job.duration_s:g}",
                }
                if not self.store.upload_new(path, job.file_name, metadata):
                    log.warning("%s appeared in the output meanwhile; kept the existing file", job.file_name)
            cost = estimated_cost(song.generation_time_s, self.settings.hourly_cost_usd)
            record = SongRecord(
                s3_filename=self.store.object_name(job.file_name),
                prompt=job.prompt,
                requested_duration_s=job.duration_s,
                generation_time_s=song.generation_time_s,
                estimated_cost_usd=cost,
                file_name=job.file_name,
                seed=song.seed,
                model=self.settings.model,
                batch_size=song.batch_size,
                windows=len(song.plans),
                started_at=started_at,
                finished_at=_now(),
                worker=self.settings.worker_id,
            )
            self.store.write(record_key(job.file_name), record.to_json())
        except Exception as error:  # noqa: BLE001 - one bad song must not stop the batch
            self._record_failure(job, error)
            return
        self.result.generated.append(job.file_name)
        log.info(
            "generated %s: %g s of audio in %.1f s, $%.4f (upper bound)",
            job.file_name, job.duration_s, song.generation_time_s, cost,
        )

    def _record_failure(self, job: Job, error: BaseException) -> None:
        self.result.failed.append(job.file_name)
        log.error(
            "failed %s (line %d): %s: %s\n%s",
            job.file_name, job.line_no, type(error).__name__, error,
            "".join(traceback.format_exception(error)).rstrip(),
        )

    def write_report(self, jobs: list[Job]) -> None:
        records = []
        for key in self.store.list(".records/"):
            found = self.store.read(key)
            if found is None:
                continue
            try:
                records.append(SongRecord.from_json(found[0]))
            except (ValueError, TypeError) as error:
                log.warning("ignored unreadable record %s: %s", key, error)
        self.store.write(REPORT_KEY, render_report(records, [job.file_name for job in jobs]))
        log.info("wrote %s (%d songs)", self.store.uri(REPORT_KEY), len(records))
