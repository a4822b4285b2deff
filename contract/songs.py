"""A stored song as the workers leave it and the launcher reads it: the metadata it carries,
whether it is plausibly whole and whether it still matches its line in prompts.txt. The rules,
without I/O (torch-free and soundfile-free, so `launcher status` applies the very same ones to
what S3 lists).

A stored song carries the prompt hash and duration it was generated from (S3 metadata, and the
song's record). When the prompts file now says something else under the same file name, the
stored song is kept (writes are conditional) and the user is told how to regenerate it.

A song counts as done only when its file is plausible: not empty, and of about the length it was
made for where that is cheap to tell. A local file tells through its header (`header_problem`);
an S3 object through its size and the metadata the worker uploads with it (`size_problem`).

Sizes: the worker writes 16-bit PCM, so a WAV holds exactly `frames x channels x 2` bytes of
samples after a header of at least 44 bytes (more with the title and comment tags). FLAC sizes
depend on the audio, so its bound is the smallest stream any FLAC encoder can write for that many
samples (RFC 9639): a 42-byte head (`fLaC` and the 34-byte STREAMINFO block with its 4-byte
header) and, per block of at most 65535 samples, a frame of at least 6 header bytes, one CONSTANT
subframe per channel (an 8-bit subframe header and one 16-bit sample) and a 2-byte CRC-16. Pure
digital silence comes closest to it; any real song, and every song the worker writes, is larger.
A truncated FLAC can stay above that bound, which is why a local FLAC is also read at its end.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from .prompts import Job

# Metadata keys the worker uploads with every song (see worker/delivery.song_metadata).
PROMPT_HASH_KEY = "prompt-hash"
DURATION_KEY = "duration-s"
SAMPLE_RATE_KEY = "sample-rate"
CHANNELS_KEY = "channels"

PCM_BYTES = 2  # 16-bit samples: audio.write_song writes PCM_16 in both formats
WAV_HEADER_BYTES = 44
# Tags (title and the comment with the prompt, at most 2000 characters) and chunk padding.
WAV_TAGS_BYTES = 64 * 1024
FLAC_HEAD_BYTES = 4 + 4 + 34
FLAC_MAX_BLOCK = 65535
FLAC_FRAME_HEADER_MIN = 6
FLAC_CONSTANT_SUBFRAME = 3
FLAC_FRAME_FOOTER = 2


def tolerance_s(duration_s: float) -> float:
    """How far a whole song's length may be from the one asked for: the worker trims to the
    exact sample, so this only absorbs rounding and another sample rate's frame grid."""
    return max(0.5, 0.01 * duration_s)


def wav_bytes(frames: int, channels: int) -> int:
    """The smallest WAV holding `frames` 16-bit samples per channel."""
    return WAV_HEADER_BYTES + frames * channels * PCM_BYTES


def flac_floor_bytes(frames: int, channels: int) -> int:
    """The fewest bytes any FLAC stream of `frames` samples per channel can take (see above)."""
    blocks = math.ceil(frames / FLAC_MAX_BLOCK)
    frame = FLAC_FRAME_HEADER_MIN + channels * FLAC_CONSTANT_SUBFRAME + FLAC_FRAME_FOOTER
    return FLAC_HEAD_BYTES + blocks * frame


@dataclass(frozen=True)
class Header:
    """What a song file's own header (and an attempt to read its last samples) says."""

    frames: int
    sample_rate: int
    channels: int
    tail_readable: bool = True


def _seconds(value: float) -> str:
    return f"{value:g} s"


def header_problem(size: int, header: Header | str, duration_s: float) -> str | None:
    """Why a local song file is not a whole song of `duration_s` seconds, or None. `header` is
    the decoder's reason when the file could not be opened as audio."""
    if size == 0:
        return "it is empty (0 bytes)"
    if isinstance(header, str):
        return f"it cannot be decoded ({header})"
    if not header.tail_readable:
        return "it is truncated (its last samples cannot be read)"
    length = header.frames / header.sample_rate if header.sample_rate else 0.0
    if abs(length - duration_s) > tolerance_s(duration_s):
        return f"it holds {length:.2f} s of audio, made for {_seconds(duration_s)}"
    return None


def _positive_int(metadata: Mapping[str, str], key: str) -> int | None:
    try:
        value = int(metadata.get(key, ""))
    except ValueError:
        return None
    return value if value > 0 else None


def made_for_s(metadata: Mapping[str, str], fallback_s: float) -> float:
    """The length a stored song was made for: its metadata's, else `fallback_s` (the record's
    or the prompts file's)."""
    try:
        value = float(metadata.get(DURATION_KEY, ""))
    except ValueError:
        return fallback_s
    return value if math.isfinite(value) and value > 0 else fallback_s


def size_problem(file_name: str, size: int, metadata: Mapping[str, str], duration_s: float) -> str | None:
    """Why an S3 object of `size` bytes is not a whole song of `duration_s` seconds, or None.
    Without the worker's sample-rate and channel metadata (an object uploaded by hand, or by a
    version that did not write them) its format is unknown, and only an empty one is refused:
    a file put there on purpose is the user's to keep."""
    if size == 0:
        return "it is empty (0 bytes)"
    flac = file_name.lower().endswith(".flac")
    rate, channels = _positive_int(metadata, SAMPLE_RATE_KEY), _positive_int(metadata, CHANNELS_KEY)
    if rate is None or channels is None:
        return None
    slack = tolerance_s(duration_s)
    fewest = max(0, math.floor((duration_s - slack) * rate))
    most = math.ceil((duration_s + slack) * rate)
    shape = f"a {_seconds(duration_s)} song at {rate} Hz with {channels} channel{'s' if channels > 1 else ''}"
    floor = flac_floor_bytes(fewest, channels) if flac else wav_bytes(fewest, channels)
    if size < floor:
        return f"it is {size} bytes, and {shape} takes at least {floor}"
    ceiling = wav_bytes(most, channels) + WAV_TAGS_BYTES
    if not flac and size > ceiling:
        return f"it is {size} bytes, and {shape} takes at most {ceiling}"
    return None


REGENERATE_HINT = "rename the song or delete the stored file to generate it again"


def duration_text(seconds: float) -> str:
    """How a duration is written into a song's metadata (`duration-s`)."""
    return f"{seconds:g}"


def describe_change(job: Job, stored_prompt_hash: str | None, stored_duration: str | None) -> str | None:
    """What changed since the stored song was generated ("the prompt", "the duration (2 s,
    now 3 s)"), or None when nothing did or nothing is known."""
    changes = []
    if stored_prompt_hash is not None and stored_prompt_hash != job.prompt_hash:
        changes.append("the prompt")
    if stored_duration is not None and stored_duration != duration_text(job.duration_s):
        changes.append(f"the duration ({stored_duration} s, now {duration_text(job.duration_s)} s)")
    return " and ".join(changes) or None
