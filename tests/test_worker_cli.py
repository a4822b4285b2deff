"""Exit codes and messages of `python -m worker` for input it cannot use."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from worker.cli import build_parser, main, settings_from
from worker.settings import GenerationParams, MasteringSettings
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
        (["--window-s", "4", "--stride-s", "5"], {}, "error: need 0 < stride (5 s) <= window (4 s)"),
        (["--top-k", "0"], {}, "error: top_k must be >= 1, got 0"),
        (["--output", "s3://"], {}, "error: output 's3://' names no bucket"),
    ],
)
def test_bad_settings_exit_2_with_the_value_named(refused, argv, env, message):
    assert message in refused(argv, env)


def test_missing_prompts_file_exits_2(tmp_path, capsys):
    assert main(["--prompts", str(tmp_path / "none.txt")]) == 2
    assert f"error: cannot read prompts file {tmp_path / 'none.txt'}: No such file or directory" in capsys.readouterr().err


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
    settings, params = settings_from(build_parser().parse_args([]))
    assert params == GenerationParams()
    assert settings.window == WindowSettings()
    assert settings.mastering == MasteringSettings()


def test_the_help_shows_each_default_as_the_settings_hold_it():
    helps = {action.dest: action.help for action in build_parser()._actions}
    window, params = WindowSettings(), GenerationParams()
    assert helps["window_s"].endswith(f"[MUSICGEN_WINDOW_S, default {window.window_s:g}]")
    assert helps["stride_s"].endswith(f"[MUSICGEN_STRIDE_S, default {window.stride_s:g}]")
    assert helps["top_k"].endswith(f"[MUSICGEN_TOP_K, default {params.top_k}]")
    assert helps["guidance_scale"].endswith(f"[MUSICGEN_GUIDANCE_SCALE, default {params.guidance_scale:g}]")
    assert helps["loudness_lufs"].endswith(f"[MUSICGEN_LOUDNESS_LUFS, default {MasteringSettings().loudness_lufs:g}]")


def test_an_environment_variable_replaces_a_dataclass_default(monkeypatch):
    monkeypatch.setenv("MUSICGEN_TOP_K", "17")
    monkeypatch.setenv("MUSICGEN_STRIDE_S", "12.5")
    settings, params = settings_from(build_parser().parse_args([]))
    assert params == GenerationParams(top_k=17)
    assert settings.window == WindowSettings(stride_s=12.5)


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
