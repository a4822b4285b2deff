"""Checkpoint resume: save a song's codes after each window, and continue a song from the
checkpoint an earlier run (or another worker) left, when that checkpoint still fits the job."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from contract.bucket import checkpoint_key
from contract.records import Checkpoint, Identity, checkpoint_size_limit
from worker.run.scheduler import Song
from worker.store.store import Store
from worker.windows import WindowPlan, WindowSettings

if TYPE_CHECKING:
    from worker.engine.engine import Engine

log = logging.getLogger(__name__)


def checkpoint_problem(
    checkpoint: Checkpoint,
    identity: Identity,
    plans: list[WindowPlan],
    num_codebooks: int,
    codebook_size: int | None,
) -> str | None:
    """Why `checkpoint` cannot resume the song whose `identity` and windows are given, or None
    when it can: it must be for the same job and model, and its codes must fit the song's first
    `next_window` windows and the model's codebooks."""
    why = identity.mismatch(checkpoint.identity)
    if why is not None:
        return why
    frames = sum(plan.new_frames for plan in plans[: checkpoint.next_window])
    if checkpoint.next_window > len(plans) or checkpoint.codes.shape != (num_codebooks, frames):
        return "its codes do not fit the song's windows"
    codes = checkpoint.codes
    if codes.size and (codes.min() < 0 or (codebook_size is not None and codes.max() >= codebook_size)):
        return "its codes are out of range for the model"
    return None


class Resume:
    def __init__(self, store: Store, model: str, window: WindowSettings) -> None:
        self.store = store
        self.model = model
        self.window = window

    def identity(self, song: Song, engine: Engine) -> Identity:
        window_frames, stride_frames = self.window.frames(engine.frame_rate)
        job = song.job
        return Identity(job.prompt_hash, job.duration_s, self.model, window_frames, stride_frames)

    def resume(self, song: Song, engine: Engine) -> None:
        """Continue `song` from its checkpoint, if it has one that still fits."""
        import torch

        name = song.job.file_name
        found = self.store.read(checkpoint_key(name), checkpoint_size_limit(engine.num_codebooks, song.total_frames))
        if found is None:
            return
        try:
            checkpoint = Checkpoint.from_json(found[0])
        except ValueError as error:
            log.warning("ignored the checkpoint of %s: %s (the next window replaces it)", name, error)
            return
        why = checkpoint_problem(
            checkpoint, self.identity(song, engine), song.plans, engine.num_codebooks,
            getattr(engine, "codebook_size", None),
        )
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

    def save(self, song: Song, engine: Engine) -> None:
        checkpoint = Checkpoint(
            identity=self.identity(song, engine),
            seed=song.seed,
            next_window=song.next_window,
            generation_time_s=song.generation_time_s,
            codes=song.codes.numpy(),
        )
        try:
            self.store.write(checkpoint_key(song.job.file_name), checkpoint.to_json())
        except Exception as error:  # noqa: BLE001 - generation goes on; the upload decides
            log.warning("could not save the checkpoint of %s: %s", song.job.file_name, error)
