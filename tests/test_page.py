"""The listening page's HTML from jobs and records (pure), and the waveform envelope."""

from __future__ import annotations

import json
from dataclasses import asdict, replace
from html.parser import HTMLParser

import numpy as np
import pytest

from contract.prompts import Job
from contract.records import SongRecord
from worker.output.page import render_page, waveform_svg
from worker.output.waveform import envelope


def record(name: str, prompt: str, duration: float, seconds: float, cost: float, **extra) -> SongRecord:
    return SongRecord(
        s3_filename=f"batch/{name}",
        prompt=prompt,
        requested_duration_s=duration,
        generation_time_s=seconds,
        estimated_cost_usd=cost,
        file_name=name,
        seed=1,
        model="tiny",
        batch_size=1,
        windows=1,
        started_at="2026-11-29T06:00:00+00:00",
        finished_at="2026-11-29T06:01:00+00:00",
        worker="w1",
        **extra,
    )


class Page(HTMLParser):
    """Rows as lists of cell texts, plus each row's class, links, players and pictures."""

    def __init__(self, html: bytes):
        super().__init__()
        self.rows, self.classes, self.players, self.links, self.svgs = [], [], [], [], []
        self.tags, self.totals, self._cell, self._in_totals = [], "", None, False
        self.feed(html.decode("utf-8"))

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.tags.append(tag)
        if tag == "tr" and self.tags.count("tbody"):
            self.rows.append([])
            self.classes.append(attrs.get("class"))
            self.players.append([])
            self.links.append([])
            self.svgs.append(0)
        elif tag == "td":
            self._cell = ""
        elif tag == "audio" and self.rows:
            self.players[-1].append((attrs["src"], attrs.get("preload"), "controls" in attrs))
        elif tag == "a" and self.rows and self._cell is not None:
            self.links[-1].append(attrs["href"])
        elif tag == "svg" and self.rows:
            self.svgs[-1] += 1
        elif tag == "p" and attrs.get("class") == "totals":
            self._in_totals = True

    def handle_endtag(self, tag):
        if tag == "td":
            self.rows[-1].append(self._cell)
            self._cell = None
        elif tag == "p":
            self._in_totals = False

    def handle_data(self, data):
        if self._cell is not None:
            self._cell += data
        if self._in_totals:
            self.totals += data


JOBS = [
    Job(line_no=2, prompt="calm piano", duration_s=240, file_name="calm.wav"),
    Job(line_no=3, prompt="<script>alert(1)</script> & more", duration_s=180, file_name="odd & 'x'.flac"),
    Job(line_no=5, prompt="will fail", duration_s=200, file_name="fail.wav"),
    Job(line_no=6, prompt="not yet", duration_s=300, file_name="later.wav"),
]
CALM = record("calm.wav", "calm piano", 240, 300.0, 0.0333, waveform=[[-0.5, 0.5], [0.0, 0.0]])
ODD = record("odd & 'x'.flac", "<script>alert(1)</script> & more", 180, 200.0, 0.0222)
OLD = record("earlier.wav", "from an earlier prompts file", 60, 90.0, 0.005)


@pytest.mark.parametrize(
    ("records", "failed", "expected_rows", "classes"),
    [
        (
            [ODD, CALM],
            {"fail.wav": "RuntimeError: CUDA out of memory <oops>"},
            [
                ["2", "calm.wav", "calm piano", "calm.wav", "240 s", "300.0 s", "$0.0333"],
                [
                    "3", "odd & 'x'.flac", "<script>alert(1)</script> & more", "odd & 'x'.flac",
                    "180 s", "200.0 s", "$0.0222",
                ],
                ["5", "fail.wav", "will fail", "failed: RuntimeError: CUDA out of memory <oops>",
                 "200 s", "—", "—"],
                ["6", "later.wav", "not yet", "missing: not generated yet", "300 s", "—", "—"],
            ],
            ["done", "done", "failed", "missing"],
        ),
        (
            [OLD, CALM],
            {},
            [
                ["2", "calm.wav", "calm piano", "calm.wav", "240 s", "300.0 s", "$0.0333"],
                ["3", "odd & 'x'.flac", "<script>alert(1)</script> & more",
                 "missing: not generated yet", "180 s", "—", "—"],
                ["5", "fail.wav", "will fail", "missing: not generated yet", "200 s", "—", "—"],
                ["6", "later.wav", "not yet", "missing: not generated yet", "300 s", "—", "—"],
                # a song of an earlier prompts file still in the output comes last, as in the report
                ["", "earlier.wav", "from an earlier prompts file", "earlier.wav", "60 s", "90.0 s",
                 "$0.005"],
            ],
            ["done", "missing", "missing", "missing", "done"],
        ),
        ([], {}, [], []),
    ],
)
def test_rows_follow_the_prompts_file(records, failed, expected_rows, classes):
    page = Page(render_page(JOBS if expected_rows else [], records, failed))
    assert page.rows == expected_rows
    assert page.classes == classes


def test_players_link_each_song_relatively_by_its_own_file_name():
    page = Page(render_page(JOBS, [CALM, ODD]))
    quoted = "odd%20%26%20%27x%27.flac"
    assert page.players[:2] == [[("calm.wav", "metadata", True)], [(quoted, "metadata", True)]]
    assert page.links[:2] == [["calm.wav", "calm.wav"], [quoted, quoted]]
    assert page.players[2:] == [[], []] and page.links[2:] == [[], []]
    # A record from before the waveform existed still renders, without a picture.
    assert page.svgs[:2] == [1, 0]


def test_every_user_text_is_escaped():
    html = render_page(JOBS, [CALM, ODD], {"fail.wav": "<img src=x onerror=alert(1)>"}).decode()
    assert "<script" not in html and "<img" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; more" in html
    assert 'aria-label="play odd &amp; &#x27;x&#x27;.flac"' in html


def test_the_page_is_self_contained():
    html = render_page(JOBS, [CALM, ODD]).decode()
    assert html.startswith("<!DOCTYPE html>")
    assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in html
    for outside in ("http:", "https:", "//", "<link", "<script", "@import", "url("):
        assert outside not in html.replace("<!DOCTYPE", ""), outside


@pytest.mark.parametrize(
    ("records", "failed", "totals"),
    [
        (
            [CALM, ODD],
            {"fail.wav": "boom"},
            "2 of 4 songs ready, 1 failed, 1 missing · 7.0 min of audio · $0.0555 estimated cost",
        ),
        ([CALM, ODD, OLD], {}, "3 of 5 songs ready, 2 missing · 8.0 min of audio · $0.0605"),
        ([], {}, "0 of 4 songs ready, 4 missing · 0.0 min of audio · $0.00"),
    ],
)
def test_totals_count_songs_minutes_and_the_cost_upper_bound(records, failed, totals):
    page = Page(render_page(JOBS, records, failed))
    assert page.totals.startswith(totals)
    assert "upper bound" in page.totals


def test_records_written_before_the_waveform_still_load():
    old = {key: value for key, value in asdict(CALM).items() if key != "waveform"}
    loaded = SongRecord.from_json(json.dumps(old).encode())
    assert loaded == replace(CALM, waveform=None)
    assert SongRecord.from_json(CALM.to_json()) == CALM


@pytest.mark.parametrize(
    "waveform", [[[0, 2]], [[0.1]], "flat", [[0, float("nan")]], [[True, False]], {"a": 1}]
)
def test_a_hand_edited_waveform_is_dropped_and_the_song_keeps_its_row(waveform):
    raw = {**asdict(CALM), "waveform": waveform}
    assert SongRecord.from_dict(raw) == replace(CALM, waveform=None)


@pytest.mark.parametrize(
    ("field", "value", "default"),
    [("measured_lufs", "loud", None), ("gain_db", float("inf"), 0.0), ("clipped_samples", -3, 0)],
)
def test_a_hand_edited_level_falls_back_to_its_default(field, value, default):
    loaded = SongRecord.from_dict({**asdict(CALM), field: value})
    assert loaded == replace(CALM, **{field: default})


@pytest.mark.parametrize(
    ("points", "path"),
    [
        ([[-1.0, 1.0]], "M0.5 0.0V100.0"),
        ([[0.0, 0.5], [-0.25, 0.0]], "M0.5 25.0V50.0M1.5 50.0V62.5"),
        ([[0.0, 0.0]], "M0.5 49.5V50.5"),  # silence still shows a line
    ],
)
def test_waveform_svg_draws_one_stroke_per_point(points, path):
    svg = waveform_svg(points, "waveform of <a>")
    assert f'viewBox="0 0 {len(points)} 100"' in svg
    assert f'<path d="{path}"/>' in svg
    assert 'aria-label="waveform of &lt;a&gt;"' in svg


def test_no_waveform_no_picture():
    assert waveform_svg(None, "x") == "" and waveform_svg([], "x") == ""


@pytest.mark.parametrize(
    ("samples", "points", "expected"),
    [
        (np.array([0.1, -0.2, 0.3, -0.4]), 2, [[-0.2, 0.1], [-0.4, 0.3]]),
        (np.array([0.1, -0.2, 0.3]), 5, [[0.1, 0.1], [-0.2, -0.2], [0.3, 0.3]]),  # short song
        (np.array([2.0, -3.0, 0.5, 0.25]), 1, [[-1.0, 1.0]]),  # clipped as the file is
        (np.array([[0.1, -0.5], [0.2, 0.4]]), 1, [[-0.5, 0.4]]),  # (samples, channels)
        (np.zeros(0), 200, []),
        (np.array([0.12345, -0.98765]), 1, [[-0.988, 0.123]]),
        (np.array([np.nan, 0.5, -np.inf]), 1, [[-1.0, 0.5]]),
    ],
)
def test_envelope_is_min_and_max_per_slice(samples, points, expected):
    assert envelope(samples, points) == expected


def test_envelope_of_a_long_song_has_200_points_covering_all_of_it():
    samples = np.zeros(32_000 * 240, dtype=np.float32)
    samples[-1] = 0.75  # the last sample lands in the last point
    points = envelope(samples)
    assert len(points) == 200
    assert points[-1] == [0.0, 0.75] and points[0] == [0.0, 0.0]
