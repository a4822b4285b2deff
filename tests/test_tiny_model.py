"""`python -m tools.tiny_model DIR`: the tiny random MusicGen `make tiny-model` saves, loaded by
the worker's own engine."""

from __future__ import annotations

import json
import logging
import re
import subprocess
import sys
from pathlib import Path

import pytest
from transformers import MusicgenForConditionalGeneration

from tools.tiny_model import NUM_CODEBOOKS, SAMPLING_RATE, main
from worker.engine.engine import Engine

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize(("argv", "channels"), [([], 1), (["--stereo"], 2)])
def test_saves_a_model_the_engine_loads(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], channels: int
) -> None:
    folder = tmp_path / "nested" / "tiny"
    assert main([str(folder), *argv]) == 0
    assert capsys.readouterr().out == (
        f"Tiny random MusicGen saved to {folder}: run the worker with --model {folder}\n"
    )
    decoder = json.loads((folder / "config.json").read_text())["decoder"]
    assert (decoder["audio_channels"], decoder["num_codebooks"]) == (channels, NUM_CODEBOOKS * channels)
    engine = Engine.from_pretrained(str(folder))
    assert engine.sample_rate == SAMPLING_RATE


def test_the_seed_chooses_the_weights(tmp_path: Path) -> None:
    for name, seed in (("a", "1"), ("b", "1"), ("c", "2")):
        assert main([str(tmp_path / name), "--seed", seed]) == 0
    weights = {name: (tmp_path / name / "model.safetensors").read_bytes() for name in "abc"}
    assert weights["a"] == weights["b"] != weights["c"]


def test_refuses_a_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    taken = tmp_path / "notes.txt"
    taken.write_text("mine")
    assert main([str(taken)]) == 2
    assert capsys.readouterr().err == f"error: {taken} exists and is not a folder\n"
    assert taken.read_text() == "mine"


@pytest.mark.slow
def test_saving_it_prints_no_warning_and_no_bar_into_a_log(tmp_path: Path, project_on_pythonpath: None) -> None:
    """`make tiny-model` with its output redirected: MusicGen's pad, start and BOS tokens sit one
    past the codebook by design (worker/engine/hf_output.py), and bars belong on a terminal only."""
    folder = tmp_path / "tiny"
    done = subprocess.run(
        [sys.executable, "-m", "tools.tiny_model", str(folder)],
        cwd=ROOT, capture_output=True, text=True, timeout=300, check=False,
    )
    assert (done.returncode, done.stderr) == (0, "")
    assert (folder / "model.safetensors").is_file()


def test_the_load_line_gives_the_models_size_in_words(tiny_model_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The model's parameters as transformers loads them (the engine later repacks some of the
    decoder's for the CPU; EnCodec's codebooks are buffers, not parameters)."""
    with caplog.at_level(logging.INFO, logger="worker.engine.engine"):
        Engine.from_pretrained(str(tiny_model_dir))
    line = next(r.getMessage() for r in caplog.records if r.getMessage().startswith("loaded "))
    found = re.search(r"; ([0-9.]+) (k|M|B) parameters in all$", line)
    assert found, line
    stated = float(found[1]) * {"k": 1e3, "M": 1e6, "B": 1e9}[found[2]]
    loaded = MusicgenForConditionalGeneration.from_pretrained(tiny_model_dir)
    actual = sum(parameter.numel() for parameter in loaded.parameters())
    assert abs(stated - actual) <= 0.005 * actual  # three significant digits
