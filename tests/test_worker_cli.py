"""Exit codes and messages of `python -m worker` for input it cannot use."""

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from contract.bucket import record_key
from contract.prompts import parse_prompts
from contract.records import SongRecord
from tests.engines import FakeEngine
from worker.cli import command, main, parse_options, settings_from
from worker.settings import GenerationParams, MasteringSettings
from worker.store.identity import process_start
from worker.windows import WindowSettings

ROOT = Path(__file__).resolve().parent.parent


def test_check_lists_jobs_and_errors_and_exits_2_on_any_error(tmp_path, capsys):
    prompts = tmp_path / "p.txt"
    prompts.write_text("a song;10;a\nbad;x;b\n")
    assert main(["--prompts", str(prompts), "--check"]) == 2
    out, err = capsys.readouterr()
    assert out == "line 1: a.wav 10 s: a song\n1 songs, 1 errors\n"
    assert err == f"{prompts} line 2: duration 'x' is not a number of seconds\n"


def test_check_passes_a_clean_file(tmp_path, capsys):
    prompts = tmp_path / "p.txt"
    prompts.write_text("# only good lines\na song;10;a\n")
    assert main(["--prompts", str(prompts), "--check"]) == 0
    assert capsys.readouterr().out.endswith("1 songs, 0 errors\n")


@pytest.mark.parametrize(
    ("argv", "env", "message"),
    [
        (["--hourly-cost", "cheap"], {}, "error: --hourly-cost/HOURLY_COST_USD='cheap' is not a valid float"),
        ([], {"MUSICGEN_BATCH_SIZE": "-1"}, "error: --batch-size/MUSICGEN_BATCH_SIZE='-1': must be >= 0"),
        (["--window-s", "4", "--stride-s", "5"], {}, "error: --stride-s/MUSICGEN_STRIDE_S='5': must be <= the window, --window-s/MUSICGEN_WINDOW_S=4"),
        (["--top-k", "0"], {}, "error: --top-k/MUSICGEN_TOP_K='0': must be >= 1"),
        (["--output", "s3://"], {}, "error: output 's3://' names no bucket"),
    ],
)
def test_bad_settings_exit_2_with_the_value_named(refused, argv, env, message):
    assert message in refused(argv, env)


def test_missing_prompts_file_exits_2(tmp_path, capsys):
    assert main(["--prompts", str(tmp_path / "none.txt")]) == 2
    assert f"error: cannot read prompts file '{tmp_path / 'none.txt'}': No such file or directory" in capsys.readouterr().err


def test_no_valid_line_exits_2_without_loading_a_model(tmp_path, capsys):
    prompts = tmp_path / "p.txt"
    prompts.write_text("# nothing\nbroken\n")

    def never(model):
        raise AssertionError("model loaded")

    assert main(["--prompts", str(prompts), "--output", str(tmp_path / "o")], load_engine=never) == 2
    assert f"error: no valid song in {prompts}" in capsys.readouterr().err


def test_env_variables_configure_the_worker(tmp_path, monkeypatch, capsys):
    prompts = tmp_path / "p.txt"
    prompts.write_text("a;1;a\n")
    monkeypatch.setenv("MUSICGEN_PROMPTS", str(prompts))
    assert main(["--check"]) == 0
    assert "a.wav 1 s: a" in capsys.readouterr().out


@pytest.mark.parametrize("entry", [["-m", "worker"], ["worker"]])
def test_both_entry_points_run(tmp_path, entry, project_on_pythonpath):
    prompts = tmp_path / "p.txt"
    prompts.write_text("a;1;a\n")
    done = subprocess.run(
        [sys.executable, *entry, "--prompts", str(prompts), "--check"],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
    )
    assert (done.returncode, done.stdout) == (0, "line 1: a.wav 1 s: a\n1 songs, 0 errors\n")


def test_the_options_default_to_the_settings_dataclasses():
    settings, params = settings_from(parse_options([]))
    assert params == GenerationParams()
    assert settings.window == WindowSettings()
    assert settings.mastering == MasteringSettings()


def test_the_help_shows_each_default_as_the_settings_hold_it():
    helps = {param.name: param.help for param in command.params}
    window, params = WindowSettings(), GenerationParams()
    assert helps["window_s"].endswith(f"[MUSICGEN_WINDOW_S, default {window.window_s:g}]")
    assert helps["stride_s"].endswith(f"[MUSICGEN_STRIDE_S, default {window.stride_s:g}]")
    assert helps["top_k"].endswith(f"[MUSICGEN_TOP_K, default {params.top_k}]")
    assert helps["guidance_scale"].endswith(f"[MUSICGEN_GUIDANCE_SCALE, default {params.guidance_scale:g}]")
    assert helps["loudness_lufs"].endswith(f"[MUSICGEN_LOUDNESS_LUFS, default {MasteringSettings().loudness_lufs:g}]")


def test_an_environment_variable_replaces_a_dataclass_default(monkeypatch):
    monkeypatch.setenv("MUSICGEN_TOP_K", "17")
    monkeypatch.setenv("MUSICGEN_STRIDE_S", "12.5")
    settings, params = settings_from(parse_options([]))
    assert params == GenerationParams(top_k=17)
    assert settings.window == WindowSettings(stride_s=12.5)


# -- enumerated values, numbers, quoting, every option's odd values ---------------------------


@pytest.mark.parametrize(
    ("argv", "env"),
    [
        (["--format", "FLAC", "--dtype", "BFloat16"], {}),
        ([], {"MUSICGEN_FORMAT": "Flac", "MUSICGEN_DTYPE": "BFLOAT16"}),
    ],
)
def test_enumerated_values_are_case_insensitive(tiny_engine_in, monkeypatch, argv, env):
    """CONTRACT: enumerated values are case-insensitive, normalised to lower case; the engine
    then computes in the dtype named and the songs get the format's extension."""
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    settings, _ = settings_from(parse_options(argv))
    engine = tiny_engine_in(settings.dtype)
    assert engine.dtype == torch.bfloat16
    assert parse_prompts("p;1;song\n", settings.audio_format).jobs[0].file_name == "song.flac"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--window-s", "１０"], "error: --window-s/MUSICGEN_WINDOW_S='１０' is not a valid float: write it with the digits 0-9"),
        (["--top-k", "٥"], "error: --top-k/MUSICGEN_TOP_K='٥' is not a valid int: write it with the digits 0-9"),
        (["--batch-size", "1_0"], "error: --batch-size/MUSICGEN_BATCH_SIZE='1_0' is not a valid int"),
        (["--top-k", "2000000"], "error: --top-k/MUSICGEN_TOP_K='2000000': must be <= 1048576"),
        (["--max-hours", "1e308"], "error: --max-hours/MUSICGEN_MAX_HOURS='1e308': must be <= 720"),
        (["--temperature", "-1"], "error: --temperature/MUSICGEN_TEMPERATURE='-1': must be > 0"),
        (["--guidance-scale", "0.5"], "error: --guidance-scale/MUSICGEN_GUIDANCE_SCALE='0.5': must be >= 1"),
        (["--seed", "9" * 5000], "error: --seed/MUSICGEN_SEED='" + "9" * 200 + "'... (5000 characters) is not a valid int (too many digits)"),
        (["--hourly-cost", "x" * 100_000], "error: --hourly-cost/HOURLY_COST_USD='" + "x" * 200 + "'... (100000 characters) is not a valid float"),
        (["--worker-id", "w" * 201], "error: --worker-id/MUSICGEN_WORKER_ID='" + "w" * 200 + "'... (201 characters): must be at most 200 characters"),
        (["--spool-dir", "s3://bucket/spool"], "error: --spool-dir/MUSICGEN_SPOOL_DIR='s3://bucket/spool': must be a local folder (songs wait there until stored)"),
        (["--spool-dir", ""], "error: --spool-dir/MUSICGEN_SPOOL_DIR is empty"),
        (["--output", ""], "error: --output/MUSICGEN_OUTPUT is empty"),
        (["--prompts", ""], "error: --prompts/MUSICGEN_PROMPTS is empty"),
        (["--model", "m" * 300], "error: --model/MUSICGEN_MODEL='" + "m" * 200 + "'... (300 characters): File name too long"),
        (["--spool-dir", "s" * 300], "error: --spool-dir/MUSICGEN_SPOOL_DIR='" + "s" * 200 + "'... (300 characters): File name too long"),
        (["--output", "o" * 300], "error: --output/MUSICGEN_OUTPUT='" + "o" * 200 + "'... (300 characters): File name too long"),
        (["--output", "s3://Bad Name"], "error: output 's3://Bad Name': not a bucket name S3 accepts (3 to 63 lower-case letters, digits, dots and hyphens)"),
    ],
)
def test_odd_values_are_one_line_naming_the_option(refused, argv, message):
    """Each refused before the model loads, as one line; a long value is quoted cut short with
    its length, limits are printed as the integers they are."""
    err = refused(argv, {})
    assert err == message + "\n"


def test_the_prompts_option_is_refused_before_its_file_is_read(refused):
    assert refused(["--prompts", " "], {}) == "error: --prompts/MUSICGEN_PROMPTS is empty\n"


def test_the_worker_id_help_states_the_id_a_worker_really_uses(tmp_path, capsys):
    """The help's default (HOST:PID:START) is the owner name this process writes into a song's
    record: this host's name, this process's id and its start time (/proc, proc(5))."""
    stated = next(param.help for param in command.params if param.name == "worker_id")
    assert "(default: HOST:PID:START" in stated
    prompts = tmp_path / "p.txt"
    prompts.write_text("calm piano;1;calm\n")
    argv = ["--prompts", str(prompts), "--output", str(tmp_path / "out"), "--spool-dir", str(tmp_path / "spool")]
    assert main(argv, load_engine=lambda model: FakeEngine()) == 0
    record = SongRecord.from_json((tmp_path / "out" / record_key("calm.wav")).read_bytes())
    host, pid, start = record.worker.rsplit(":", 2)
    assert (host, int(pid)) == (socket.gethostname(), os.getpid())
    assert abs(int(start) - process_start(os.getpid())) <= 1


@pytest.mark.slow  # a real worker process, which imports torch
def test_device_cuda_without_usable_cuda_exits_6_with_torchs_reason_before_claiming(
    tmp_path, tiny_model_dir, project_on_pythonpath
):
    """What a worker unit (MUSICGEN_DEVICE=cuda) does on an instance whose GPU cannot be used,
    as a process: this machine's torch is a CPU build, so torch.cuda.init() raises its own
    AssertionError. The last stderr line is the one the boot unit records; nothing was claimed
    in the output and the model never loaded."""
    prompts = tmp_path / "p.txt"
    prompts.write_text("calm piano ; 1 ; calm\n")
    out = tmp_path / "out"
    done = subprocess.run(
        [sys.executable, "-m", "worker", "--prompts", str(prompts), "--output", str(out),
         "--model", str(tiny_model_dir), "--spool-dir", str(tmp_path / "spool")],
        cwd=ROOT, env={**os.environ, "MUSICGEN_DEVICE": "cuda"}, capture_output=True, text=True,
        timeout=300, check=False,
    )
    assert done.returncode == 6, done.stderr
    assert done.stderr.splitlines()[-1] == "error: GPU unusable: Torch not compiled with CUDA enabled"
    assert "loaded" not in done.stderr and done.stdout == ""
    assert list(out.iterdir()) == []  # no lease, no song, no report
