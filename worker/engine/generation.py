"""What the scheduler hands the engine: a prompt's conditioning, one window's request, the seeds.

Data types only, with no torch or transformers import, so the scheduler's rules load (and are
tested) without a model. The tensors inside come from the engine.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from typing import TYPE_CHECKING

from contract.prompts import SUFFIXES, WAV_SUFFIX, Job

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class Conditioning:
    """A prompt's projected text encoding, computed once per song and reused by every window."""

    hidden: torch.Tensor  # (tokens, decoder hidden)
    mask: torch.Tensor  # (tokens,)


@dataclass(frozen=True)
class WindowRequest:
    """One batch row: a song's conditioning, its prompt codes (K, P) and the frames to add."""

    conditioning: Conditioning
    prompt: torch.Tensor
    new_frames: int
    seed: int


def derive_seed(*parts: object) -> int:
    """A 63-bit seed from all of `parts`. (song seed, window index) gives each window its own
    stream, so a song resumed at window k continues exactly as an uninterrupted run would,
    whatever batch it shares; (base seed, file name) gives each song of a seeded run its own."""
    digest = hashlib.sha256(":".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


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
