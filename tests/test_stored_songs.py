"""Songs already in the output: a damaged file is kept aside and made again, a lost or
unreadable record is rebuilt, and the report, the listening page and `launcher status` agree.

The worker runs in-process with FakeEngine (silence of the exact length: what is checked is
which file ends up where), against a local folder and moto's S3 server over HTTP.
"""

from __future__ import annotations

import io
import json

import boto3
import numpy as np
import pytest
import soundfile

from contract import songs
from contract.bucket import record_key
from contract.prompts import Job, prompt_hash
from contract.records import REBUILT_NOTE, SongRecord
from tests.engines import FakeEngine
from worker.cli import main
from worker.output.report import parse_report
from worker.run.inspection import Inspection
from worker.store.s3_store import S3Store

PROMPTS = "calm piano;2;calm\nfast drums;3;drums\n"


def never(model):
    raise AssertionError("the model was loaded")


def fake(model):
    return FakeEngine()


@pytest.fixture
def prompts(tmp_path):
    path = tmp_path / "prompts.txt"
    path.write_text(PROMPTS)
    return path


def run(prompts, output, load=fake, *extra):
    return main(["--prompts", str(prompts), "--output", str(output), *extra], load_engine=load)


def rows(report: bytes) -> dict[str, dict[str, str]]:
    return {row["s3_filename"]: row for row in parse_report(report)}


# -- the rules -----------------------------------------------------------------------------------


def test_flac_floor_is_below_the_smallest_flac_the_encoder_writes(tmp_path):
    """The bound is RFC 9639's smallest stream (CONSTANT subframes in 65535-sample blocks);
    libFLAC's own encoding of pure digital silence, the most compressible song there is, must
    stay above it, mono and stereo, or a real song could be taken for a damaged one."""
    for channels in (1, 2):
        for seconds in (1, 2, 37):
            frames = seconds * 32000
            path = tmp_path / f"silence-{channels}-{seconds}.flac"
            soundfile.write(path, np.zeros((frames, channels)), 32000, subtype="PCM_16")
            assert songs.flac_floor_bytes(frames, channels) < path.stat().st_size


@pytest.mark.parametrize(
    ("name", "size", "metadata", "duration", "problem"),
    [
        ("a.wav", 0, {}, 180, "it is empty (0 bytes)"),
        ("a.wav", 4, {}, 180, None),  # put there by hand: its format is unknown
        ("a.wav", 4, {"sample-rate": "32000", "channels": "1"}, 180,
         "it is 4 bytes, and a 180 s song at 32000 Hz with 1 channel takes at least 11404844"),
        ("a.wav", 44 + 180 * 32000 * 2 + 2000, {"sample-rate": "32000", "channels": "1"}, 180, None),
        ("a.wav", 44 + 360 * 32000 * 2, {"sample-rate": "32000", "channels": "1"}, 180,
         "it is 23040044 bytes, and a 180 s song at 32000 Hz with 1 channel takes at most 11700780"),
        ("a.flac", 16000, {"sample-rate": "32000", "channels": "1"}, 180, None),
        ("a.flac", 500, {"sample-rate": "32000", "channels": "2"}, 180,
         "it is 500 bytes, and a 180 s song at 32000 Hz with 2 channels takes at least 1274"),
    ],
)
def test_size_problem(name, size, metadata, duration, problem):
    assert songs.size_problem(name, size, metadata, duration) == problem


def test_a_stored_song_is_judged_against_the_length_it_was_made_for():
    assert songs.made_for_s({"duration-s": "3"}, 2.0) == 3.0
    assert songs.made_for_s({"duration-s": "nan"}, 2.0) == 2.0
    assert songs.made_for_s({}, 2.0) == 2.0


# -- local output ----------------------------------------------------------------------------


def wav_bytes(seconds: float, rate=8000) -> bytes:
    buffer = io.BytesIO()
    soundfile.write(buffer, np.zeros(int(seconds * rate)), rate, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("content", "why"),
    [
        (b"", "it is empty (0 bytes)"),
        (b"RIFF", "it cannot be decoded"),
        (wav_bytes(2)[: 44 + 8000], "it holds 0.50 s of audio, made for 2 s"),
        (wav_bytes(5), "it holds 5.00 s of audio, made for 2 s"),
    ],
)
def test_a_damaged_local_song_is_moved_aside_and_made_again(tmp_path, prompts, capsys, content, why):
    out = tmp_path / "out"
    assert run(prompts, out) == 0
    (out / "calm.wav").write_bytes(content)
    capsys.readouterr()

    assert run(prompts, out) == 0
    err = capsys.readouterr().err
    assert f"calm.wav (line 1) in the output is damaged: {why}" in err
    kept = list((out / ".damaged").iterdir())
    assert len(kept) == 1 and kept[0].name.startswith("calm.wav.") and kept[0].read_bytes() == content
    assert soundfile.info(out / "calm.wav").frames == 2 * 8000
    report = rows((out / "cost_report.csv").read_bytes())
    assert report["calm.wav"]["generation_time_s"] != ""  # a fresh record, not a rebuilt one


def test_a_truncated_local_flac_is_damaged_although_its_header_gives_the_full_length(tmp_path, capsys):
    """A FLAC's STREAMINFO (its first bytes) keeps the full length when the end is cut off;
    libsndfile then fails to seek to the last samples."""
    prompts = tmp_path / "p.txt"
    prompts.write_text("noise;2;noise\n")
    out = tmp_path / "out"
    out.mkdir()
    noise = np.random.default_rng(1).uniform(-0.5, 0.5, 2 * 8000)
    soundfile.write(out / "noise.flac", noise, 8000, subtype="PCM_16")
    whole = (out / "noise.flac").read_bytes()
    (out / "noise.flac").write_bytes(whole[: len(whole) // 2])
    assert soundfile.info(out / "noise.flac").frames == 2 * 8000
    assert run(prompts, out, fake, "--format", "flac") == 0
    assert "noise.flac (line 1) in the output is damaged: it is truncated" in capsys.readouterr().err
    assert soundfile.read(out / "noise.flac")[0].shape == (2 * 8000,)


def test_an_unreadable_record_is_rebuilt_and_report_page_agree(tmp_path, prompts, capsys):
    out = tmp_path / "out"
    assert run(prompts, out) == 0
    (out / record_key("calm.wav")).write_text("{garbage")
    capsys.readouterr()

    assert run(prompts, out, never) == 0  # the song is whole: nothing is generated
    err = capsys.readouterr().err
    assert "rebuilt the record of calm.wav (line 1) from the stored file: its record is unreadable" in err
    record = SongRecord.from_json((out / record_key("calm.wav")).read_bytes())
    assert (record.prompt, record.requested_duration_s, record.generation_time_s) == ("calm piano", 2.0, None)
    assert record.rebuilt_at is not None
    report = rows((out / "cost_report.csv").read_bytes())
    assert report["calm.wav"]["prompt"] == "calm piano"
    assert (report["calm.wav"]["generation_time_s"], report["calm.wav"]["estimated_cost_usd"]) == ("", "")
    page = (out / "index.html").read_text()
    assert "not generated yet" not in page and REBUILT_NOTE in page and page.count("<audio") == 2

    assert run(prompts, out, never) == 0  # rebuilt once: a rerun keeps it
    assert "rebuilt the record" not in capsys.readouterr().err


def test_a_song_without_any_record_gets_one(tmp_path, prompts, capsys):
    out = tmp_path / "out"
    assert run(prompts, out) == 0
    (out / record_key("drums.wav")).unlink()
    assert run(prompts, out, never) == 0
    assert "rebuilt the record of drums.wav (line 2) from the stored file: it has none" in capsys.readouterr().err
    assert rows((out / "cost_report.csv").read_bytes())["drums.wav"]["estimated_cost_usd"] == ""


def test_a_remade_song_that_fails_is_not_listed_as_ready(tmp_path, prompts, capsys):
    """Its record is replaced by a marker naming the file kept aside: the page shows the song
    as failed, not with a player for a file that is not there."""
    out = tmp_path / "out"
    assert run(prompts, out) == 0
    (out / "calm.wav").write_bytes(b"")

    class Failing(FakeEngine):
        def generate(self, rows, on_step=None):
            raise RuntimeError("out of memory")

    assert run(prompts, out, lambda model: Failing()) == 0  # given up after two attempts
    assert "calm.wav" not in rows((out / "cost_report.csv").read_bytes())
    page = (out / "index.html").read_text()
    assert page.count("<audio") == 1 and "RuntimeError: out of memory" in page
    assert json.loads((out / record_key("calm.wav")).read_bytes())["set_aside"].startswith(str(out / ".damaged"))


# -- S3 ----------------------------------------------------------------------------------------


@pytest.fixture
def bucket(aws_env):
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket="songs")
    return s3


def test_a_damaged_s3_song_is_copied_aside_and_replaced(bucket, prompts, capsys):
    assert run(prompts, "s3://songs/run") == 0
    whole = bucket.get_object(Bucket="songs", Key="run/drums.wav")["Body"].read()
    bucket.put_object(Bucket="songs", Key="run/calm.wav", Body=b"")
    capsys.readouterr()

    assert run(prompts, "s3://songs/run") == 0
    err = capsys.readouterr().err
    assert "calm.wav (line 1) in the output is damaged: it is empty (0 bytes); kept it as s3://songs/run/.damaged/calm.wav." in err
    listed = bucket.list_objects_v2(Bucket="songs", Prefix="run/.damaged/")["Contents"]
    assert [item["Size"] for item in listed] == [0]
    body = bucket.get_object(Bucket="songs", Key="run/calm.wav")["Body"].read()
    assert soundfile.info(io.BytesIO(body)).frames == 2 * 8000
    assert bucket.get_object(Bucket="songs", Key="run/drums.wav")["Body"].read() == whole
    head = bucket.head_object(Bucket="songs", Key="run/calm.wav")
    assert head["Metadata"]["sample-rate"] == "8000" and head["Metadata"]["channels"] == "1"


def test_a_short_s3_song_is_damaged_by_its_size(bucket, prompts, capsys):
    assert run(prompts, "s3://songs") == 0
    head = bucket.head_object(Bucket="songs", Key="drums.wav")
    half = bucket.get_object(Bucket="songs", Key="drums.wav")["Body"].read()[: head["ContentLength"] // 2]
    bucket.put_object(Bucket="songs", Key="drums.wav", Body=half, Metadata=head["Metadata"])
    capsys.readouterr()
    assert run(prompts, "s3://songs") == 0
    expected = f"drums.wav (line 2) in the output is damaged: it is {len(half)} bytes, and a 3 s song at 8000 Hz"
    assert expected in capsys.readouterr().err
    body = bucket.get_object(Bucket="songs", Key="drums.wav")["Body"].read()
    assert soundfile.info(io.BytesIO(body)).frames == 3 * 8000


def test_the_remade_song_replaces_only_the_damaged_object(bucket, tmp_path):
    """The upload carries If-Match with the damaged object's ETag: when another worker stored
    a whole song there meanwhile, that song stays (S3 answers 412)."""
    bucket.put_object(Bucket="songs", Key="calm.wav", Body=b"")
    store = S3Store(boto3.client("s3"), "songs")
    job = Job(1, "calm piano", 2.0, "calm.wav")
    assert Inspection(store).whole(job) is None  # damaged: set aside
    assert not store.exists("calm.wav")
    theirs = wav_bytes(2)
    bucket.put_object(Bucket="songs", Key="calm.wav", Body=theirs)
    ours = tmp_path / "calm.wav"
    ours.write_bytes(wav_bytes(2, rate=16000))
    assert store.exists("calm.wav")
    assert not store.upload_new(ours, "calm.wav", {})
    assert bucket.get_object(Bucket="songs", Key="calm.wav")["Body"].read() == theirs


def test_a_long_remade_song_replaces_the_damaged_object_in_parts(bucket, tmp_path, monkeypatch):
    """Songs over the multipart threshold carry If-Match on CompleteMultipartUpload (moto
    does not check that condition there; real S3 does, see docs/faults-and-validation.md)."""
    from worker.store import s3_store

    monkeypatch.setattr(s3_store, "MULTIPART_THRESHOLD", 4)
    bucket.put_object(Bucket="songs", Key="calm.wav", Body=b"")
    store = S3Store(boto3.client("s3"), "songs")
    assert Inspection(store).whole(Job(1, "calm piano", 2.0, "calm.wav")) is None
    ours = tmp_path / "calm.wav"
    ours.write_bytes(wav_bytes(2))
    assert store.upload_new(ours, "calm.wav", {})
    assert bucket.get_object(Bucket="songs", Key="calm.wav")["Body"].read() == ours.read_bytes()
    assert store.exists("calm.wav")


def test_a_damaged_song_is_copied_aside_once(bucket):
    bucket.put_object(Bucket="songs", Key="calm.wav", Body=b"")
    job = Job(1, "calm piano", 2.0, "calm.wav")
    for _run in range(2):  # two runs that both stop before remaking it
        assert Inspection(S3Store(boto3.client("s3"), "songs")).whole(job) is None
    assert len(bucket.list_objects_v2(Bucket="songs", Prefix=".damaged/")["Contents"]) == 1


def test_an_unreadable_s3_record_is_rebuilt_from_the_object_metadata(bucket, prompts, capsys):
    assert run(prompts, "s3://songs") == 0
    seed = bucket.head_object(Bucket="songs", Key="calm.wav")["Metadata"]["seed"]
    bucket.put_object(Bucket="songs", Key=record_key("calm.wav"), Body=b"{garbage")
    assert run(prompts, "s3://songs", never) == 0
    record = SongRecord.from_json(bucket.get_object(Bucket="songs", Key=record_key("calm.wav"))["Body"].read())
    assert (record.seed, record.model, record.estimated_cost_usd) == (int(seed), "facebook/musicgen-small", None)
    report = bucket.get_object(Bucket="songs", Key="cost_report.csv")["Body"].read()
    assert rows(report)["calm.wav"]["estimated_cost_usd"] == ""


def test_a_rebuilt_record_does_not_claim_a_prompt_the_song_was_not_made_from(bucket, prompts, capsys):
    assert run(prompts, "s3://songs") == 0
    bucket.put_object(Bucket="songs", Key=record_key("calm.wav"), Body=b"{garbage")
    prompts.write_text(PROMPTS.replace("calm piano", "calm jazz"))
    assert run(prompts, "s3://songs", never) == 0
    assert "line 1: calm.wav was generated before the prompt changed" in capsys.readouterr().err
    report = bucket.get_object(Bucket="songs", Key="cost_report.csv")["Body"].read()
    assert rows(report)["calm.wav"]["prompt"] == ""
    assert "calm jazz" not in bucket.get_object(Bucket="songs", Key="index.html")["Body"].read().decode()


# -- launcher status ----------------------------------------------------------------------------


def test_launcher_status_agrees_with_the_worker_on_damaged_files_and_rebuilt_records(launcher, tmp_path):
    """The launcher's prompts file (tests/support/launcher.py) asks for synthwave.wav (180 s)
    and lofi_rain.wav (240 s)."""
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket="songs")
    metadata = {"prompt-hash": prompt_hash("upbeat synthwave with driving bass"), "duration-s": "180",
                "sample-rate": "32000", "channels": "1"}
    s3.put_object(Bucket="songs", Key="synthwave.wav", Body=b"\0" * (44 + 180 * 32000 * 2), Metadata=metadata)
    s3.put_object(Bucket="songs", Key="lofi_rain.wav", Body=b"")
    report = (
        "s3_filename,prompt,requested_duration_s,generation_time_s,estimated_cost_usd\n"
        "synthwave.wav,upbeat synthwave with driving bass,180,,\n"
    )
    s3.put_object(Bucket="songs", Key="cost_report.csv", Body=report.encode())

    result = launcher("status", "--bucket", "songs")
    assert result.code == 0, result.err
    assert (
        "Songs in s3://songs/: 1 of 2 done, 1 missing\n"
        "  done:\n"
        f"    synthwave.wav  ({REBUILT_NOTE})\n"
        "  missing:\n"
        "    lofi_rain.wav  (line 3, 240 s; stored file damaged: it is empty (0 bytes); made again,"
        " the damaged file kept in .damaged/)\n"
        "cost_report.csv: 1 song, total estimated cost $0.00 (1 song of unknown cost not included:"
        " records rebuilt)\n"
    ) in result.out
