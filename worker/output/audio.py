"""Songs as files: mastering (pure numpy) and 16-bit WAV or FLAC files with tags.

Samples are float arrays in soundfile's layout: (frames,) for mono, (frames, channels) for stereo.
Mastering runs in this order: refuse non-finite audio, fade out the ending, normalise integrated
loudness (ITU-R BS.1770, through pyloudnorm), then hold the peaks at -1 dBFS with a look-ahead
limiter so the gain never clips. With loudness `None` and no fade the samples are untouched.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyloudnorm
import soundfile
from scipy.ndimage import minimum_filter1d, uniform_filter1d

from contract.defaults import DEFAULT_AUDIO_FORMAT
from worker.settings import MasteringSettings

# container and subtype for soundfile; FLAC keeps the same 16-bit samples, losslessly compressed.
FORMATS: dict[str, tuple[str, str]] = {"wav": ("WAV", "PCM_16"), "flac": ("FLAC", "PCM_16")}
PEAK_CEILING_DBFS = -1.0
# The limiter lowers the gain this long before a peak and holds it this long after, so the gain
# moves smoothly instead of squaring off the waveform (which would sound like clipping).
LOOKAHEAD_S = 0.005
RELEASE_S = 0.05
# libsndfile silently drops a WAV INFO string longer than 2045 bytes.
MAX_WAV_TAG_BYTES = 2000


@dataclass(frozen=True)
class Mastered:
    samples: np.ndarray
    measured_lufs: float | None  # before the gain; None for audio too short or silent to measure
    gain_db: float
    limited_samples: int  # samples the limiter turned down
    clipped_samples: int  # samples beyond full scale, cut off when written as 16-bit PCM


def db_to_gain(db: float) -> float:
    return 10.0 ** (db / 20.0)


def require_finite(samples: np.ndarray) -> None:
    """ValueError for NaN or inf: written to PCM they would turn into full-scale noise."""
    bad = int(np.size(samples) - np.count_nonzero(np.isfinite(samples)))
    if bad:
        raise ValueError(f"the decoded audio has {bad} non-finite samples (NaN or inf)")


def fade_length(num_samples: int, sample_rate: int, fade_out_s: float) -> int:
    """Samples in the fade: fade_out_s long, never more than a quarter of the song."""
    return min(round(fade_out_s * sample_rate), num_samples // 4)


def fade_out(samples: np.ndarray, sample_rate: int, fade_out_s: float) -> np.ndarray:
    """An equal-power (cosine) fade over the last samples, reaching silence on the last one."""
    n = fade_length(samples.shape[0], sample_rate, fade_out_s)
    if n <= 0:
        return samples
    envelope = np.cos(0.5 * np.pi * np.arange(1, n + 1) / n).astype(samples.dtype)
    if samples.ndim > 1:
        envelope = envelope[:, None]
    out = samples.copy()
    out[-n:] *= envelope
    return out


def measure_loudness(samples: np.ndarray, sample_rate: int) -> float | None:
    """Integrated loudness in LUFS; None for audio shorter than one 400 ms block or silent."""
    meter = pyloudnorm.Meter(sample_rate)
    if samples.shape[0] < round(meter.block_size * sample_rate):
        return None
    with np.errstate(divide="ignore"):
        loudness = meter.integrated_loudness(samples.astype(np.float64))
    return float(loudness) if math.isfinite(loudness) else None


def normalise_loudness(
    samples: np.ndarray, sample_rate: int, target_lufs: float
) -> tuple[np.ndarray, float | None, float]:
    """(samples at target_lufs, measured LUFS, gain in dB); unchanged when nothing can be measured."""
    measured = measure_loudness(samples, sample_rate)
    if measured is None:
        return samples, None, 0.0
    gain_db = target_lufs - measured
    return (samples * db_to_gain(gain_db)).astype(samples.dtype), measured, gain_db


def limit_peaks(
    samples: np.ndarray, sample_rate: int, ceiling_dbfs: float = PEAK_CEILING_DBFS
) -> tuple[np.ndarray, int]:
    """(samples whose peaks are at most ceiling_dbfs, how many samples were turned down).

    The gain needed at each frame (both channels together, so the stereo image stays put) is
    spread over the look-ahead before and the release after it (a running minimum), then
    smoothed with a moving average shorter than the look-ahead: every average then only sees
    gains at or below the one its peak needs, so the ceiling holds exactly.
    """
    ceiling = db_to_gain(ceiling_dbfs)
    peak = np.abs(samples) if samples.ndim == 1 else np.abs(samples).max(axis=1)
    if peak.size == 0 or float(peak.max()) <= ceiling:
        return samples, 0
    # A hair under the ceiling, so rounding to float32 cannot land a peak above it.
    needed = np.minimum(1.0, ceiling * (1 - 1e-6) / np.maximum(peak, 1e-12))
    lookahead = max(1, round(LOOKAHEAD_S * sample_rate))
    release = max(lookahead, round(RELEASE_S * sample_rate))
    size = lookahead + release + 1
    # origin shifts the window to [n - release, n + lookahead].
    held = minimum_filter1d(needed, size, mode="nearest", origin=(size - 1) // 2 - lookahead)
    # Odd, so the average is centred and reaches at most half the look-ahead to either side;
    # the minimum with `needed` keeps the average's float rounding from letting a peak through.
    smooth_size = lookahead | 1
    gain = np.minimum(uniform_filter1d(held, smooth_size, mode="nearest"), needed)
    limited = int(np.count_nonzero(gain < 1.0))
    if samples.ndim > 1:
        gain = gain[:, None]
    return (samples * gain).astype(samples.dtype), limited


def master(samples: np.ndarray, sample_rate: int, settings: MasteringSettings) -> Mastered:
    require_finite(samples)
    out = fade_out(samples, sample_rate, settings.fade_out_s) if settings.fade_out_s > 0 else samples
    gain_db, limited = 0.0, 0
    if settings.loudness_lufs is None:
        measured = measure_loudness(out, sample_rate)  # for the log only
    else:
        out, measured, gain_db = normalise_loudness(out, sample_rate, settings.loudness_lufs)
        out, limited = limit_peaks(out, sample_rate)
    clipped = int(np.count_nonzero(np.abs(out) > 1.0))
    return Mastered(out, measured, gain_db, limited, clipped)


def song_comment(prompt: str, details: dict[str, object], audio_format: str) -> str:
    """The comment tag: how the song was made, settings first, then the prompt (cut to fit a
    WAV INFO string, which libsndfile would otherwise drop whole)."""
    head = "; ".join(f"{name}={value}" for name, value in details.items()) + "; prompt: "
    comment = head + prompt
    if audio_format == "wav" and len(comment.encode("utf-8")) > MAX_WAV_TAG_BYTES:
        room = MAX_WAV_TAG_BYTES - len(head.encode("utf-8")) - len("…".encode())
        comment = head + prompt.encode("utf-8")[:room].decode("utf-8", errors="ignore") + "…"
    return comment


def pcm16(samples: np.ndarray) -> np.ndarray:
    """16-bit samples exactly as libsndfile converts floats for a WAV file, so WAVs keep their
    bytes and a FLAC of the same song holds the same samples (libsndfile's FLAC encoder would
    round floats differently)."""
    buffer = io.BytesIO()
    # libsndfile wraps out-of-range floats around instead of clipping them.
    soundfile.write(buffer, np.clip(samples, -1.0, 1.0), 8000, subtype="PCM_16", format="WAV")
    buffer.seek(0)
    return soundfile.read(buffer, dtype="int16", always_2d=samples.ndim > 1)[0]


def write_song(
    path: Path,
    samples: np.ndarray,
    sample_rate: int,
    audio_format: str = DEFAULT_AUDIO_FORMAT,
    title: str | None = None,
    comment: str | None = None,
) -> None:
    """16-bit PCM WAV (INFO chunk tags) or FLAC (Vorbis comment tags), mono or stereo."""
    container, subtype = FORMATS[audio_format]
    channels = 1 if samples.ndim == 1 else samples.shape[1]
    with soundfile.SoundFile(path, "w", sample_rate, channels, subtype, format=container) as file:
        # FLAC writes its comments in the header, before the first samples.
        if title:
            file.title = title
        if comment:
            file.comment = comment
        file.write(pcm16(samples))
