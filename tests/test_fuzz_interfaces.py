"""Hypothesis over the whole command line and environment, and over hand-edited bookkeeping.

The worker runs in this process with FakeEngine behind a loader that records whether it was
called, so "exit 2 happens before the model loads" is checked on every example at the cost of
a function call; test_worker_faults.py runs a few of the same inputs as real processes.
"""

from __future__ import annotations

import io
import json
import os
import time
from pathlib import Path

import boto3
import pytest
import soundfile
import torch
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from tests.engines import FakeEngine
from tests.support.examples import examples
from tests.support.launcher import CALM_MARKET, GIT, Launcher
from worker.cli import main
from worker.output.report import parse_report


def fuzz(count: int) -> settings:
    # Few examples each: every one runs the worker or the launcher, on busy CPUs.
    return settings(
        max_examples=examples(count),
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )

WORKER_OPTIONS = [
    ("--prompts", "MUSICGEN_PROMPTS"),
    ("--output", "MUSICGEN_OUTPUT"),
    ("--model", "MUSICGEN_MODEL"),
    ("--hourly-cost", "HOURLY_COST_USD"),
    ("--batch-size", "MUSICGEN_BATCH_SIZE"),
    ("--window-s", "MUSICGEN_WINDOW_S"),
    ("--stride-s", "MUSICGEN_STRIDE_S"),
    ("--top-k", "MUSICGEN_TOP_K"),
    ("--temperature", "MUSICGEN_TEMPERATURE"),
    ("--guidance-scale", "MUSICGEN_GUIDANCE_SCALE"),
    ("--seed", "MUSICGEN_SEED"),
    ("--worker-id", "MUSICGEN_WORKER_ID"),
    ("--lease-s", "MUSICGEN_LEASE_S"),
    ("--spool-dir", "MUSICGEN_SPOOL_DIR"),
    ("--imds-endpoint", "MUSICGEN_IMDS_ENDPOINT"),
    ("--imds-poll-s", "MUSICGEN_IMDS_POLL_S"),
    ("--max-attempts", "MUSICGEN_MAX_ATTEMPTS"),
    ("--max-hours", "MUSICGEN_MAX_HOURS"),
    ("--dtype", "MUSICGEN_DTYPE"),
    ("--gpu-count", "MUSICGEN_GPU_COUNT"),
    ("--threads", "MUSICGEN_THREADS"),
    ("--loudness-lufs", "MUSICGEN_LOUDNESS_LUFS"),
    ("--fade-out-s", "MUSICGEN_FADE_OUT_S"),
    ("--format", "MUSICGEN_FORMAT"),
    ("--access-wait-s", "MUSICGEN_ACCESS_WAIT_S"),
]
SPECIAL = [
    "nan", "inf", "-inf", "1e308", "1e12", "-1", "0", "", " ", "1", "3", "0.5", "２", "ü", "10" * 30,
    "１０", "٥", "1_0", "0x10", "9" * 5000, "x" * 300, "FLAC", "Float32", "off", "OFF",
]
# Longest error line a refusal may print: its text and at most two values, each quoted cut.
MAX_ERROR_LINE = 1000
# Places, relative to the example's own folder: files, folders, missing and impossible ones.
PLACES = [
    "prompts.txt", "a-folder", "a-file", "a-file/below", "missing/deeper", "out", "out/inner",
    "~/x", "s3://fuzz-bucket/run", "S3://fuzz-bucket", "s3://no-such-bucket", "s3://", "s3://Bad Name",
    "http://127.0.0.1:9", "not a url",
]
text = st.text(st.characters(blacklist_categories=["Cs"], blacklist_characters="\x00"), max_size=12)
numbers = st.one_of(
    st.integers(-(10**20), 10**20).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
)
values = st.one_of(st.sampled_from(SPECIAL), st.sampled_from(PLACES), numbers, text)
settings_drawn = st.lists(st.tuples(st.sampled_from(WORKER_OPTIONS), values, st.booleans()), max_size=5)


class Loader:
    def __init__(self):
        self.loaded = False

    def __call__(self, model):
        self.loaded = True
        return FakeEngine()


@pytest.fixture
def fuzz_home(aws_env, tmp_path, monkeypatch):
    boto3.client("s3").create_bucket(Bucket="fuzz-bucket")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    return tmp_path


def _example_folder(base: Path) -> Path:
    folder = base / f"ex{time.monotonic_ns()}"
    (folder / "a-folder").mkdir(parents=True)
    (folder / "a-file").write_text("x")
    (folder / "prompts.txt").write_text("calm piano;1;calm\n")
    return folder


@fuzz(150)
@given(drawn=settings_drawn, check=st.booleans(), omp=st.one_of(st.none(), values))
def test_any_worker_command_line_and_environment_exits_cleanly(fuzz_home, capsys, drawn, check, omp):
    folder = _example_folder(fuzz_home)
    os.chdir(folder)
    argv = ["--prompts", "prompts.txt", "--output", "out", "--spool-dir", "spool"] + (["--check"] if check else [])
    env = {} if omp is None else {"OMP_NUM_THREADS": omp}
    for (flag, variable), value, as_env in drawn:
        if as_env:
            env[variable] = value
        else:
            argv += [f"{flag}={value}"]
    saved = {name: os.environ.get(name) for name in env}
    os.environ.update(env)
    loader = Loader()
    before = torch.get_num_threads()
    try:
        code = main(argv, load_engine=loader)
    finally:
        torch.set_num_threads(before)
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        os.chdir(fuzz_home)
    err = capsys.readouterr().err
    event(f"exit {code}")
    assert code in (0, 1, 2, 3, 5), err
    if code == 2:
        assert not loader.loaded, err
        assert "Traceback" not in err, err
    if code == 2:
        # One refusal, the last line, cut short however long the value was.
        refusals = [line for line in err.splitlines() if line.startswith("error: ")]
        assert len(refusals) == 1 and err.splitlines()[-1] == refusals[0], err
        assert len(refusals[0]) <= MAX_ERROR_LINE, err


LAUNCHER_OPTIONS = [
    "--max-price", "--realtime-factor", "--boot-overhead-min", "--price-window-hours", "--worker-count",
    "--bucket", "--prompts", "--instance-type", "--var", "--git-ref", "--max-hours",
]
launcher_values = st.one_of(st.sampled_from(SPECIAL), st.sampled_from(PLACES), numbers, text)


@fuzz(80)
@given(
    command=st.sampled_from([["--dry-run"], ["status"]]),
    drawn=st.lists(st.tuples(st.sampled_from(LAUNCHER_OPTIONS), launcher_values), max_size=4),
)
def test_any_launcher_command_line_exits_cleanly(aws_env, workdir, terraform, source, command, drawn):
    launcher = Launcher(prices=CALM_MARKET)
    argv = [*command, *GIT]
    argv += [f"{option}={value}" for option, value in drawn]
    result = launcher(*argv)
    event(f"exit {result.code}")
    assert result.code in (0, 1, 2), result
    assert "Traceback" not in result.err
    if result.code == 2:
        # One line per refusal: a dry run names every failed check, each on its own line; a
        # check that could not be made (the spot vCPU quota) is a warning line among them.
        lines = result.err.split("\n")[:-1]
        assert any(line.startswith("error: ") for line in lines), result.err
        assert all(line.startswith(("error: ", "warning: ")) for line in lines), result.err


# -- bookkeeping edited by hand ---------------------------------------------------------------

SONGS = {"calm.wav": 1.0, "drums.wav": 2.5, "jazz.wav": 1.5}
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=8,
)
near_miss = st.fixed_dictionaries(
    {"owner": st.one_of(st.text(max_size=8), st.integers()), "expires_at": st.one_of(st.floats(), st.text(max_size=4))}
).map(json.dumps)
contents = st.one_of(
    st.binary(max_size=64),
    json_values.map(lambda v: json.dumps(v, allow_nan=True)),
    near_miss,
    st.just('{"format": 1, "codes_shape": [2, 3], "codes": "AAAA"}'),
).map(lambda v: v if isinstance(v, bytes) else v.encode())
edits = st.dictionaries(
    st.tuples(st.sampled_from([".checkpoints/", ".records/", ".leases/"]), st.sampled_from(sorted(SONGS))),
    contents,
    max_size=6,
)


@fuzz(40)
@given(edits=edits)
def test_hand_edited_bookkeeping_never_stops_a_run(tmp_path_factory, capsys, edits):
    out = tmp_path_factory.mktemp("out")
    for (folder, name), body in edits.items():
        (out / folder).mkdir(exist_ok=True)
        (out / folder / f"{name}.json").write_bytes(body)
    _run_batch(out.parent / f"{out.name}.txt", str(out), capsys)
    _check_batch({name: (out / name).read_bytes() for name in [*SONGS, "cost_report.csv"]})
    assert not (out / ".leases").exists() or not list((out / ".leases").iterdir())


@fuzz(8)
@given(edits=edits)
def test_hand_edited_bookkeeping_in_a_bucket_never_stops_a_run(aws_env, tmp_path_factory, capsys, edits):
    s3 = boto3.client("s3")
    bucket = f"fuzz-{time.monotonic_ns()}"
    s3.create_bucket(Bucket=bucket)
    for (folder, name), body in edits.items():
        s3.put_object(Bucket=bucket, Key=f"run/{folder}{name}.json", Body=body)
    prompts = tmp_path_factory.mktemp("p") / "prompts.txt"
    _run_batch(prompts, f"s3://{bucket}/run", capsys)
    files = {name: s3.get_object(Bucket=bucket, Key=f"run/{name}")["Body"].read() for name in [*SONGS, "cost_report.csv"]}
    _check_batch(files)
    assert "Contents" not in s3.list_objects_v2(Bucket=bucket, Prefix="run/.leases/")


def _run_batch(prompts: Path, output: str, capsys) -> None:
    prompts.write_text("".join(f"song {name};{seconds:g};{name}\n" for name, seconds in SONGS.items()))
    argv = ["--prompts", str(prompts), "--output", output, "--window-s", "1", "--stride-s", "0.5"]
    code = main(argv, load_engine=lambda model: FakeEngine())
    err = capsys.readouterr().err
    assert code == 0, err


def _check_batch(files: dict[str, bytes]) -> None:
    for name, seconds in SONGS.items():
        assert soundfile.info(io.BytesIO(files[name])).frames == round(seconds * 8000)
    rows = parse_report(files["cost_report.csv"])
    assert sorted(row["s3_filename"].removeprefix("run/") for row in rows) == sorted(SONGS)
