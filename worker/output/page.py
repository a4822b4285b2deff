"""The listening page, `index.html` next to the songs (`render_page` is pure: jobs and records
in, bytes out; `write_page` stores it).

One self-contained static file: inline CSS and SVG, no script and nothing fetched from elsewhere,
since the bucket is private and the page is opened from disk. Songs are linked relatively, so
the same page works in the output folder and in a downloaded copy.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from html import escape
from typing import TYPE_CHECKING
from urllib.parse import quote

from contract.bucket import PAGE_KEY
from contract.defaults import usd_amount
from contract.prompts import Job
from contract.records import REBUILT_NOTE, SongRecord

if TYPE_CHECKING:
    from worker.store.store import Store

log = logging.getLogger(__name__)

PAGE_CONTENT_TYPE = "text/html; charset=utf-8"

_STYLE = """
:root { color-scheme: light dark; --fg: #1b1b1f; --bg: #fff; --muted: #5f6368; --line: #dadce0;
  --wave: #3367d6; --bad: #b3261e; --focus: #e8710a; }
@media (prefers-color-scheme: dark) {
  :root { --fg: #e8eaed; --bg: #1b1b1f; --muted: #a8abb0; --line: #3c4043; --wave: #8ab4f8;
    --bad: #f28b82; }
}
* { box-sizing: border-box; }
body { margin: 0 auto; padding: 1rem; max-width: 80rem; font: 16px/1.45 system-ui, sans-serif;
  color: var(--fg); background: var(--bg); }
h1 { font-size: 1.4rem; margin: 0 0 .25rem; }
.totals { margin: 0 0 1rem; color: var(--muted); }
.totals strong { color: var(--fg); }
table { width: 100%; border-collapse: collapse; }
th, td { padding: .5rem; text-align: left; vertical-align: top; border-bottom: 1px solid var(--line); }
th { font-size: .85rem; color: var(--muted); font-weight: 600; }
td.num { text-align: right; white-space: nowrap; font-variant-numeric: tabular-nums; }
td.prompt { overflow-wrap: anywhere; max-width: 28rem; }
td.listen { min-width: 16rem; overflow-wrap: anywhere; }
audio { width: 100%; display: block; }
svg.wave { display: block; width: 100%; height: 2.5rem; margin-top: .25rem; }
svg.wave path { stroke: var(--wave); stroke-width: .8; fill: none; }
svg.wave line { stroke: var(--line); stroke-width: .5; }
.status { font-weight: 600; }
.note { margin: .25rem 0 0; font-size: .85rem; color: var(--muted); }
tr.failed .status { color: var(--bad); }
tr.missing .status { color: var(--muted); }
a { color: var(--wave); overflow-wrap: anywhere; }
a:focus-visible, audio:focus-visible { outline: 3px solid var(--focus); outline-offset: 2px; }
@media (max-width: 44rem) {
  thead { position: absolute; width: 1px; height: 1px; overflow: hidden; clip-path: inset(50%); }
  table, tbody, tr, td { display: block; width: 100%; }
  tr { border: 1px solid var(--line); border-radius: .5rem; margin: 0 0 .75rem; padding: .25rem 0; }
  td { border: 0; padding: .25rem .75rem; }
  td.num { text-align: left; }
  td.prompt { max-width: none; }
  td.listen { min-width: 0; }
  td[data-label]::before { content: attr(data-label) ": "; color: var(--muted); font-size: .85rem; }
}
"""

_HEADERS = ("Line", "Song", "Prompt", "Listen", "Requested", "Generation", "Est. cost")


def _seconds(value: float) -> str:
    return f"{value:g} s"


# A rebuilt record's generation time (and so its cost) is unknown: the report leaves the cells
# blank, the page says so.
UNKNOWN = "unknown"


def waveform_svg(points: list[list[float]] | None, label: str) -> str:
    """The min/max envelope as one SVG path: a vertical stroke per point, 0 in the middle."""
    if not points:
        return ""
    strokes = []
    for x, (low, high) in enumerate(points):
        top, bottom = 50 - 50 * high, 50 - 50 * low
        if bottom - top < 1:  # silence still draws a visible line
            top, bottom = top - 0.5, bottom + 0.5
        strokes.append(f"M{x + 0.5:g} {top:.1f}V{bottom:.1f}")
    return (
        f'<svg class="wave" viewBox="0 0 {len(points)} 100" preserveAspectRatio="none" '
        f'role="img" aria-label="{escape(label)}"><line x1="0" y1="50" x2="{len(points)}" '
        f'y2="50"/><path d="{"".join(strokes)}"/></svg>'
    )


def _cell(label: str, content: str, css: str = "") -> str:
    kind = f' class="{css}"' if css else ""
    return f'<td{kind} data-label="{label}">{content}</td>'


def _song_row(line: str, record: SongRecord) -> str:
    name = record.file_name
    href = escape(quote(name))
    listen = (
        f'<audio controls preload="metadata" src="{href}" aria-label="play {escape(name)}">'
        f'<a href="{href}">{escape(name)}</a></audio>'
        + waveform_svg(record.waveform, f"waveform of {name}")
        + (f'<p class="note">{REBUILT_NOTE}</p>' if record.rebuilt_at else "")
    )
    generation = UNKNOWN if record.generation_time_s is None else f"{record.generation_time_s:.1f} s"
    cost = UNKNOWN if record.estimated_cost_usd is None else usd_amount(record.estimated_cost_usd)
    return "".join(
        [
            '<tr class="done">',
            _cell("Line", line, "num"),
            _cell("Song", f'<a href="{href}">{escape(name)}</a>'),
            _cell("Prompt", escape(record.prompt) or UNKNOWN, "prompt"),
            _cell("Listen", listen, "listen"),
            _cell("Requested", _seconds(record.requested_duration_s), "num"),
            _cell("Generation", generation, "num"),
            _cell("Est. cost", cost, "num"),
            "</tr>",
        ]
    )


def _absent_row(job: Job, reason: str | None) -> str:
    state = "failed" if reason is not None else "missing"
    detail = "not generated yet" if reason is None else reason
    status = f'<span class="status">{state}</span>' + (f": {escape(detail)}" if detail else "")
    return "".join(
        [
            f'<tr class="{state}">',
            _cell("Line", str(job.line_no), "num"),
            _cell("Song", escape(job.file_name)),
            _cell("Prompt", escape(job.prompt), "prompt"),
            _cell("Listen", status, "listen"),
            _cell("Requested", _seconds(job.duration_s), "num"),
            _cell("Generation", "—", "num"),
            _cell("Est. cost", "—", "num"),
            "</tr>",
        ]
    )


def render_page(
    jobs: list[Job], records: list[SongRecord], failed: Mapping[str, str] | None = None
) -> bytes:
    """One row per job in prompts-file order, then songs of earlier prompts files that are still
    in the output (as the cost report lists them). `failed` maps a file name to why its song
    failed in this run; a song with neither record nor failure is still missing."""
    failed = failed or {}
    by_name = {record.file_name: record for record in records}
    rows, failed_count, missing_count = [], 0, 0
    for job in jobs:
        record = by_name.pop(job.file_name, None)
        if record is not None:
            rows.append(_song_row(str(job.line_no), record))
            continue
        reason = failed.get(job.file_name)
        failed_count += reason is not None
        missing_count += reason is None
        rows.append(_absent_row(job, reason))
    for record in sorted(by_name.values(), key=lambda r: r.s3_filename):
        rows.append(_song_row("", record))

    done = len(rows) - failed_count - missing_count
    minutes = sum(record.requested_duration_s for record in records) / 60
    cost = sum(record.estimated_cost_usd or 0.0 for record in records)
    unknown = sum(record.estimated_cost_usd is None for record in records)
    totals = (
        f"<strong>{done}</strong> of {len(rows)} songs ready"
        + (f", <strong>{failed_count}</strong> failed" if failed_count else "")
        + (f", {missing_count} missing" if missing_count else "")
        + f" · <strong>{minutes:.1f}</strong> min of audio"
        + f" · <strong>{usd_amount(cost)}</strong> estimated cost (an upper bound: generation time"
        " at the hourly max price"
        + (f"; {unknown} song{'s' if unknown > 1 else ''} of unknown cost not included" if unknown else "")
        + ")"
    )
    head = "".join(f'<th scope="col">{header}</th>' for header in _HEADERS)
    page = f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>MusicGen batch: {done} of {len(rows)} songs</title>
<style>{_STYLE}</style>
</head>
<body>
<main>
<h1>MusicGen batch</h1>
<p class="totals">{totals}</p>
<table>
<thead><tr>{head}</tr></thead>
<tbody>
{chr(10).join(rows)}
</tbody>
</table>
</main>
</body>
</html>
"""
    return page.encode("utf-8")


def write_page(store: Store, jobs: list[Job], records: list[SongRecord], why_failed: Mapping[str, str]) -> None:
    store.write(PAGE_KEY, render_page(jobs, records, why_failed), content_type=PAGE_CONTENT_TYPE)
    log.info("wrote %s", store.uri(PAGE_KEY))
