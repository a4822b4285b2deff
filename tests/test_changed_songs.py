"""A line whose prompt or duration changed after its song was stored: warned, never overwritten."""

from __future__ import annotations

import io

import boto3
import pytest
import soundfile

from contract.prompts import Job, prompt_hash
from contract.songs import describe_change
from launcher import aws
from tests.engines import FakeEngine
from tests.support.launcher import GIT
from worker.cli import main


def never(model):
    raise AssertionError("the model was loaded")


@pytest.mark.parametrize(
    ("stored_prompt", "stored_duration", "expected"),
    [
        ("calm piano", "2", None),
        ("calm jazz", "2", "the prompt"),
        ("calm piano", "3", "the duration (3 s, now 2 s)"),
        ("calm jazz", "3", "the prompt and the duration (3 s, now 2 s)"),
    ],
)
def test_describe_change(stored_prompt, stored_duration, expected):
    job = Job(1, "calm piano", 2.0, "calm.wav")
    assert describe_change(job, prompt_hash(stored_prompt), stored_duration) == expected


def test_describe_change_without_metadata_says_nothing():
    assert describe_change(Job(1, "p", 2.0, "x.wav"), None, None) is None


@pytest.mark.parametrize("output", ["local", "s3"])
def test_changed_prompt_or_duration_is_warned_and_the_stored_song_kept(aws_env, tmp_path, capsys, output):
    if output == "s3":
        boto3.client("s3").create_bucket(Bucket="songs")
        target = "s3://songs/run"
    else:
        target = str(tmp_path / "out")
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("calm piano;2;calm\nsame;1;same\n")
    assert main(["--prompts", str(prompts), "--output", target], load_engine=lambda m: FakeEngine()) == 0
    capsys.readouterr()

    prompts.write_text("calm piano, rain;3;calm\nsame;1;same\n")
    assert main(["--prompts", str(prompts), "--output", target], load_engine=never) == 0
    err = capsys.readouterr().err
    assert (
        "line 1: calm.wav was generated before the prompt and the duration (2 s, now 3 s) changed; "
        "kept the stored file (rename the song or delete the stored file to generate it again)"
    ) in err
    assert "same.wav was generated before" not in err
    if output == "s3":
        body = boto3.client("s3").get_object(Bucket="songs", Key="run/calm.wav")["Body"].read()
        assert soundfile.info(io.BytesIO(body)).frames == 2 * 8000
    else:
        assert soundfile.info(tmp_path / "out" / "calm.wav").frames == 2 * 8000


def test_launcher_status_lists_songs_changed_since_generated(launcher):
    s3 = aws.s3_client("us-east-1")
    s3.create_bucket(Bucket="songs")
    s3.put_object(
        Bucket="songs", Key="synthwave.wav", Body=b"RIFF",
        Metadata={"prompt-hash": prompt_hash("an older prompt"), "duration-s": "180"},
    )
    result = launcher("status", "--bucket", "songs")
    assert result.code == 0, result.err
    assert (
        "  done:\n"
        "    synthwave.wav\n"
        "  changed since generated (rename the song or delete the stored file to generate it again):\n"
        "    synthwave.wav  (line 2: the prompt)\n"
    ) in result.out
    dry = launcher(*GIT, "--bucket", "songs", "--dry-run")
    assert "    synthwave.wav  (line 2: the prompt)\n" in dry.out
