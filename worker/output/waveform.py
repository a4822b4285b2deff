"""A song's waveform as a small min/max envelope, computed once from the samples that are written.

The envelope lives in the song's record, so the listening page is rebuilt from records alone and
never downloads or decodes audio.
"""

from __future__ import annotations

import numpy as np

ENVELOPE_POINTS = 200


def envelope(samples: np.ndarray, points: int = ENVELOPE_POINTS) -> list[list[float]]:
    """[[min, max], ...]: `points` equal slices of the song (fewer for a shorter song), each
    slice's lowest and highest sample over all channels, clipped to [-1, 1] and rounded to 3
    decimals (enough for a picture, small enough for a JSON record)."""
    # A NaN would poison its slice's min/max and the picture's path; it plays as silence anyway.
    mono = np.nan_to_num(np.asarray(samples, dtype=np.float32), nan=0.0)
    if mono.ndim > 1:
        # (samples, channels) as soundfile writes them: one envelope spanning every channel.
        channels = tuple(range(1, mono.ndim))
        lows, highs = mono.min(axis=channels), mono.max(axis=channels)
    else:
        lows = highs = mono
    count = min(points, lows.shape[0])
    if count == 0:
        return []
    edges = np.linspace(0, lows.shape[0], count + 1).astype(np.int64)
    starts = edges[:-1]
    low = np.clip(np.minimum.reduceat(lows, starts), -1.0, 1.0)
    high = np.clip(np.maximum.reduceat(highs, starts), -1.0, 1.0)
    return [[round(float(a), 3), round(float(b), 3)] for a, b in zip(low, high)]
