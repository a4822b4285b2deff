"""The runner's decisions as pure functions, one table each: no store, no model, no clock."""

from __future__ import annotations

import numpy as np
import pytest

from contract.policy import GIVEN_UP, LEAVE, RETRY, after_failure, is_given_up
from contract.prompts import Job, prompt_hash
from contract.records import Checkpoint, Failure, Identity, SongRecord
from contract.songs import Header
from worker.run.delivery import song_metadata, spool_mismatch
from worker.run.results import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_SIGINT,
    EXIT_SIGTERM,
    EXIT_STOPPED,
    EXIT_TIME_CAP,
    RunResult,
    not_written,
    run_exit_code,
)
from worker.run.resume import checkpoint_problem
from worker.run.runner import next_round, renewed
from worker.run.skipping import handled, stored_description
from worker.windows import WindowPlan

# -- what is the exit code of a run ---------------------------------------------------------


@pytest.mark.parametrize(
    ("unfinished", "failed", "done", "stopped", "expected"),
    [
        ([], [], set(), None, EXIT_OK),
        ([], ["a"], {"a"}, None, EXIT_OK),  # failed, then written or given up
        ([], ["a", "b"], {"a"}, None, EXIT_FAILED),  # b is for a later run
        (["a"], [], set(), EXIT_STOPPED, EXIT_STOPPED),
        (["a"], ["b"], set(), EXIT_STOPPED, EXIT_STOPPED),  # stopping outranks a failure
        (["a"], [], set(), EXIT_TIME_CAP, EXIT_TIME_CAP),
        (["a"], [], set(), EXIT_SIGINT, EXIT_SIGINT),
        (["a"], ["b"], set(), EXIT_SIGTERM, EXIT_SIGTERM),
        ([], ["b"], set(), EXIT_TIME_CAP, EXIT_FAILED),  # the stop came after the last song
        ([], [], set(), EXIT_SIGTERM, EXIT_OK),
    ],
)
def test_run_exit_code(unfinished, failed, done, stopped, expected):
    assert run_exit_code(unfinished, failed, done, stopped) == expected


def test_a_run_results_exit_code_counts_generated_skipped_and_given_up_as_done():
    failure = Failure("c.wav", "h", 2, "boom", "w", "t")
    result = RunResult(generated=["a.wav"], skipped=["b.wav"], failed=["a.wav", "b.wav", "c.wav"])
    assert result.exit_code() == EXIT_FAILED
    result.given_up["c.wav"] = failure
    assert result.exit_code() == EXIT_OK
    result.left_to["d.wav"] = "host-2"  # held by a live worker: done as far as this one goes
    assert result.exit_code() == EXIT_OK
    result.unfinished.append("e.wav")
    assert (result.exit_code(EXIT_STOPPED), result.exit_code(EXIT_TIME_CAP)) == (EXIT_STOPPED, EXIT_TIME_CAP)


@pytest.mark.parametrize(
    ("failed", "written", "expected"),
    [
        ([], set(), []),
        (["a", "b", "a"], set(), ["a", "b"]),
        (["b", "a", "b"], {"b"}, ["a"]),
    ],
)
def test_not_written(failed, written, expected):
    assert not_written(failed, written) == expected


# -- is this song done: given up, or handled by this run ------------------------------------


def failure(prompt_hash: str, attempts: int) -> Failure:
    return Failure("a.wav", prompt_hash, attempts, "boom", "w", "2026-01-01T00:00:00+00:00")


@pytest.mark.parametrize(
    ("count", "prompt", "max_attempts", "expected"),
    [
        (None, "h", 2, False),
        (failure("h", 1), "h", 2, False),
        (failure("h", 2), "h", 2, True),
        (failure("h", 5), "h", 2, True),
        (failure("h", 2), "h", 3, False),
        (failure("old", 9), "h", 2, False),  # made for an edited line: does not count
    ],
)
def test_is_given_up(count, prompt, max_attempts, expected):
    assert is_given_up(count, prompt, max_attempts) is expected


@pytest.mark.parametrize(
    ("attempts", "tries", "max_attempts", "expected"),
    [
        (1, 1, 2, RETRY),
        (2, 1, 2, GIVEN_UP),  # the other worker's attempt was the last
        (2, 2, 2, GIVEN_UP),
        (1, 2, 2, LEAVE),  # the count did not grow (unwritable, or reset): not again here
        (1, 1, 1, GIVEN_UP),
        (3, 1, 5, RETRY),
    ],
)
def test_after_failure(attempts, tries, max_attempts, expected):
    assert after_failure(attempts, tries, max_attempts) == expected


@pytest.mark.parametrize(
    ("generated", "failed", "retry", "expected"),
    [
        ([], [], [], set()),
        (["a"], ["b"], [], {"a", "b"}),
        (["a"], ["b"], ["b"], {"a"}),  # failed with attempts left: looked at again
        ([], ["b", "b"], ["b"], set()),
    ],
)
def test_handled(generated, failed, retry, expected):
    assert handled(generated, failed, retry) == expected


# -- which songs are left, and whether to wait for them -------------------------------------

JOBS = [Job(n, f"p{n}", 1.0, f"{name}.wav") for n, name in enumerate("abcd", 1)]


@pytest.mark.parametrize(
    ("retry", "elsewhere", "todo", "wait"),
    [
        ([], [], [], False),  # every song done: the run is over
        (["b.wav"], [], ["b.wav"], False),
        ([], ["c.wav", "a.wav"], ["a.wav", "c.wav"], True),  # in batch order
        (["d.wav"], ["a.wav"], ["a.wav", "d.wav"], False),  # retries first, held ones alongside
        ([], ["x.wav"], [], True),  # not in the batch: nothing to look at
    ],
)
def test_next_round(retry, elsewhere, todo, wait):
    following = next_round(JOBS, retry, elsewhere)
    assert [job.file_name for job in following.todo] == todo
    assert following.wait is wait


@pytest.mark.parametrize(
    ("first_seen", "seen", "held", "alive"),
    [
        ({}, {}, ["a.wav"], {}),  # not read yet
        ({"a.wav": "v1"}, {"a.wav": ("host-2", "v1")}, ["a.wav"], {}),  # not renewed since the wait began
        ({"a.wav": "v1"}, {"a.wav": ("host-2", "v2")}, ["a.wav"], {"a.wav": "host-2"}),  # renewed: alive
        ({"a.wav": "v1"}, {"a.wav": ("host-3", "v9")}, ["a.wav"], {"a.wav": "host-3"}),  # taken over: alive
        (
            {"a.wav": "v1", "b.wav": "w1"}, {"a.wav": ("h2", "v2"), "b.wav": ("h3", "w1")}, ["a.wav", "b.wav"],
            {"a.wav": "h2"},  # b's holder has not shown it is alive yet: keep waiting for it
        ),
        ({"a.wav": "v1"}, {"a.wav": ("h2", "v2")}, [], {}),  # no longer held: stored, or claimed here
    ],
)
def test_which_holders_have_shown_they_are_alive(first_seen, seen, held, alive):
    assert renewed(first_seen, seen, held) == alive


# -- is this checkpoint still valid for this job --------------------------------------------

PLANS = [WindowPlan(0, 5), WindowPlan(2, 3), WindowPlan(2, 3)]  # 5 + 3 + 3 frames
IDENTITY = Identity("hash", 4.0, "model", 5, 3)


def checkpoint(identity=IDENTITY, next_window=1, codes=None) -> Checkpoint:
    codes = np.zeros((2, 5), dtype=np.int64) if codes is None else codes
    return Checkpoint(identity, seed=1, next_window=next_window, generation_time_s=1.0, codes=codes)


@pytest.mark.parametrize(
    ("saved", "codebook_size", "expected"),
    [
        (checkpoint(), 8, None),
        (checkpoint(next_window=2, codes=np.full((2, 8), 7)), 8, None),
        (checkpoint(next_window=0, codes=np.zeros((2, 0), dtype=np.int64)), 8, None),
        (checkpoint(next_window=3, codes=np.zeros((2, 11), dtype=np.int64)), 8, None),  # only the decode left
        (checkpoint(), None, None),  # an engine that does not say its codebook size
        (checkpoint(Identity("other", 4.0, "model", 5, 3)), 8, "prompt_hash was 'other', now 'hash'"),
        (checkpoint(Identity("hash", 4.0, "small", 5, 3)), 8, "model was 'small', now 'model'"),
        (checkpoint(Identity("hash", 4.0, "model", 6, 3)), 8, "window_frames was 6, now 5"),
        (checkpoint(next_window=4, codes=np.zeros((2, 11), dtype=np.int64)), 8,
         "its codes do not fit the song's windows"),
        (checkpoint(next_window=2), 8, "its codes do not fit the song's windows"),
        (checkpoint(codes=np.zeros((3, 5), dtype=np.int64)), 8, "its codes do not fit the song's windows"),
        (checkpoint(codes=np.full((2, 5), 8)), 8, "its codes are out of range for the model"),
        (checkpoint(codes=np.full((2, 5), -1)), None, "its codes are out of range for the model"),
    ],
)
def test_checkpoint_problem(saved, codebook_size, expected):
    assert checkpoint_problem(saved, IDENTITY, PLANS, 2, codebook_size) == expected


# -- the spool and the stored song's description --------------------------------------------


@pytest.mark.parametrize(
    ("made_for", "here", "expected"),
    [
        (("s3://b/run", "m"), ("s3://b/run", "m"), None),
        (
            ("s3://b/other", "m"), ("s3://b/run", "m"),
            "it was made for s3://b/other with the model m, not for this run's s3://b/run with m",
        ),
        (
            ("/out", "small"), ("/out", "large"),
            "it was made for /out with the model small, not for this run's /out with large",
        ),
    ],
)
def test_spool_mismatch(made_for, here, expected):
    assert spool_mismatch(made_for, here) == expected


def record(prompt: str = "calm piano", duration_s: float = 2.0) -> SongRecord:
    return SongRecord(
        s3_filename="s3://b/calm.wav", prompt=prompt, requested_duration_s=duration_s,
        generation_time_s=1.0, estimated_cost_usd=0.0, file_name="calm.wav", seed=7, model="m",
        batch_size=1, windows=1, started_at="t0", finished_at="t1", worker="w",
    )


def test_song_metadata_tells_a_later_run_what_the_song_was_made_from():
    job = Job(1, "calm piano", 2.5, "calm.wav")
    assert song_metadata(job, record()) == {
        "prompt-hash": prompt_hash("calm piano"), "seed": "7", "model": "m", "duration-s": "2.5",
    }
    # With the file's header, also what its size must be (contract/songs.py).
    assert song_metadata(job, record(), Header(80000, 32000, 2))["sample-rate"] == "32000"
    assert song_metadata(job, record(), Header(80000, 32000, 2))["channels"] == "2"
    assert "sample-rate" not in song_metadata(job, record(), "Format not recognised")


def never() -> SongRecord:
    raise AssertionError("the record was read although the metadata tells")


@pytest.mark.parametrize(
    ("metadata", "read", "expected"),
    [
        ({"prompt-hash": "h", "duration-s": "3"}, never, ("h", "3")),
        ({"prompt-hash": "h"}, never, ("h", None)),
        ({}, lambda: None, None),  # neither tells
        ({"seed": "1"}, lambda: record("rain", 4.0), (prompt_hash("rain"), "4")),
    ],
)
def test_stored_description(metadata, read, expected):
    assert stored_description(metadata, read) == expected
