"""launcher/failed.py: which missing songs the workers gave up on, from listed failure counts."""

from __future__ import annotations

import pytest

from contract.bucket import failure_key
from contract.prompts import Job, prompt_hash
from contract.records import Failure
from launcher.failed import FailedSong, failed_for_good, format_failed

JOBS = [
    Job(2, "calm piano", 30.0, "calm.wav"),
    Job(3, "loud drums", 60.0, "drums.wav"),
]


def count(file_name: str, prompt: str, attempts: int, error: str = "CUDA out of memory") -> tuple:
    failure = Failure(file_name, prompt_hash(prompt), attempts, error, "w-1", "2026-11-29T04:10:00+00:00")
    return failure_key(file_name), failure.to_json()


@pytest.mark.parametrize(
    ("objects", "max_attempts", "expected"),
    [
        pytest.param([], 2, [], id="no counts"),
        pytest.param([count("calm.wav", "calm piano", 1)], 2, [], id="one attempt of two"),
        pytest.param([count("calm.wav", "calm piano", 2)], 2, ["calm.wav"], id="given up"),
        pytest.param([count("calm.wav", "calm piano", 2)], 3, [], id="more attempts allowed"),
        pytest.param(
            [count("calm.wav", "calm piano, edited", 5)], 2, [], id="made for another prompt"
        ),
        pytest.param([count("gone.wav", "gone", 9)], 2, [], id="not in the prompts file"),
        pytest.param([(failure_key("calm.wav"), b"{not json")], 2, [], id="unreadable count"),
        pytest.param(
            [count("drums.wav", "loud drums", 2), count("calm.wav", "calm piano", 3)],
            2,
            ["calm.wav", "drums.wav"],
            id="in prompts-file order",
        ),
    ],
)
def test_failed_for_good(objects: list, max_attempts: int, expected: list[str]) -> None:
    found = failed_for_good(JOBS, objects, max_attempts)
    assert [song.job.file_name for song in found] == expected


def test_format_failed() -> None:
    [song] = failed_for_good(JOBS, [count("drums.wav", "loud drums", 2, "boom")])

    assert format_failed([]) == []
    assert format_failed([song]) == [
        "  failed for good (the workers do not try them again):",
        "    drums.wav  (line 3, 2 attempts): boom",
    ]
    assert isinstance(song, FailedSong)
