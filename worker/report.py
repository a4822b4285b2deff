"""Per-song records and the cost report built from them.

Every finished song leaves a small JSON record under `.records/`; `cost_report.csv` is rebuilt from
all records at the end of each run, so it lists every song any run generated, interrupted or not.
A record rebuilt from a stored song (its own was lost or unreadable) carries `rebuilt_at`, and
null for what the song file cannot tell (the generation time, hence the cost): the report leaves
those cells blank. A song set aside as damaged leaves a marker in place of its record.
Everything here is pure (bytes in, bytes out) but `read_records` and `write_report`, which take
the store.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
from dataclasses import MISSING, asdict, dataclass, fields
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .store import Store

log = logging.getLogger(__name__)

REPORT_KEY = "cost_report.csv"
RECORDS_PREFIX = ".records/"
COST_COLUMN = "estimated_cost_usd"
REPORT_COLUMNS = (
    "s3_filename",
    "prompt",
    "requested_duration_s",
    "generation_time_s",
    COST_COLUMN,
)


def worker_hourly_rate(hourly_cost_usd: float, gpu_count: int) -> float:
    """One GPU worker's share of the instance's hourly price: N GPUs each run their own songs,
    so each song is charged for the hardware it used, and the songs' costs add up to the
    instance's."""
    return hourly_cost_usd / max(1, gpu_count)


def estimated_cost(generation_time_s: float, hourly_cost_usd: float) -> float:
    """An upper bound: the hourly price is the spot *max* price, not what the market charged."""
    return generation_time_s / 3600.0 * hourly_cost_usd


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
    # [[min, max], ...] of the written audio (worker.waveform); None in records written before
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


def record_key(file_name: str) -> str:
    return f"{RECORDS_PREFIX}{file_name}.json"


def render_report(records: list[SongRecord], order: list[str] | None = None) -> bytes:
    """CSV with exactly REPORT_COLUMNS; songs in `order` (file names) first, in that order."""
    position = {name: i for i, name in enumerate(order or [])}
    rows = sorted(records, key=lambda r: (position.get(r.file_name, len(position)), r.s3_filename))
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(REPORT_COLUMNS)
    for record in rows:
        writer.writerow(
            [
                _text_cell(record.s3_filename),
                _text_cell(record.prompt),
                _exact_number(record.requested_duration_s),
                _unknown_blank(record.generation_time_s, "{:.3f}"),
                _unknown_blank(record.estimated_cost_usd, "{:.6f}"),
            ]
        )
    return buffer.getvalue().encode("utf-8")


def _unknown_blank(value: float | None, form: str) -> str:
    """A rebuilt record's unknown number is a blank cell, never a 0 that would read as free."""
    return "" if value is None else form.format(value)


def _exact_number(value: float) -> str:
    """The shortest text that reads back as the same number: 11 -> "11", 1.23456789 stays."""
    text = repr(float(value))
    return text.removesuffix(".0")


def _text_cell(text: str) -> str:
    # A cell starting with one of these is a formula to a spreadsheet (CSV injection); a
    # leading apostrophe makes it text again, as OWASP recommends.
    return "'" + text if text[:1] in ("=", "+", "-", "@") else text


def parse_report(data: bytes) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(data.decode("utf-8"))))


def read_records(store: Store) -> dict[str, SongRecord]:
    """Every readable record in the output, by key; unreadable ones are skipped, and named
    (a stored song's is rebuilt when a worker next skips it). Markers of songs set aside are
    no records."""
    records = {}
    for key in store.list(RECORDS_PREFIX):
        found = store.read(key)
        if found is None or is_set_aside(found[0]):
            continue
        try:
            records[key] = SongRecord.from_json(found[0])
        except (ValueError, TypeError) as error:
            log.warning("ignored unreadable record %s: %s", key, error)
    return records


# Rewrites of the report when records keep appearing while it is written.
REPORT_TRIES = 3


def write_report(store: Store, order: list[str]) -> list[SongRecord]:
    """Rebuild cost_report.csv from every record (songs in `order` first); any worker may, the
    last one wins. Returns the records it lists.

    Re-read after writing: a worker that finished meanwhile may have written its report first,
    and then this one must include its record too.
    """
    records = read_records(store)
    for _attempt in range(REPORT_TRIES):
        store.write(REPORT_KEY, render_report(list(records.values()), order))
        latest = read_records(store)
        if latest.keys() == records.keys():
            break
        records = latest
    log.info("wrote %s (%d songs)", store.uri(REPORT_KEY), len(records))
    return list(records.values())
