"""`python -m worker.tiny_model DIR`: the tiny random MusicGen `make tiny-model` saves, loaded by
the worker's own engine."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from worker.engine import Engine
from worker.tiny_model import NUM_CODEBOOKS, SAMPLING_RATE, main


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
