"""The worker's songs as files: mastering options, FLAC keys and skips, tags, non-finite audio."""

import io

import boto3
import numpy as np
import pyloudnorm
import pytest
import soundfile

from worker.cli import main
from worker.output.report import parse_report

WINDOW = ["--window-s", "4", "--stride-s", "2.5", "--batch-size", "2", "--seed", "7"]


class NanEngine:
    """The real engine, whose decoder output gets a NaN for songs of `num_samples` samples."""

    def __init__(self, inner, num_samples):
        self.inner = inner
        self.num_samples = num_samples

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def with_params(self, params):
        return NanEngine(self.inner.with_params(params), self.num_samples)

    def decode(self, codes, num_samples):
        audio = self.inner.decode(codes, num_samples)
        if num_samples == self.num_samples:
            audio[num_samples // 2] = np.nan
        return audio


def run(tmp_path, lines, *extra, load_engine=None):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text(lines)
    out = tmp_path / "out"
    argv = ["--prompts", str(prompts), "--output", str(out), *WINDOW, *extra]
    return main(argv, load_engine=load_engine), out


def test_a_nan_in_the_decoder_output_fails_that_song_alone(
    tiny_model_dir, loaded_tiny_engine, tmp_path, capsys
):
    code, out = run(
        tmp_path, "calm piano;3;calm\nbroken drums;2.5;broken\n", "--model", str(tiny_model_dir),
        load_engine=lambda model: NanEngine(loaded_tiny_engine, 20_000),
    )
    err = capsys.readouterr().err
    # Tried again after the other songs, then given up after --max-attempts (2) failures: the
    # song is done, and listed (exit 0; see the exit codes in docs/worker.md).
    assert code == 0
    assert (
        "failed broken.wav (line 2): ValueError: the decoded audio has 1 non-finite samples (NaN or inf)"
        in err
    )
    assert "given up: broken.wav failed 2 times, last: ValueError: the decoded audio has 1 non-finite" in err
    assert sorted(p.name for p in out.glob("*.wav")) == ["calm.wav"]
    assert [r["s3_filename"] for r in parse_report((out / "cost_report.csv").read_bytes())] == ["calm.wav"]
    assert not list(out.glob(".leases/*"))


def test_songs_are_normalised_faded_and_logged(tiny_model_dir, tmp_path, capsys):
    code, out = run(tmp_path, "calm piano;4;calm\n", "--model", str(tiny_model_dir),
                    "--loudness-lufs", "-20", "--fade-out-s", "1")
    err = capsys.readouterr().err
    assert code == 0, err
    samples, rate = soundfile.read(out / "calm.wav")
    assert samples.shape == (4 * 8000,)
    assert abs(pyloudnorm.Meter(rate).integrated_loudness(samples) - -20) <= 0.5
    assert np.abs(samples).max() <= 10 ** (-1 / 20)
    assert np.abs(samples[-80:]).max() < 0.05  # the last 10 ms of a 1 s fade
    line = next(line for line in err.splitlines() if "level calm.wav:" in line)
    assert "LUFS measured, gain " in line and "samples limited, 0 samples clipped" in line


def test_loudness_off_and_no_fade_write_the_raw_decoder_output(tiny_engine, tmp_path, capsys):
    engine = tiny_engine
    decoded = []
    original = engine.decode

    def keep(codes, num_samples):
        decoded.append(original(codes, num_samples))
        return decoded[-1]

    engine.decode = keep
    code, out = run(tmp_path, "calm piano;2;calm\n", "--loudness-lufs", "off", "--fade-out-s", "0",
                    load_engine=lambda model: engine)
    assert code == 0
    today = io.BytesIO()
    soundfile.write(today, np.clip(decoded[0], -1, 1), 8000, subtype="PCM_16", format="WAV")
    today.seek(0)
    np.testing.assert_array_equal(
        soundfile.read(out / "calm.wav", dtype="int16")[0], soundfile.read(today, dtype="int16")[0]
    )
    assert "level calm.wav: " in capsys.readouterr().err


def test_flac_keys_report_skip_and_the_same_samples_as_wav(
    aws_env, tiny_model_dir, loaded_tiny_engine, tmp_path, capsys
):
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket="songs")
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("calm piano; rain;3;calm\n")
    base = ["--prompts", str(prompts), "--model", str(tiny_model_dir), *WINDOW]
    def loaded(model):
        return loaded_tiny_engine

    assert main([*base, "--output", "s3://songs/flac", "--format", "flac"], load_engine=loaded) == 0
    assert main([*base, "--output", "s3://songs/wav"], load_engine=loaded) == 0
    capsys.readouterr()
    keys = sorted(o["Key"] for o in s3.list_objects_v2(Bucket="songs")["Contents"])
    assert "flac/calm.flac" in keys and "wav/calm.wav" in keys
    assert not any(k.startswith("flac/") and k.endswith(".wav") for k in keys)
    head = s3.head_object(Bucket="songs", Key="flac/calm.flac")
    assert head["ContentType"] == "audio/flac"
    report = s3.get_object(Bucket="songs", Key="flac/cost_report.csv")["Body"].read()
    assert [r["s3_filename"] for r in parse_report(report)] == ["flac/calm.flac"]

    def body(key):
        return io.BytesIO(s3.get_object(Bucket="songs", Key=key)["Body"].read())

    info = soundfile.info(body("flac/calm.flac"))
    assert (info.format, info.frames) == ("FLAC", 3 * 8000)
    np.testing.assert_array_equal(
        soundfile.read(body("flac/calm.flac"), dtype="int16")[0],
        soundfile.read(body("wav/calm.wav"), dtype="int16")[0],
    )
    for data in (body("flac/calm.flac"), body("wav/calm.wav")):
        with soundfile.SoundFile(data) as f:
            assert f.title == "calm"
            assert f.comment.startswith("seed=")
            assert f"model={tiny_model_dir}; duration_s=3; window_s=4; stride_s=2.5; top_k=250;" in f.comment
            assert f.comment.endswith("; prompt: calm piano; rain")

    def never(model):
        raise AssertionError("model loaded")

    assert main([*base, "--output", "s3://songs/flac", "--format", "flac"], load_engine=never) == 0
    assert "skipped calm.flac: already at s3://songs/flac/calm.flac" in capsys.readouterr().err


def test_a_wav_name_with_format_flac_is_an_error_on_its_line(tmp_path, capsys):
    prompts = tmp_path / "p.txt"
    prompts.write_text("a song;10;a\nb song;10;b.wav\n")
    assert main(["--prompts", str(prompts), "--check", "--format", "flac"]) == 2
    out, err = capsys.readouterr()
    assert out == "line 1: a.flac 10 s: a song\n1 songs, 1 errors\n"
    assert err == f"{prompts} line 2: file name 'b.wav' ends in .wav, but the format is flac\n"


@pytest.mark.parametrize(
    ("argv", "env", "message"),
    [
        (["--loudness-lufs", "loud"], {}, "error: --loudness-lufs/MUSICGEN_LOUDNESS_LUFS='loud' is not a valid float"),
        (["--loudness-lufs", "nan"], {}, "error: --loudness-lufs/MUSICGEN_LOUDNESS_LUFS='nan': must be a finite number"),
        (["--loudness-lufs=-inf"], {}, "error: --loudness-lufs/MUSICGEN_LOUDNESS_LUFS='-inf': must be a finite number"),
        ([], {"MUSICGEN_LOUDNESS_LUFS": "14"}, "error: --loudness-lufs/MUSICGEN_LOUDNESS_LUFS='14': must be between -50 and -5 LUFS, or off"),
        (["--fade-out-s", "-1"], {}, "error: --fade-out-s/MUSICGEN_FADE_OUT_S='-1': must be between 0 and 60 seconds"),
        ([], {"MUSICGEN_FADE_OUT_S": "inf"}, "error: --fade-out-s/MUSICGEN_FADE_OUT_S='inf': must be a finite number"),
        (["--fade-out-s", "nan"], {}, "error: --fade-out-s/MUSICGEN_FADE_OUT_S='nan': must be a finite number"),
        (["--format", "mp3"], {}, "error: --format/MUSICGEN_FORMAT='mp3': must be one of wav, flac"),
        ([], {"MUSICGEN_FORMAT": "ogg"}, "error: --format/MUSICGEN_FORMAT='ogg': must be one of wav, flac"),
    ],
)
def test_bad_audio_options_exit_2_with_one_line(refused, argv, env, message):
    assert refused(argv, env) == message + "\n"


@pytest.mark.parametrize(
    ("argv", "env", "expected"),
    [
        ([], {}, "a.wav"),
        (["--format", "FLAC", "--loudness-lufs", "OFF", "--fade-out-s", "0"], {}, "a.flac"),
        ([], {"MUSICGEN_FORMAT": "flac", "MUSICGEN_LOUDNESS_LUFS": "-23", "MUSICGEN_FADE_OUT_S": "10"}, "a.flac"),
    ],
)
def test_audio_options_from_flags_and_environment(tmp_path, capsys, monkeypatch, argv, env, expected):
    prompts = tmp_path / "p.txt"
    prompts.write_text("a;1;a\n")
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert main(["--prompts", str(prompts), "--check", *argv]) == 0
    assert f"line 1: {expected} 1 s: a" in capsys.readouterr().out
