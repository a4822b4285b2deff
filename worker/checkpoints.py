"""A song's progress, saved after every window so a new run continues mid-song.

Stored as `.checkpoints/<FILE_NAME>.json`: the codes so far (int16, base64), the next window,
the seed, and what must match for the codes to still be valid (prompt, duration, model, window
layout). A few hundred kilobytes for a five-minute song; one PUT, so it is never half-written.
"""

from __future__ import annotations

import base64
import json
import math
from dataclasses import asdict, dataclass

import numpy as np

CHECKPOINTS_PREFIX = ".checkpoints/"
FORMAT = 1
# Room for a checkpoint's fields besides its codes (identity, model name, seed, ...).
FIELDS_BYTES = 64 * 1024


def checkpoint_key(file_name: str) -> str:
    return f"{CHECKPOINTS_PREFIX}{file_name}.json"


def size_limit(num_codebooks: int, total_frames: int) -> int:
    """The largest checkpoint a song of `total_frames` frames can have: all its codes as int16,
    in base64 (4 characters per 3 bytes), and its other fields. A larger object was not
    written by a worker and is not read whole."""
    codes = num_codebooks * total_frames * 2
    return 4 * math.ceil(codes / 3) + FIELDS_BYTES


@dataclass(frozen=True)
class Identity:
    """What a checkpoint must agree on with the song it would resume."""

    prompt_hash: str
    duration_s: float
    model: str
    window_frames: int
    stride_frames: int

    def mismatch(self, other: Identity) -> str | None:
        for name, mine in asdict(self).items():
            theirs = getattr(other, name)
            if mine != theirs:
                return f"{name} was {theirs!r}, now {mine!r}"
        return None


@dataclass(frozen=True)
class Checkpoint:
    identity: Identity
    seed: int
    next_window: int
    generation_time_s: float
    codes: np.ndarray  # (K, frames) integer codes

    def to_json(self) -> bytes:
        codes = np.ascontiguousarray(self.codes, dtype="<i2")
        return json.dumps(
            {
                "format": FORMAT,
                "identity": asdict(self.identity),
                "seed": self.seed,
                "next_window": self.next_window,
                "generation_time_s": self.generation_time_s,
                "codes_shape": list(codes.shape),
                "codes": base64.b64encode(codes.tobytes()).decode("ascii"),
            }
        ).encode("utf-8")

    @classmethod
    def from_json(cls, data: bytes) -> Checkpoint:
        """ValueError for anything that is not a checkpoint this version wrote."""
        try:
            raw = json.loads(data.decode("utf-8"))
            if not isinstance(raw, dict):
                raise TypeError("not a JSON object")
            if raw.get("format") != FORMAT:
                raise ValueError(f"unknown checkpoint format {raw.get('format')!r}")
            shape = tuple(int(n) for n in raw["codes_shape"])
            if len(shape) != 2 or min(shape) < 0:
                raise ValueError(f"codes_shape {list(shape)} is not (codebooks, frames)")
            codes = np.frombuffer(base64.b64decode(raw["codes"], validate=True), dtype="<i2").reshape(shape)
            checkpoint = cls(
                identity=Identity(**raw["identity"]),
                seed=int(raw["seed"]),
                next_window=int(raw["next_window"]),
                generation_time_s=float(raw["generation_time_s"]),
                codes=codes.astype(np.int64),
            )
        except (KeyError, TypeError, AttributeError, OverflowError, RecursionError) as error:
            raise ValueError(f"unreadable checkpoint: {type(error).__name__}: {error}") from None
        except ValueError as error:  # also JSONDecodeError, UnicodeDecodeError, bad base64
            raise ValueError(f"unreadable checkpoint: {error}") from None
        if checkpoint.next_window < 0 or not 0 <= checkpoint.generation_time_s < math.inf:
            raise ValueError("unreadable checkpoint: next_window or generation_time_s out of range")
        return checkpoint
