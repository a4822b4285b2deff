"""Settings and states that used to lose songs, give wrong results or end in a traceback.

Most tests run the worker's main() with FakeEngine (no model: bookkeeping is what they check)
against a local folder or the moto server.
"""

from __future__ import annotations

import io
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import boto3
import numpy as np
import pytest
import soundfile

from contract.bucket import checkpoint_key, lease_key, record_key
from contract.records import Checkpoint, Identity, SongRecord
from tests.engines import FakeEngine
from worker.cli import main, parse_options, settings_from
from worker.output.report import parse_report
from worker.store.identity import default_worker_id, earlier_self, process_start
from worker.store.leases import Leases
from worker.store.store import LocalStore

ROOT = Path(__file__).resolve().parent.parent


def never(model):
    raise AssertionError("the model was loaded")


def fake(model):
    return FakeEngine()


@pytest.fixture
def prompts(tmp_path):
    path = tmp_path / "prompts.txt"
    path.write_text("calm piano;2;calm\nfast drums;3;drums\n")
    return path


def wav_frames(path):
    return soundfile.info(path).frames


# -- 1: the spool and the output ------------------------------------------------------------


@pytest.mark.parametrize(
    ("output", "spool"),
    [("same", "same"), ("out", "out/.spool"), ("spool/out", "spool")],
)
def test_spool_and_output_that_overlap_are_refused_before_the_model_loads(
    tmp_path, prompts, capsys, output, spool
):
    argv = ["--prompts", str(prompts), "--output", str(tmp_path / output), "--spool-dir", str(tmp_path / spool)]
    assert main(argv, load_engine=never) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: the spool ") and "overlap" in err and "Traceback" not in err


def test_output_named_like_the_default_spool_is_refused(tmp_path, prompts, capsys, monkeypatch):
    monkeypatch.delenv("MUSICGEN_SPOOL_DIR")
    monkeypatch.chdir(tmp_path)
    assert main(["--prompts", str(prompts), "--output", ".spool"], load_engine=never) == 2
    assert "overlap" in capsys.readouterr().err


# -- 2: a spooled song belongs to one output and model -------------------------------------


def test_spooled_song_is_uploaded_only_to_the_output_it_was_made_for(tmp_path, prompts, capsys, monkeypatch):
    spool = tmp_path / "spool"
    first, second = tmp_path / "a", tmp_path / "b"
    common = ["--prompts", str(prompts), "--spool-dir", str(spool)]
    real_upload = LocalStore.upload_new

    def failing_upload(self, path, key, metadata):
        raise OSError("disk unplugged")

    monkeypatch.setattr(LocalStore, "upload_new", failing_upload)
    assert main([*common, "--output", str(first)], load_engine=fake) == 1
    monkeypatch.setattr(LocalStore, "upload_new", real_upload)
    assert sorted(p.name for p in spool.iterdir()) == [
        "calm.wav", "calm.wav.record.json", "drums.wav", "drums.wav.record.json",
    ]
    capsys.readouterr()

    # Another output: the spooled songs are listed and left alone, and their names are not
    # generated again into the spool over them.
    assert main([*common, "--output", str(second)], load_engine=fake) == 1
    err = capsys.readouterr().err
    assert f"left {spool / 'calm.wav'} in the spool: it was made for {first.resolve()}" in err
    assert "failed calm.wav (line 1): the spool holds" in err
    assert not (second / "calm.wav").exists() and not (second / ".records").exists()
    assert len(list(spool.iterdir())) == 4

    # The same output with another model: also left alone.
    assert main([*common, "--output", str(first), "--model", "org/other-model"], load_engine=fake) == 1
    assert not (first / "calm.wav").exists()

    # Its own output and model: uploaded, never generated again.
    assert main([*common, "--output", str(first)], load_engine=never) == 0
    assert wav_frames(first / "calm.wav") == 2 * 8000 and wav_frames(first / "drums.wav") == 3 * 8000
    rows = parse_report((first / "cost_report.csv").read_bytes())
    assert [r["s3_filename"] for r in rows] == ["calm.wav", "drums.wav"]
    assert list(spool.iterdir()) == []


# -- 3: worker identity and who writes the record -------------------------------------------


def test_default_worker_id_is_unique_per_process():
    here = default_worker_id()
    host, pid, start = here.rsplit(":", 2)
    assert host == socket.gethostname() and int(pid) == os.getpid()
    assert abs(float(start) - process_start(os.getpid())) < 2
    child = subprocess.run(
        [sys.executable, "-c", "from worker.store.identity import default_worker_id; print(default_worker_id())"],
        cwd=ROOT, capture_output=True, text=True, check=True, timeout=60,
    ).stdout.strip()
    assert child != here and child.rsplit(":", 2)[0] == host
    settings, _ = settings_from(parse_options([]))
    assert settings.worker_id == here  # the default, where it used to be the bare host name


def test_a_second_worker_on_the_same_host_never_takes_a_live_workers_lease(tmp_path):
    store = LocalStore(tmp_path)
    host = socket.gethostname()
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        time.sleep(0.2)
        live_id = f"{host}:{live.pid}:{int(process_start(live.pid))}"
        me = default_worker_id()
        other = Leases(store, live_id, 600)
        assert other.claim("a.wav")
        mine = Leases(store, me, 600, earlier_self=lambda owner: earlier_self(owner, me))
        assert not mine.claim("a.wav")  # the other process is alive: its lease stands
    finally:
        live.kill()
        live.wait()
    # Now that process is gone: its lease is an earlier life of a worker on this host.
    assert earlier_self(live_id, me)
    assert mine.claim("a.wav")
    assert json.loads(store.read(lease_key("a.wav"))[0])["owner"] == me


def test_a_pid_reused_by_another_process_is_not_the_lease_owner():
    me = default_worker_id()
    host = me.rsplit(":", 2)[0]
    alive_but_started_later = f"{host}:{os.getpid()}:{int(process_start(os.getpid())) - 3600}"
    assert earlier_self(alive_but_started_later, me)
    assert not earlier_self(me, me)
    assert not earlier_self(f"other-host:{os.getpid() + 10**6}:1", me)
    assert not earlier_self("a plain --worker-id", me)


def test_only_the_worker_whose_upload_won_writes_the_record(tmp_path, prompts, capsys):
    out = tmp_path / "out"
    out.mkdir()
    theirs = SongRecord("calm.wav", "calm piano", 2, 9.5, 0.001, "calm.wav", 1234, "m", 1, 1, "a", "b", "w-1")

    class SlowerWorker(FakeEngine):
        """While this worker generates, another one stores calm.wav with its own record."""

        def decode(self, codes, num_samples):
            # drums.wav (3 s), the longer song, is claimed and decoded first; calm.wav is 2 s.
            if num_samples == 2 * 8000 and not (out / "calm.wav").exists():
                soundfile.write(out / "calm.wav", np.full(num_samples, 0.5), 8000, subtype="PCM_16")
                (out / ".records").mkdir(exist_ok=True)
                (out / record_key("calm.wav")).write_bytes(theirs.to_json())
            return super().decode(codes, num_samples)

    argv = ["--prompts", str(prompts), "--output", str(out), "--batch-size", "1"]
    assert main(argv, load_engine=lambda model: SlowerWorker()) == 0
    assert "calm.wav appeared in the output meanwhile; kept the existing file" in capsys.readouterr().err
    assert SongRecord.from_json((out / record_key("calm.wav")).read_bytes()) == theirs
    assert soundfile.read(out / "calm.wav")[0].max() > 0.4  # their WAV, not our silence


def test_a_rerun_writes_the_record_its_earlier_run_could_not(tmp_path, prompts, capsys, monkeypatch):
    out, spool = tmp_path / "out", tmp_path / "spool"
    argv = ["--prompts", str(prompts), "--output", str(out), "--spool-dir", str(spool)]
    real_write = LocalStore.write

    def no_records(self, key, data, content_type=None):
        if key.startswith(".records/"):
            raise OSError("throttled")
        real_write(self, key, data, content_type)

    monkeypatch.setattr(LocalStore, "write", no_records)
    assert main(argv, load_engine=fake) == 1
    assert (out / "calm.wav").exists() and not (out / ".records").exists()
    monkeypatch.setattr(LocalStore, "write", real_write)
    assert main(argv, load_engine=never) == 0
    assert sorted(p.name for p in (out / ".records").iterdir()) == ["calm.wav.json", "drums.wav.json"]


# -- 9: hand-edited bookkeeping --------------------------------------------------------------


@pytest.mark.parametrize("body", [b"[]", b"null", b'"x"', b"7", b'{"format": 1, "codes_shape": "ab"}'])
def test_checkpoint_that_is_json_but_not_a_checkpoint_is_ignored_and_replaced(tmp_path, prompts, capsys, body):
    out = tmp_path / "out"
    (out / ".checkpoints").mkdir(parents=True)
    (out / checkpoint_key("calm.wav")).write_bytes(body)
    argv = ["--prompts", str(prompts), "--output", str(out), "--window-s", "1", "--stride-s", "0.5"]
    assert main(argv, load_engine=fake) == 0
    assert "ignored the checkpoint of calm.wav: unreadable checkpoint" in capsys.readouterr().err
    assert wav_frames(out / "calm.wav") == 2 * 8000 and wav_frames(out / "drums.wav") == 3 * 8000


def test_checkpoint_with_codes_out_of_range_for_the_model_is_ignored(tmp_path, prompts, capsys):
    out = tmp_path / "out"
    engine = FakeEngine()
    # calm.wav, 2 s at 50 frames/s in windows of 1 s (50 frames) advancing 0.5 s (25 frames).
    identity = Identity(prompt_hash_of("calm piano"), 2.0, "facebook/musicgen-small", 50, 25)
    codes = np.full((2, 50), engine.codebook_size + 100, dtype=np.int64)
    checkpoint = Checkpoint(identity, seed=1, next_window=1, generation_time_s=1.0, codes=codes)
    (out / ".checkpoints").mkdir(parents=True)
    (out / checkpoint_key("calm.wav")).write_bytes(checkpoint.to_json())
    argv = ["--prompts", str(prompts), "--output", str(out), "--window-s", "1", "--stride-s", "0.5"]
    assert main(argv, load_engine=lambda model: engine) == 0
    assert "ignored the stale checkpoint of calm.wav: its codes are out of range" in capsys.readouterr().err
    assert wav_frames(out / "calm.wav") == 2 * 8000


def prompt_hash_of(prompt):
    from contract.prompts import prompt_hash

    return prompt_hash(prompt)


@pytest.mark.parametrize(
    "change",
    [
        {"generation_time_s": "abc"},
        {"estimated_cost_usd": float("nan")},
        {"requested_duration_s": -3},
        {"seed": 1.5},
        {"prompt": None},
    ],
)
def test_record_with_numbers_that_are_not_numbers_is_ignored_in_the_report(tmp_path, prompts, capsys, change):
    out = tmp_path / "out"
    bad = SongRecord("old.wav", "old", 2, 1.0, 0.1, "old.wav", 1, "m", 1, 1, "a", "b", "w")
    (out / ".records").mkdir(parents=True)
    (out / record_key("old.wav")).write_text(json.dumps({**json.loads(bad.to_json()), **change}))
    assert main(["--prompts", str(prompts), "--output", str(out)], load_engine=fake) == 0
    assert f"ignored unreadable record {record_key('old.wav')}" in capsys.readouterr().err
    report = (out / "cost_report.csv").read_text()
    assert [r["s3_filename"] for r in parse_report(report.encode())] == ["calm.wav", "drums.wav"]
    assert "nan" not in report


# -- 10: unusable places, found before the model loads --------------------------------------


def test_output_or_spool_that_is_a_file_exits_2_before_the_model_loads(tmp_path, prompts, capsys):
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    base = ["--prompts", str(prompts)]
    cases = [
        (["--output", str(a_file)], "is a file, not a folder"),
        (["--output", str(a_file / "below")], "cannot be created"),
        (["--output", str(tmp_path / "o"), "--spool-dir", str(a_file)], "is a file, not a folder"),
    ]
    for argv, message in cases:
        assert main([*base, *argv], load_engine=never) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and message in err and len(err.splitlines()) == 1


def test_missing_bucket_exits_2_before_the_model_loads(aws_env, prompts, capsys):
    assert main(["--prompts", str(prompts), "--output", "s3://no-such-bucket/x"], load_engine=never) == 2
    err = capsys.readouterr().err  # moto's own request log also lands on stderr
    assert "error: output s3://no-such-bucket/x: bucket 'no-such-bucket' does not exist\n" in err
    assert "Traceback" not in err


# -- 11: Ctrl-C --------------------------------------------------------------------------------


@pytest.fixture
def sigint_handler():
    """Set SIGINT's handler for one test, and put back what was there (a test run started in
    the background, `nohup make test &`, starts with SIGINT ignored)."""
    before = signal.getsignal(signal.SIGINT)

    def use(handler):
        signal.signal(signal.SIGINT, handler)
        return handler

    yield use
    signal.signal(signal.SIGINT, before)


def test_ctrl_c_checkpoints_releases_reports_and_exits_130(tmp_path, capsys, sigint_handler):
    # As in a terminal: Python's own handler, which raises KeyboardInterrupt.
    ours = sigint_handler(signal.default_int_handler)
    out = tmp_path / "out"
    prompts = tmp_path / "p.txt"
    prompts.write_text("short;1;first\nlonger;4;second\n")
    sent = []

    def interrupt_mid_song(rows):
        # Both songs share the first window; first.wav (one window) is stored after it, and
        # second.wav (seven windows) is interrupted at its third.
        sent.append(len(rows))
        if len(sent) == 3:
            os.kill(os.getpid(), signal.SIGINT)

    argv = ["--prompts", str(prompts), "--output", str(out), "--batch-size", "2",
            "--window-s", "1", "--stride-s", "0.5"]
    assert main(argv, load_engine=lambda model: FakeEngine(interrupt_mid_song)) == 130
    err = capsys.readouterr().err
    assert sent == [2, 1, 1] and "KeyboardInterrupt" not in err
    assert err.splitlines()[-1].endswith(
        "WARNING stopped by Ctrl-C (SIGINT); saved second.wav at the last window: run again to resume "
        "from the checkpoints"
    )
    assert [r["s3_filename"] for r in parse_report((out / "cost_report.csv").read_bytes())] == ["first.wav"]
    assert not (out / ".leases").exists() or list((out / ".leases").iterdir()) == []
    assert Checkpoint.from_json((out / checkpoint_key("second.wav")).read_bytes()).next_window >= 1
    assert signal.getsignal(signal.SIGINT) is ours  # the handler from before the run, back


def test_a_background_worker_keeps_ignoring_ctrl_c_and_stops_on_sigterm(
    tmp_path, capsys, sigint_handler
):
    """Started as a background job (`python -m worker &`): the shell made SIGINT ignored, and a
    Ctrl-C meant for the foreground neither stops the worker nor reaches it afterwards; SIGTERM
    (`kill`) stops it as always, with its checkpoint."""
    sigint_handler(signal.SIG_IGN)
    sigterm_before = signal.getsignal(signal.SIGTERM)
    out = tmp_path / "out"
    prompts = tmp_path / "p.txt"
    prompts.write_text("short;1;first\nlonger;4;second\n")
    sent = []

    def ctrl_c_then_kill(rows):
        sent.append(len(rows))
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
        if len(sent) == 2:
            os.kill(os.getpid(), signal.SIGINT)
        if len(sent) == 4:
            os.kill(os.getpid(), signal.SIGTERM)

    argv = ["--prompts", str(prompts), "--output", str(out), "--batch-size", "2",
            "--window-s", "1", "--stride-s", "0.5"]
    assert main(argv, load_engine=lambda model: FakeEngine(ctrl_c_then_kill)) == 143
    err = capsys.readouterr().err
    assert sent == [2, 1, 1, 1] and "KeyboardInterrupt" not in err
    assert err.splitlines()[-1].endswith(
        "WARNING stopped by SIGTERM (systemctl stop, kill) while the instance is not stopping; "
        "saved second.wav at the last window: run again to resume from the checkpoints"
    )
    assert Checkpoint.from_json((out / checkpoint_key("second.wav")).read_bytes()).next_window >= 3
    assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    assert signal.getsignal(signal.SIGTERM) is sigterm_before


# -- 5, 6, 12, 13: options ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("option", "env", "value"),
    [
        ("--temperature", "MUSICGEN_TEMPERATURE", "nan"),
        ("--guidance-scale", "MUSICGEN_GUIDANCE_SCALE", "inf"),
        ("--hourly-cost", "HOURLY_COST_USD", "inf"),
        ("--window-s", "MUSICGEN_WINDOW_S", "inf"),
        ("--stride-s", "MUSICGEN_STRIDE_S", "nan"),
        ("--lease-s", "MUSICGEN_LEASE_S", "inf"),
        ("--imds-poll-s", "MUSICGEN_IMDS_POLL_S", "nan"),
    ],
)
def test_non_finite_numbers_exit_2_naming_option_and_variable(tmp_path, prompts, capsys, monkeypatch, option, env, value):
    base = ["--prompts", str(prompts), "--output", str(tmp_path / "o")]
    expected = f"error: {option}/{env}={value!r}: must be a finite number\n"
    assert main([*base, option, value], load_engine=never) == 2
    assert capsys.readouterr().err == expected
    monkeypatch.setenv(env, value)
    assert main(base, load_engine=never) == 2
    assert capsys.readouterr().err == expected


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--window-s", "1e300", "must be <= 600"),
        ("--lease-s", "1e12", "must be <= 86400"),
        ("--hourly-cost", "1e9", "must be <= 1000"),
        ("--batch-size", "100000", "must be <= 1024"),
        ("--temperature", "1e6", "must be <= 100"),
        ("--seed", str(2**70), "must fit in 63 bits"),
        ("--worker-id", "", "must be printable text"),
    ],
)
def test_numbers_out_of_range_exit_2(tmp_path, prompts, capsys, option, value, message):
    argv = ["--prompts", str(prompts), "--output", str(tmp_path / "o"), option, value]
    assert main(argv, load_engine=never) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {option}/") and message in err


@pytest.mark.parametrize("endpoint", ["not a url", "169.254.169.254", "ftp://x", "http://", "http://h:port"])
def test_imds_endpoint_that_is_not_a_url_exits_2(tmp_path, prompts, capsys, endpoint):
    argv = ["--prompts", str(prompts), "--output", str(tmp_path / "o"), "--imds-endpoint", endpoint]
    assert main(argv, load_engine=never) == 2
    assert capsys.readouterr().err.startswith(f"error: --imds-endpoint/MUSICGEN_IMDS_ENDPOINT={endpoint!r}: must be")


def test_model_folder_that_does_not_exist_is_named(tmp_path, prompts, capsys):
    argv = ["--prompts", str(prompts), "--output", str(tmp_path / "o"), "--model", "/no/such/folder"]
    assert main(argv, load_engine=never) == 2
    assert capsys.readouterr().err == "error: --model/MUSICGEN_MODEL: folder '/no/such/folder' does not exist\n"
    (tmp_path / "empty").mkdir()
    assert main([*argv[:-1], str(tmp_path / "empty")], load_engine=never) == 2
    assert "has no config.json" in capsys.readouterr().err


def test_upper_case_s3_scheme_is_s3_not_a_local_folder(aws_env, tmp_path, prompts, monkeypatch):
    monkeypatch.chdir(tmp_path)
    boto3.client("s3").create_bucket(Bucket="songs")
    assert main(["--prompts", str(prompts), "--output", "S3://songs/x"], load_engine=fake) == 0
    body = boto3.client("s3").get_object(Bucket="songs", Key="x/calm.wav")["Body"].read()
    assert soundfile.info(io.BytesIO(body)).frames == 2 * 8000
    assert not (tmp_path / "S3:").exists()


def test_output_with_a_tilde_is_expanded(tmp_path, prompts, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert main(["--prompts", str(prompts), "--output=~/songs"], load_engine=fake) == 0
    assert (tmp_path / "home" / "songs" / "calm.wav").is_file()
    assert not (tmp_path / "~").exists()


def test_no_traceback_for_bad_input_in_a_real_process(tmp_path, prompts):
    for argv in (["--temperature", "nan"], ["--model", "/no/such/folder"], ["--imds-endpoint", "x"]):
        done = subprocess.run(
            [sys.executable, "-m", "worker", "--prompts", str(prompts), "--output", str(tmp_path / "o"), *argv],
            cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
        )
        assert done.returncode == 2 and "Traceback" not in done.stderr
        assert len(done.stderr.splitlines()) == 1


def test_spooled_song_without_its_output_is_left_alone_and_named(tmp_path, prompts, capsys):
    spool, out = tmp_path / "spool", tmp_path / "out"
    spool.mkdir()
    record = SongRecord("calm.wav", "calm piano", 2, 1.0, 0.1, "calm.wav", 1, "facebook/musicgen-small", 1, 1, "a", "b", "w")
    soundfile.write(spool / "calm.wav", np.zeros(16000), 8000, subtype="PCM_16")
    (spool / "calm.wav.record.json").write_bytes(record.to_json())  # as older versions wrote it
    argv = ["--prompts", str(prompts), "--output", str(out), "--spool-dir", str(spool)]
    assert main(argv, load_engine=fake) == 1
    err = capsys.readouterr().err
    assert f"left {spool / 'calm.wav'} in the spool: its record does not name the output" in err
    assert not (out / "calm.wav").exists() and (spool / "calm.wav").exists()
    assert wav_frames(out / "drums.wav") == 3 * 8000
