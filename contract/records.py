"""The records the workers keep in the output, each a small JSON object: a song's record (its
generation time and cost, the cost report's source), a song's failed attempts, a song's lease and
a song's checkpoint. Their schemas and the validation of what is read back: any of them can be
edited by hand in the bucket, and one bad object must never stop a run or a report.

Where each lives is contract.bucket's; what a worker does with them is the worker's. numpy is
imported only where a checkpoint's codes are encoded or decoded: the launcher reads records and
failures on a laptop without the worker's extra.
"""

from __future__ import annotations

import base64
import json
import math
from dataclasses import MISSING, asdict, dataclass, fields
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

# The cost report's columns (cost_report.csv), in order.
COST_COLUMN = "estimated_cost_usd"
REPORT_COLUMNS = (
    "s3_filename",
    "prompt",
    "requested_duration_s",
    "generation_time_s",
    COST_COLUMN,
)


# What the report's blank cells, the listening page and `launcher status` all say of such a song.
REBUILT_NOTE = "record rebuilt: generation time and cost unknown"
# A record's fields that a rebuilt record may leave null (unknown): a song file does not tell how
# long it took to generate, with what batch, when or by whom.
UNKNOWN_WHEN_REBUILT = frozenset(
    {"generation_time_s", "estimated_cost_usd", "seed", "model", "batch_size", "windows",
     "started_at", "finished_at", "worker"}
)


@dataclass(frozen=True)
class SongRecord:
    s3_filename: str
    prompt: str  # "" in a rebuilt record when the stored song was made from another prompt
    requested_duration_s: float
    generation_time_s: float | None
    estimated_cost_usd: float | None
    file_name: str
    seed: int | None
    model: str | None
    batch_size: int | None
    windows: int | None
    started_at: str | None
    finished_at: str | None
    worker: str | None
    # [[min, max], ...] of the written audio (worker.output.waveform); None in records written before
    # the listening page existed, which then shows no picture.
    waveform: list[list[float]] | None = None
    # Mastering, for anyone checking a song's level later; absent from older records.
    measured_lufs: float | None = None
    gain_db: float = 0.0
    clipped_samples: int = 0
    # When this record was rebuilt from the stored song; None in a record written with the song.
    rebuilt_at: str | None = None

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), ensure_ascii=False, indent=1).encode("utf-8")

    @classmethod
    def from_json(cls, data: bytes) -> SongRecord:
        """ValueError or TypeError for anything but a record this version wrote (records can be edited by
        hand in the bucket, and one bad record must not stop the report)."""
        try:
            raw = json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, RecursionError) as error:
            raise ValueError(f"unreadable record: {error}") from None
        return cls.from_dict(raw)

    @classmethod
    def from_dict(cls, raw: object) -> SongRecord:
        if not isinstance(raw, dict):
            raise TypeError("a record must be a JSON object")
        names = {f.name: f.type for f in fields(cls)}
        required = {f.name for f in fields(cls) if f.default is MISSING}
        if not required <= set(raw) <= set(names):
            raise ValueError(f"a record has the fields {sorted(names)}, this one {sorted(map(str, raw))}")
        # Fields added later are absent from older records and only informative: a bad
        # hand-edited value falls back to its default instead of costing the song its row.
        raw = dict(raw)
        for field in fields(cls):
            check = OPTIONAL_CHECKS.get(field.name)
            if check is not None and field.name in raw and not check(raw[field.name]):
                raw[field.name] = field.default
        for name, kind in names.items():
            if name not in required:
                continue
            value = raw[name]
            if value is None and name in UNKNOWN_WHEN_REBUILT and raw.get("rebuilt_at") is not None:
                continue
            kind = kind.removesuffix(" | None")
            if kind == "str" and not isinstance(value, str):
                raise ValueError(f"{name} must be text, not {value!r}")
            if kind == "int" and (isinstance(value, bool) or not isinstance(value, int)):
                raise ValueError(f"{name} must be a whole number, not {value!r}")
            if kind == "float" and (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not math.isfinite(value)
                or value < 0
            ):
                raise ValueError(f"{name} must be a finite number >= 0, not {value!r}")
        return cls(**raw)


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _is_envelope(value: object) -> bool:
    return isinstance(value, list) and all(
        isinstance(pair, list) and len(pair) == 2 and all(_is_number(v) and -1 <= v <= 1 for v in pair)
        for pair in value
    )


OPTIONAL_CHECKS = {
    "waveform": _is_envelope,
    "measured_lufs": lambda v: v is None or _is_number(v),
    "gain_db": _is_number,
    "clipped_samples": lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 0,
    "rebuilt_at": lambda v: v is None or isinstance(v, str),
}

# What takes a record's place when its song was set aside as damaged (`.damaged/`): the song is
# no longer done, and a worker may not delete records in the bucket.
SET_ASIDE_FIELD = "set_aside"


def set_aside_marker(where: str, when: str) -> bytes:
    return json.dumps({SET_ASIDE_FIELD: where, "at": when}, ensure_ascii=False).encode("utf-8")


def is_set_aside(data: bytes) -> bool:
    try:
        raw = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return False
    return isinstance(raw, dict) and isinstance(raw.get(SET_ASIDE_FIELD), str)


# A failure count's stored error is cut to this, so a count stays far below the bound on
# bookkeeping reads.
MAX_ERROR_CHARS = 2000


@dataclass(frozen=True)
class Failure:
    file_name: str
    prompt_hash: str
    attempts: int
    error: str  # the last attempt's error, one line
    worker: str
    failed_at: str

    def to_json(self) -> bytes:
        return json.dumps(self.__dict__, ensure_ascii=False, indent=1).encode("utf-8")

    @classmethod
    def from_json(cls, data: bytes) -> Failure:
        """ValueError for anything but a failure count this version wrote (it can be edited by
        hand in the bucket)."""
        try:
            raw = json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, RecursionError, ValueError) as error:
            raise ValueError(f"unreadable failure count: {error}") from None
        if not isinstance(raw, dict) or set(raw) != {f for f in cls.__dataclass_fields__}:
            raise ValueError("not a failure count")
        attempts = raw["attempts"]
        if isinstance(attempts, bool) or not isinstance(attempts, int) or attempts < 0:
            raise ValueError(f"attempts must be a whole number >= 0, not {attempts!r}")
        if not all(isinstance(raw[name], str) for name in raw if name != "attempts"):
            raise ValueError("a failure count's fields other than attempts are text")
        return cls(**raw)


@dataclass(frozen=True)
class Lease:
    owner: str
    expires_at: float
    process: str | None = None  # HOST:PID:START of the writer (None: written by an older version)
    nonce: str | None = None  # the writer process's random token


ABANDONED = Lease("?", 0.0)


def parse_lease(data: bytes) -> Lease:
    """The lease in `data`; an unreadable one (edited by hand) reads as abandoned."""
    try:
        lease = json.loads(data)
        owner, expires_at = lease["owner"], float(lease["expires_at"])
        process, nonce = lease.get("process"), lease.get("nonce")
    except (ValueError, KeyError, TypeError, IndexError, AttributeError, RecursionError):
        return ABANDONED
    if not isinstance(owner, str) or not math.isfinite(expires_at):
        return ABANDONED
    return Lease(
        owner, expires_at,
        process if isinstance(process, str) else None, nonce if isinstance(nonce, str) else None,
    )


CHECKPOINT_FORMAT = 1
# Room for a checkpoint's fields besides its codes (identity, model name, seed, ...).
CHECKPOINT_FIELDS_BYTES = 64 * 1024


def checkpoint_size_limit(num_codebooks: int, total_frames: int) -> int:
    """The largest checkpoint a song of `total_frames` frames can have: all its codes as int16,
    in base64 (4 characters per 3 bytes), and its other fields. A larger object was not
    written by a worker and is not read whole."""
    codes = num_codebooks * total_frames * 2
    return 4 * math.ceil(codes / 3) + CHECKPOINT_FIELDS_BYTES


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
        import numpy as np

        codes = np.ascontiguousarray(self.codes, dtype="<i2")
        return json.dumps(
            {
                "format": CHECKPOINT_FORMAT,
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
        import numpy as np

        try:
            raw = json.loads(data.decode("utf-8"))
            if not isinstance(raw, dict):
                raise TypeError("not a JSON object")
            if raw.get("format") != CHECKPOINT_FORMAT:
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
