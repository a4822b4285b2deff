"""The batch against the bucket: progress, cost report, and what is printed about them."""

from __future__ import annotations

import pytest

from contract.prompts import Job, LineError, PromptFile
from launcher import aws
from launcher.batch import (
    CostReport,
    format_bucket_for_launch,
    format_progress,
    format_prompts,
    parse_cost_report,
    read_cost_report,
    songs_in_bucket,
    split_progress,
)

A = Job(1, "upbeat synthwave", 180.0, "synthwave.wav")
B = Job(2, "calm lo-fi piano", 240.0, "lofi.wav")
C = Job(4, "epic orchestral", 90.5, "epic.wav")

REPORT_HEADER = "s3_filename,prompt,requested_duration_s,generation_time_s,estimated_cost_usd\n"


@pytest.mark.parametrize(
    ("keys", "done", "missing"),
    [
        pytest.param(set(), [], [A, B, C], id="empty bucket"),
        pytest.param({"lofi.wav", "notes.txt"}, [B], [A, C], id="one song and a stranger"),
        pytest.param({"Lofi.wav"}, [], [A, B, C], id="names are case-sensitive, as in S3"),
        pytest.param({"synthwave.wav", "lofi.wav", "epic.wav"}, [A, B, C], [], id="all done"),
    ],
)
def test_split_progress(keys: set[str], done: list[Job], missing: list[Job]) -> None:
    progress = split_progress([A, B, C], keys)

    assert (progress.done, progress.missing) == (done, missing)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(REPORT_HEADER, CostReport(0, 0.0), id="header only"),
        pytest.param(
            REPORT_HEADER
            + "synthwave.wav,upbeat synthwave,180,301.2,0.0335\n"
            + 'lofi.wav,"calm, lo-fi piano",240,410.9,0.0457\n',
            CostReport(2, 0.0792),
            id="two songs, one prompt with a comma",
        ),
    ],
)
def test_parse_cost_report(text: str, expected: CostReport) -> None:
    report = parse_cost_report(text)

    assert report.songs == expected.songs
    assert report.total_usd == pytest.approx(expected.total_usd)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param("", "no estimated_cost_usd column", id="empty"),
        pytest.param("a,b\n1,2\n", "no estimated_cost_usd column", id="other columns"),
        pytest.param(
            REPORT_HEADER + "x.wav,p,1,2,oops\n",
            "row 2: estimated_cost_usd 'oops' is not a number",
            id="not a number",
        ),
    ],
)
def test_parse_cost_report_rejects(text: str, message: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_cost_report(text)

    assert str(caught.value) == message


def test_format_prompts_names_invalid_lines() -> None:
    prompt_file = PromptFile(
        jobs=[A, B],
        errors=[
            LineError(3, "expected 'PROMPT ; DURATION_S ; FILE_NAME'"),
            LineError(5, "duration 'abc' is not a number of seconds"),
        ],
    )

    assert format_prompts("prompts.txt", prompt_file) == [
        "Batch: 2 songs in prompts.txt, 7.0 min of audio requested",
        "  2 invalid lines are skipped, as the worker would skip them:",
        "    line 3: expected 'PROMPT ; DURATION_S ; FILE_NAME'",
        "    line 5: duration 'abc' is not a number of seconds",
    ]
    assert format_prompts("p.txt", PromptFile([A], [LineError(2, "prompt is empty")])) == [
        "Batch: 1 song in p.txt, 3.0 min of audio requested",
        "  1 invalid line is skipped, as the worker would skip it:",
        "    line 2: prompt is empty",
    ]


def test_format_bucket_for_launch() -> None:
    assert format_bucket_for_launch(None, None) == [
        "Bucket: none yet (terraform creates one); every song will be generated"
    ]
    assert format_bucket_for_launch("b", None) == [
        "Bucket b: does not exist yet; every song will be generated"
    ]
    assert format_bucket_for_launch("b", split_progress([A, B, C], {"synthwave.wav"})) == [
        "Bucket b: 1 song already there (skipped), 2 songs to generate (5.5 min of audio)"
    ]


def test_format_progress() -> None:
    progress = split_progress([A, B, C], {"lofi.wav"})
    report = REPORT_HEADER + "lofi.wav,calm lo-fi piano,240,410.9,0.0457\n"

    assert format_progress("musicgen-batch-x", progress, report) == [
        "Songs in s3://musicgen-batch-x/: 1 of 3 done, 2 missing",
        "  done:",
        "    lofi.wav",
        "  missing:",
        "    synthwave.wav  (line 1, 180 s)",
        "    epic.wav  (line 4, 90.5 s)",
        # The report's 0.0457, as the listening page writes it; cents would say $0.05.
        "cost_report.csv: 1 song, total estimated cost $0.0457",
    ]
    assert format_progress("b", split_progress([A], set()), None)[-1] == (
        "cost_report.csv: not written yet"
    )
    assert format_progress("b", split_progress([A], set()), "junk")[-1] == (
        "cost_report.csv: unreadable (no estimated_cost_usd column)"
    )


def test_ten_thousand_missing_songs_fit_on_a_screen() -> None:
    """A big batch's status is a screenful per list, then how many more; the counts stay whole."""
    jobs = [Job(n, f"song {n}", 60.0, f"song{n:05}.wav") for n in range(1, 10_001)]
    progress = split_progress(jobs, {"song00001.wav", "song00002.wav"})

    lines = format_progress("b", progress, None)

    assert lines[0] == "Songs in s3://b/: 2 of 10000 done, 9998 missing"
    assert lines[1:4] == ["  done:", "    song00001.wav", "    song00002.wav"]
    missing = lines[lines.index("  missing:") + 1 : -1]
    assert len(missing) == 20
    assert missing[0] == "    song00003.wav  (line 3, 60 s)"
    assert missing[-1] == "    … and 9979 more"
    assert len(lines) == 26


def test_bucket_reads_against_the_local_endpoint(aws_env: str) -> None:
    s3 = aws.s3_client("us-east-1")
    assert songs_in_bucket(s3, "musicgen-batch-test") is None
    assert read_cost_report(s3, "musicgen-batch-test") is None

    s3.create_bucket(Bucket="musicgen-batch-test")
    assert read_cost_report(s3, "musicgen-batch-test") is None
    for key in ("lofi.wav", "logs/run-1.log", ".checkpoints/epic.wav.pt", "cost_report.csv"):
        body = REPORT_HEADER + "lofi.wav,p,240,410.9,0.0457\n" if key == "cost_report.csv" else b"x"
        s3.put_object(Bucket="musicgen-batch-test", Key=key, Body=body)

    # Bookkeeping and logs live under prefixes; only the root holds songs.
    assert songs_in_bucket(s3, "musicgen-batch-test") == {"lofi.wav", "cost_report.csv"}
    assert read_cost_report(s3, "musicgen-batch-test") == REPORT_HEADER + (
        "lofi.wav,p,240,410.9,0.0457\n"
    )


class FakeS3:
    """Pages of ListObjectsV2 as S3 shapes them, and the arguments they were asked with."""

    def __init__(self, pages: list[dict]) -> None:
        self.pages = pages
        self.calls: list[tuple[str, dict]] = []

    def get_paginator(self, operation: str) -> FakeS3:
        self.calls.append((operation, {}))
        return self

    def paginate(self, **kwargs: object) -> list[dict]:
        self.calls[-1] = (self.calls[-1][0], kwargs)
        return self.pages


def test_bucket_listing_reads_every_page() -> None:
    s3 = FakeS3(
        [
            {"Contents": [{"Key": "a.wav"}, {"Key": "b.wav"}], "IsTruncated": True},
            {"CommonPrefixes": [{"Prefix": "logs/"}], "IsTruncated": True},
            {"Contents": [{"Key": "c.wav"}]},
        ]
    )

    assert songs_in_bucket(s3, "many") == {"a.wav", "b.wav", "c.wav"}
    assert s3.calls == [("list_objects_v2", {"Bucket": "many", "Delimiter": "/"})]
