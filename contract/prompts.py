"""Parse prompts.txt: one song per line, `PROMPT ; DURATION_S ; FILE_NAME`.

Pure functions only (no torch, no I/O beyond reading the file's bytes), so the launcher can
show the same errors the worker would, without loading a model.
"""

from __future__ import annotations

import codecs
import errno
import hashlib
import math
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path

from .defaults import DEFAULT_AUDIO_FORMAT
from .values import parse_float, quoted

# Half an hour: far beyond the 3-5 minute songs this tool is for, yet a typo such as
# 18000 instead of 180 is caught before it buys five GPU hours.
MAX_DURATION_S = 1800.0
# Below a second the continuation loop has nothing to continue, and 1e-9 s is a one-frame WAV.
MIN_DURATION_S = 1.0
MAX_FILE_NAME_CHARS = 200
# File systems limit names in bytes (255 on ext4 and in S3 keys' parts), and CJK characters
# take three bytes each in UTF-8; the spool adds a suffix of its own.
MAX_FILE_NAME_BYTES = 200
# Names Windows cannot hold, so a bucket synced to a Windows machine would lose them.
WINDOWS_RESERVED = re.compile(r"(CON|PRN|AUX|NUL|COM[0-9¹²³]|LPT[0-9¹²³])(\..*)?", re.IGNORECASE)
WINDOWS_FORBIDDEN = set('<>:"|?*')
# MusicGen's text encoder reads at most 512 tokens; a longer "prompt" is a pasted file.
MAX_PROMPT_CHARS = 2000
WAV_SUFFIX = ".wav"
# The audio formats the worker writes, each with the one extension its files get.
SUFFIXES = {"wav": WAV_SUFFIX, "flac": ".flac"}
# Two thousand songs with 2000-character prompts fit; `--prompts /dev/zero` or a log file
# given by mistake is refused after reading this much, instead of filling the memory.
MAX_PROMPTS_MIB = 4
MAX_PROMPTS_BYTES = MAX_PROMPTS_MIB << 20


@dataclass(frozen=True)
class Job:
    """One song to generate, as written on line `line_no` of the prompts file."""

    line_no: int
    prompt: str
    duration_s: float
    file_name: str

    @property
    def prompt_hash(self) -> str:
        return prompt_hash(self.prompt)


@dataclass(frozen=True)
class LineError:
    line_no: int
    reason: str

    def __str__(self) -> str:
        return f"line {self.line_no}: {self.reason}"


@dataclass(frozen=True)
class PromptFile:
    jobs: list[Job]
    errors: list[LineError]


def prompt_hash(prompt: str) -> str:
    return hashlib.sha256(prompt.encode("utf-8")).hexdigest()[:16]


def parse_duration(text: str) -> float:
    """Seconds as a positive finite number no larger than MAX_DURATION_S, written in the digits
    0-9 (`150.5`, `1e2`); ValueError says why not."""
    shown = quoted(text)
    try:
        value = parse_float(text, "a number of seconds")
    except ValueError as error:
        raise ValueError(f"duration {shown} {error}") from None
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"duration {shown} must be a positive number of seconds")
    if value < MIN_DURATION_S:
        raise ValueError(f"duration {shown} is under the minimum of {MIN_DURATION_S:g} s")
    if value > MAX_DURATION_S:
        raise ValueError(f"duration {shown} is over the maximum of {MAX_DURATION_S:g} s")
    return value


def normalize_file_name(text: str, audio_format: str = DEFAULT_AUDIO_FORMAT) -> str:
    """A plain file name ending in the format's extension; ValueError names what is wrong with it.

    A name that ends in another format's extension is refused rather than renamed: the user
    asked for that file, and `x.wav.flac` or a FLAC named `x.wav` would surprise them.
    """
    suffix = SUFFIXES[audio_format]
    name = text.strip()
    if not name:
        raise ValueError("file name is empty")
    if any(unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp") for ch in name):
        raise ValueError(f"file name {quoted(name)} contains control characters")
    if "/" in name or "\\" in name:
        raise ValueError(f"file name {quoted(name)} must not contain '/' or '\\'")
    if ".." in name:
        raise ValueError(f"file name {quoted(name)} must not contain '..'")
    if name.startswith("."):
        raise ValueError(f"file name {quoted(name)} must not start with '.'")
    forbidden = sorted(WINDOWS_FORBIDDEN.intersection(name))
    if forbidden:
        raise ValueError(f"file name {quoted(name)} must not contain {' '.join(forbidden)} (Windows cannot hold them)")
    if name.endswith((".", " ")):
        raise ValueError(f"file name {quoted(name)} must not end with a dot or a space (Windows cannot hold it)")
    for other in SUFFIXES.values():
        if other != suffix and name.lower().endswith(other):
            raise ValueError(f"file name {quoted(name)} ends in {other}, but the format is {audio_format}")
    if not name.lower().endswith(suffix):
        name += suffix
    if WINDOWS_RESERVED.fullmatch(name):
        raise ValueError(f"file name {quoted(name)} is a device name on Windows")
    if len(name) > MAX_FILE_NAME_CHARS:
        raise ValueError(f"file name is longer than {MAX_FILE_NAME_CHARS} characters")
    if len(name.encode("utf-8")) > MAX_FILE_NAME_BYTES:
        raise ValueError(f"file name is longer than {MAX_FILE_NAME_BYTES} bytes in UTF-8")
    return name


def parse_line(line_no: int, line: str, audio_format: str = DEFAULT_AUDIO_FORMAT) -> Job | LineError | None:
    """None for blank and comment lines."""
    stripped = line.strip()
    if not stripped or stripped.startswith("#"):
        return None
    # The prompt may itself contain ';', so the two fixed fields are split off the right.
    parts = stripped.rsplit(";", 2)
    if len(parts) != 3:
        return LineError(line_no, "expected 'PROMPT ; DURATION_S ; FILE_NAME'")
    prompt, duration_text, name_text = (part.strip() for part in parts)
    if not prompt:
        return LineError(line_no, "prompt is empty")
    if len(prompt) > MAX_PROMPT_CHARS:
        return LineError(line_no, f"prompt is longer than {MAX_PROMPT_CHARS} characters")
    if any(unicodedata.category(ch) == "Cc" and ch != "\t" for ch in prompt):
        return LineError(line_no, "prompt contains control characters (only tab is allowed)")
    try:
        duration = parse_duration(duration_text)
        file_name = normalize_file_name(name_text, audio_format)
    except ValueError as exc:
        return LineError(line_no, str(exc))
    return Job(line_no=line_no, prompt=prompt, duration_s=duration, file_name=file_name)


def parse_prompts(text: str, audio_format: str = DEFAULT_AUDIO_FORMAT) -> PromptFile:
    return _parse_lines(enumerate(_split_lines(text.removeprefix("\ufeff")), start=1), audio_format)


def read_prompts(path: str | Path, audio_format: str = DEFAULT_AUDIO_FORMAT) -> PromptFile:
    """Parse a prompts file; a line that is not UTF-8 is reported and the other lines still run.

    Raises OSError when the file cannot be read, and EFBIG beyond MAX_PROMPTS_BYTES.
    """
    data = _as_utf8(_read_bounded(Path(path)))
    if isinstance(data, LineError):
        return PromptFile(jobs=[], errors=[data])
    numbered: list[tuple[int, str | LineError]] = []
    for line_no, raw in enumerate(_split_lines(data), start=1):
        try:
            numbered.append((line_no, raw.decode("utf-8")))
        except UnicodeDecodeError:
            numbered.append((line_no, LineError(line_no, "line is not valid UTF-8")))
    return _parse_lines(numbered, audio_format)


def _read_bounded(path: Path) -> bytes:
    """The file's bytes, reading at most one byte past the limit: a FIFO or a device (`/dev/zero`)
    never ends, and a terminal returns a line per read, so the reads loop until EOF or the limit."""
    chunks: list[bytes] = []
    size = 0
    with path.open("rb", buffering=0) as file:
        while size <= MAX_PROMPTS_BYTES:
            chunk = file.read(MAX_PROMPTS_BYTES + 1 - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    if size > MAX_PROMPTS_BYTES:
        # An OSError, so every reader of prompts files (the launcher too) reports it as it
        # reports a file it cannot read.
        raise OSError(errno.EFBIG, f"larger than {MAX_PROMPTS_MIB} MiB, the most a prompts file may hold")
    return b"".join(chunks)


def has_utf16_bom(data: bytes) -> bool:
    """Whether `data` starts with a UTF-16 byte order mark, as Notepad's "Unicode" and some
    spreadsheets save text: the prompts file and the cost report are read as UTF-16 then."""
    return data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE))


def _as_utf8(data: bytes) -> bytes | LineError:
    """The file's bytes as UTF-8: a UTF-16 file with its BOM (Notepad's "Unicode") is decoded;
    one without a BOM, which no line could survive, is one error for the whole file."""
    if has_utf16_bom(data):
        try:
            return data.decode("utf-16").encode("utf-8")
        except UnicodeDecodeError:
            return LineError(1, "the file looks like UTF-16 but does not decode; save it as UTF-8")
    if b"\x00" in data[:200] and data.count(b"\x00") * 3 >= len(data):
        return LineError(1, "the file looks like UTF-16 without a byte order mark; save it as UTF-8")
    return data.removeprefix(codecs.BOM_UTF8)


_LINE_END = {str: re.compile("\r\n|\n|\r"), bytes: re.compile(b"\r\n|\n|\r")}


def _split_lines(text: str | bytes) -> list:
    # LF, CRLF and a lone CR (old Mac editors) end a line. str.splitlines would also split on
    # form feeds and Unicode separators, and the line numbers would no longer match the
    # user's editor.
    lines = _LINE_END[type(text)].split(text)
    if not lines[-1]:
        lines.pop()
    return lines


def _parse_lines(numbered, audio_format: str = DEFAULT_AUDIO_FORMAT) -> PromptFile:
    jobs: list[Job] = []
    errors: list[LineError] = []
    first_line_of: dict[str, int] = {}
    for line_no, line in numbered:
        parsed = line if isinstance(line, LineError) else parse_line(line_no, line, audio_format)
        if parsed is None:
            continue
        if isinstance(parsed, LineError):
            errors.append(parsed)
            continue
        # Case-insensitive: two songs differing only in case would overwrite each other on
        # case-insensitive file systems and confuse anyone browsing the bucket.
        key = parsed.file_name.lower()
        if key in first_line_of:
            errors.append(
                LineError(
                    line_no,
                    f"file name {quoted(parsed.file_name)} is already used on line {first_line_of[key]}",
                )
            )
            continue
        first_line_of[key] = line_no
        jobs.append(parsed)
    return PromptFile(jobs=jobs, errors=errors)
