"""WAV files: 16-bit PCM, mono, at the model's sample rate."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile


def write_wav(path: Path, samples: np.ndarray, sample_rate: int) -> None:
    # libsndfile wraps out-of-range floats around instead of clipping them.
    soundfile.write(path, np.clip(samples, -1.0, 1.0), sample_rate, subtype="PCM_16", format="WAV")
