"""Advance many songs window by window in shared batches on one GPU.

Rules (see docs/design.md, "How songs share the GPU"):
- A song joins a batch only once `claim` grants it (see leases.py); songs start in a batch of up
  to `batch_size` rows; the longest song left is claimed first (by frames still to generate),
  so a batch's songs need about the same number of windows, and the batch's last song to
  finish, across all workers, is a short one.
- Every round runs one batched call per prompt length: normally one call, since songs in a batch
  move in step (first windows have no prompt, later ones the last window-stride seconds).
- A finished song leaves the batch. Waiting songs join once half the batch is free (or it is
  empty); their first window is a call of its own, then they move with the others.
- Time: each call's wall time is shared by its rows in proportion to the frames each asked for;
  a song's own text encoding and EnCodec decode are its alone. The shares add up to the wall time.
- A failing batched call is retried one song at a time, so one bad song cannot sink the others;
  the failed call's time goes to the songs that then succeed.

Songs' codes are the engine's torch tensors, but torch is imported only where a tensor is made:
importing the scheduler's rules and types loads no torch and no transformers.
"""

from __future__ import annotations

import enum
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from contract.prompts import Job
from worker.engine.generation import Conditioning, WindowRequest, derive_seed
from worker.windows import (
    WindowPlan,
    WindowSettings,
    plan_windows,
    song_frames,
    song_samples,
)

if TYPE_CHECKING:
    import numpy as np
    import torch

log = logging.getLogger(__name__)


class Interrupted(Exception):
    """Raised between decoder steps when the worker must stop (spot interruption notice)."""


class SupportsGenerate(Protocol):
    num_codebooks: int

    def condition(self, prompt: str) -> Conditioning: ...
    def generate(self, rows: list[WindowRequest], on_step=None) -> list[torch.Tensor]: ...
    def decode(self, codes: torch.Tensor, num_samples: int) -> np.ndarray: ...


class SupportsCodec(Protocol):
    """The codec's numbers that turn a song's duration into samples, frames and codebooks."""

    num_codebooks: int
    sample_rate: int
    frame_rate: float
    hop_length: int


class SongState(enum.Enum):
    WAITING = "waiting"  # not claimed yet
    IN_BATCH = "in batch"  # claimed and conditioned: advances a window every round
    DELIVERED = "delivered"  # decoded and handed to on_done
    FAILED = "failed"  # handed to on_failed
    TAKEN_OVER = "taken over"  # another worker owns it now


@dataclass
class Song:
    job: Job
    seed: int
    num_samples: int
    plans: list[WindowPlan]
    codes: torch.Tensor  # (K, frames so far)
    next_window: int = 0
    generation_time_s: float = 0.0
    batch_size: int = 1
    state: SongState = SongState.WAITING
    # Set while the song is in the batch; dropped when it leaves, to free its device memory.
    conditioning: Conditioning | None = field(default=None, repr=False)

    @property
    def in_batch(self) -> bool:
        return self.state is SongState.IN_BATCH

    def join(self, conditioning: Conditioning) -> None:
        self.conditioning = conditioning
        self.state = SongState.IN_BATCH

    def leave(self, state: SongState) -> None:
        """Out of the batch for good, for the reason `state` names."""
        self.conditioning = None
        self.state = state

    @property
    def done(self) -> bool:
        """Every window generated (a song resumed this far still needs its decode)."""
        return self.next_window >= len(self.plans)

    @property
    def remaining_frames(self) -> int:
        return sum(plan.new_frames for plan in self.plans[self.next_window :])

    @property
    def total_frames(self) -> int:
        return sum(plan.new_frames for plan in self.plans)


def new_song(job: Job, seed: int, window: WindowSettings, codec: SupportsCodec) -> Song:
    """`job` as a song before its first window: its exact length in samples and its windows."""
    import torch

    window_frames, stride_frames = window.frames(codec.frame_rate)
    total = song_frames(job.duration_s, codec.sample_rate, codec.hop_length)
    return Song(
        job=job,
        seed=seed,
        num_samples=song_samples(job.duration_s, codec.sample_rate),
        plans=plan_windows(total, window_frames, stride_frames),
        codes=torch.zeros((codec.num_codebooks, 0), dtype=torch.long),
    )


@dataclass
class Callbacks:
    """What the caller does with results; the scheduler itself does no I/O."""

    claim: Callable[[Song], bool] = lambda song: True
    on_window: Callable[[Song], bool] = lambda song: True
    on_done: Callable[[Song, np.ndarray], None] = lambda song, audio: None
    on_failed: Callable[[Song, BaseException], None] = lambda song, error: None
    should_stop: Callable[[], bool] = lambda: False
    on_frames: Callable[[int], None] = lambda frames: None


class BatchScheduler:
    def __init__(self, engine: SupportsGenerate, batch_size: int, callbacks: Callbacks) -> None:
        if batch_size < 1:
            raise ValueError("batch size must be at least 1")
        self.engine = engine
        self.batch_size = batch_size
        self.cb = callbacks

    def run(self, songs: list[Song]) -> list[Song]:
        """Generate every song; returns the songs still unfinished if interrupted (else [])."""
        waiting = deque(sorted(songs, key=lambda s: -s.remaining_frames))
        active: list[Song] = []
        try:
            while waiting or active:
                self._check_stop()
                free = self.batch_size - len(active)
                if waiting and (not active or free >= max(1, self.batch_size // 2)):
                    for _ in range(min(free, len(waiting))):
                        song = waiting.popleft()
                        if self._prepare(song):
                            active.append(song)
                for group in self._groups(active):
                    self._advance(group)
                still = []
                for song in active:
                    if not song.in_batch:
                        continue  # failed, or another worker took it over
                    if song.done:
                        self._finish(song)
                    else:
                        still.append(song)
                active = still
        except Interrupted:
            log.warning("stopping: %d songs unfinished", len(active) + len(waiting))
            return active + list(waiting)
        return []

    def _check_stop(self) -> None:
        if self.cb.should_stop():
            raise Interrupted

    def _prepare(self, song: Song) -> bool:
        if not self.cb.claim(song):
            return False
        started = time.perf_counter()
        try:
            song.join(self.engine.condition(song.job.prompt))
        except Exception as error:  # noqa: BLE001 - one bad song must not stop the batch
            self._fail(song, error)
            return False
        song.generation_time_s += time.perf_counter() - started
        return True

    @staticmethod
    def _groups(active: list[Song]) -> list[list[Song]]:
        by_prompt: dict[int, list[Song]] = {}
        for song in active:
            if song.done:  # resumed with every window generated: it only needs decoding
                continue
            by_prompt.setdefault(song.plans[song.next_window].prompt_frames, []).append(song)
        return list(by_prompt.values())

    def _requests(self, group: list[Song]) -> list[WindowRequest]:
        requests = []
        for song in group:
            plan = song.plans[song.next_window]
            have = song.codes.shape[-1]
            requests.append(
                WindowRequest(
                    conditioning=song.conditioning,
                    prompt=song.codes[:, have - plan.prompt_frames :],
                    new_frames=plan.new_frames,
                    seed=derive_seed(song.seed, song.next_window),
                )
            )
        return requests

    def _advance(self, group: list[Song]) -> bool:
        """One window for every song in the group; False if the (single) song failed."""
        import torch

        started = time.perf_counter()
        frames = {id(song): song.plans[song.next_window].new_frames for song in group}

        def on_step(_step: int) -> None:
            self._check_stop()

        try:
            new_codes = self.engine.generate(self._requests(group), on_step=on_step)
        except Interrupted:
            # The partial window is lost, but its GPU time was spent on these songs.
            self._share(group, time.perf_counter() - started, frames)
            raise
        except Exception as error:  # noqa: BLE001 - retried alone below
            spent = time.perf_counter() - started
            if len(group) == 1:
                self._fail(group[0], error)
                return False
            log.warning(
                "a batch of %d songs failed (%s: %s); retrying each song alone",
                len(group), type(error).__name__, error,
            )
            survivors = [song for song in group if self._advance([song])]
            self._share(survivors, spent, frames)
            return True
        self._share(group, time.perf_counter() - started, frames)
        for song, codes in zip(group, new_codes):
            song.codes = torch.cat([song.codes, codes], dim=-1)
            song.batch_size = max(song.batch_size, len(group))
            song.next_window += 1
            self.cb.on_frames(codes.shape[-1])
            if not self.cb.on_window(song):
                song.leave(SongState.TAKEN_OVER)
        return True

    @staticmethod
    def _share(group: list[Song], seconds: float, frames: dict[int, int]) -> None:
        total = sum(frames[id(song)] for song in group)
        for song in group:
            song.generation_time_s += seconds * frames[id(song)] / total

    def _finish(self, song: Song) -> None:
        started = time.perf_counter()
        try:
            audio = self.engine.decode(song.codes, song.num_samples)
        except Exception as error:  # noqa: BLE001 - one bad song must not stop the batch
            self._fail(song, error)
            return
        song.generation_time_s += time.perf_counter() - started
        song.leave(SongState.DELIVERED)
        self.cb.on_done(song, audio)

    def _fail(self, song: Song, error: BaseException) -> None:
        song.leave(SongState.FAILED)
        self.cb.on_failed(song, error)
