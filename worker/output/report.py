"""The cost report built from the songs' records (contract.records.SongRecord).

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
import logging
from typing import TYPE_CHECKING

from contract.bucket import RECORDS_PREFIX, REPORT_KEY
from contract.records import REPORT_COLUMNS, SongRecord, is_set_aside

if TYPE_CHECKING:
    from worker.store.store import Store

log = logging.getLogger(__name__)



def worker_hourly_rate(hourly_cost_usd: float, gpu_count: int) -> float:
    """One GPU worker's share of the instance's hourly price: N GPUs each run their own songs,
    so each song is charged for the hardware it used, and the songs' costs add up to the
    instance's."""
    return hourly_cost_usd / max(1, gpu_count)


def estimated_cost(generation_time_s: float, hourly_cost_usd: float) -> float:
    """An upper bound: the hourly price is the spot *max* price, not what the market charged."""
    return generation_time_s / 3600.0 * hourly_cost_usd


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
