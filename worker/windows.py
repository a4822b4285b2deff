"""Long-form window arithmetic: pure functions, no torch.

audiocraft's algorithm in token space: the first window generates up to `window` seconds; each
next window is prompted with the last (window - stride) seconds of codes and adds up to `stride`
seconds, so every token is generated with the context the model was trained on.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class WindowPlan:
    prompt_frames: int
    new_frames: int


@dataclass(frozen=True)
class WindowSettings:
    window_s: float = 30.0
    stride_s: float = 18.0

    def __post_init__(self) -> None:
        if not (self.window_s > 0 and 0 < self.stride_s <= self.window_s):
            raise ValueError(
                f"need 0 < stride ({self.stride_s:g} s) <= window ({self.window_s:g} s)"
            )

    def frames(self, frame_rate: float) -> tuple[int, int]:
        """(window, stride) in codec frames."""
        window = max(1, round(self.window_s * frame_rate))
        stride = max(1, min(window, round(self.stride_s * frame_rate)))
        return window, stride


def song_samples(duration_s: float, sample_rate: int) -> int:
    """The exact length of a song's WAV: duration x sample rate, rounded to a whole sample."""
    return max(1, round(duration_s * sample_rate))


def song_frames(duration_s: float, sample_rate: int, hop_length: int) -> int:
    """Codec frames needed to decode at least song_samples() samples."""
    return math.ceil(song_samples(duration_s, sample_rate) / hop_length)


def plan_windows(total_frames: int, window_frames: int, stride_frames: int) -> list[WindowPlan]:
    if total_frames <= 0:
        raise ValueError("a song needs at least one frame")
    plans = [WindowPlan(0, min(window_frames, total_frames))]
    have = plans[0].new_frames
    while have < total_frames:
        new = min(stride_frames, total_frames - have)
        plans.append(WindowPlan(min(window_frames - stride_frames, have), new))
        have += new
    return plans


def steps_for(new_frames: int, num_codebooks: int, audio_channels: int = 1) -> int:
    """Decoder positions sampled for `new_frames` frames: the delay pattern adds the largest
    codebook delay, K - 1 for mono and K / 2 - 1 for stereo (left/right pairs share a delay)."""
    return new_frames + num_codebooks // audio_channels - 1
