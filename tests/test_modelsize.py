"""Decoder sizes from the config, against the real module's parameters and the engine's layout."""

import pytest
import torch

from contract.modelsize import DecoderShape


@pytest.mark.parametrize("stereo", [False, True])
def test_parameters_match_the_decoder_module(tiny_model_dir, tiny_stereo_model_dir, stereo):
    from transformers import MusicgenForConditionalGeneration

    from worker.engine.engine import Engine

    folder = str(tiny_stereo_model_dir if stereo else tiny_model_dir)
    model = MusicgenForConditionalGeneration.from_pretrained(folder)  # the engine repacks linears
    shape = DecoderShape.from_config(model.decoder.config)
    assert (shape.codebooks, shape.audio_channels) == ((8, 2) if stereo else (4, 1))
    counted = sum(p.numel() for name, p in model.decoder.named_parameters() if "layer_norm" not in name)
    assert shape.parameters == counted
    # The window's decoder positions are exactly the engine's delayed layout.
    rows = [type("Row", (), {"prompt": torch.zeros((shape.codebooks, 3), dtype=torch.long), "new_frames": 20})()]
    tokens, _, _ = Engine(model, None, torch.device("cpu"), torch.float32)._delayed_layout(rows)
    assert tokens.shape[-1] == shape.window_positions(23)


def test_hub_sizes_are_the_published_ones():
    small = DecoderShape(layers=24, hidden=1024, ffn=4096, codebooks=4, vocab=2048)
    medium = DecoderShape(layers=48, hidden=1536, ffn=6144, codebooks=4, vocab=2048)
    large = DecoderShape(layers=48, hidden=2048, ffn=8192, codebooks=4, vocab=2048)
    assert round(small.parameters / 1e6) == 419
    assert round(medium.parameters / 1e9, 1) == 1.8
    assert round(large.parameters / 1e9, 1) == 3.3
    stereo_small = DecoderShape(24, 1024, 4096, codebooks=8, vocab=2048, audio_channels=2)
    assert stereo_small.window_positions(1500) == small.window_positions(1500) == 1504
    # 30 s windows, guidance on, 16-bit: the per-song KV cache the batch size is built on.
    assert small.kv_cache_bytes(1504) == 2 * 24 * 2 * 1024 * 1504 * 2


def test_auto_batch_size_on_a_gpu_divides_free_memory_by_the_per_song_cost(
    loaded_tiny_stereo_engine, monkeypatch
):
    from worker.settings import GenerationParams

    engine = loaded_tiny_stereo_engine.with_params(GenerationParams())  # a view: its own device
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device: (10_000_000, 20_000_000))
    engine.device = torch.device("cuda")
    engine.dtype = torch.float16
    shape = DecoderShape.from_config(engine.model.decoder.config)
    per_song = shape.kv_cache_bytes(1500 + 4, 2, 2) + 2 * 8 * 64 * 16
    assert engine.auto_batch_size(1500) == min(64, 7_000_000 // per_song)
