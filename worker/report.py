"""Per-song records and the cost report built from them (pure: bytes in, bytes out).

Every finished song leaves a small JSON record under `.records/`; `cost_report.csv` is rebuilt from
all records at the end of each run, so it lists every song any run generated, interrupted or not.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import asdict, dataclass

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


def estimated_cost(generation_time_s: float, hourly_cost_usd: float) -> float:
    """An upper bound: the hourly price is the spot *max* price, not what the market charged."""
    return generation_time_s / 3600.0 * hourly_cost_usd


@dataclass(frozen=True)
class SongRecord:
    s3_filename: str
    prompt: str
    requested_duration_s: float
    generation_time_s: float
    estimated_cost_usd: float
    file_name: str
    seed: int
    model: str
    batch_size: int
    windows: int
    started_at: str
    finished_at: str
    worker: str
    # Mastering, for anyone checking a song's level later; absent from older records.
    measured_lufs: float | None = None
    gain_db: float = 0.0
    clipped_samples: int = 0

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), ensure_ascii=False, indent=1).encode("utf-8")

    @classmethod
    def from_json(cls, data: bytes) -> SongRecord:
        return cls(**json.loads(data.decode("utf-8")))


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
                record.s3_filename,
                record.prompt,
                f"{record.requested_duration_s:g}",
                f"{record.generation_time_s:.3f}",
                f"{record.estimated_cost_usd:.6f}",
            ]
        )
    return buffer.getvalue().encode("utf-8")


def parse_report(data: bytes) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(data.decode("utf-8"))))
