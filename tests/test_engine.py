"""The sampling loop against transformers' own generate, on a tiny random MusicGen."""

import numpy as np
import pytest
import torch

from worker.engine import WindowRequest, derive_seed
from worker.settings import GenerationParams

PROMPTS = ["epic drums", "calm slow ambient piano with jazz"]


def hf_codes(engine, prompts, new_frames, prompt_codes=None):
    """Codes from MusicgenForConditionalGeneration.generate, captured on their way to EnCodec."""
    model = engine.model
    captured = []
    original = model.audio_encoder.decode

    def capture(codes, *args, **kwargs):
        captured.append(codes.clone())
        return original(codes, *args, **kwargs)

    model.audio_encoder.decode = capture
    try:
        inputs = engine.processor(text=prompts, padding=True, return_tensors="pt")
        extra = {}
        if prompt_codes is not None:
            extra["decoder_input_ids"] = prompt_codes.reshape(-1, prompt_codes.shape[-1])
        model.generate(
            **inputs, **extra, max_new_tokens=new_frames + engine.num_codebooks - 1,
            do_sample=False, guidance_scale=3.0,
        )
    finally:
        model.audio_encoder.decode = original
    return captured[-1][0]


def rows_for(engine, prompts, new_frames, prompt_codes=None, seeds=None):
    k = engine.num_codebooks
    return [
        WindowRequest(
            conditioning=engine.condition(text),
            prompt=prompt_codes[i] if prompt_codes is not None else torch.zeros((k, 0), dtype=torch.long),
            new_frames=new_frames,
            seed=(seeds or [0] * len(prompts))[i],
        )
        for i, text in enumerate(prompts)
    ]


def test_first_window_matches_transformers_generate(tiny_engine):
    tiny_engine.set_generation_params(top_k=1)
    expected = hf_codes(tiny_engine, PROMPTS, 20)
    got = tiny_engine.generate(rows_for(tiny_engine, PROMPTS, 20))
    assert [tuple(c.shape) for c in got] == [(4, 20), (4, 20)]
    for i in range(2):
        assert torch.equal(got[i], expected[i])


def test_continuation_from_codes_matches_transformers_decoder_input_ids(tiny_engine):
    tiny_engine.set_generation_params(top_k=1)
    first = hf_codes(tiny_engine, PROMPTS, 20)
    prompt = first[:, :, -8:]
    expected = hf_codes(tiny_engine, PROMPTS, 10, prompt_codes=prompt)
    assert torch.equal(expected[:, :, :8], prompt)  # transformers keeps the prompt in front
    got = tiny_engine.generate(rows_for(tiny_engine, PROMPTS, 10, prompt_codes=prompt))
    for i in range(2):
        assert torch.equal(got[i], expected[i, :, 8:])


def test_a_songs_seed_gives_the_same_codes_alone_or_in_a_batch(tiny_engine):
    alone = tiny_engine.generate(rows_for(tiny_engine, PROMPTS[:1], 30, seeds=[123]))[0]
    batched = tiny_engine.generate(rows_for(tiny_engine, PROMPTS[::-1] + PROMPTS[:1], 30, seeds=[5, 9, 123]))
    assert torch.equal(alone, batched[2])
    assert not torch.equal(batched[0], batched[2])


def test_rows_get_exactly_the_frames_they_ask_for(tiny_engine):
    rows = rows_for(tiny_engine, PROMPTS, 1)
    rows[1] = WindowRequest(rows[1].conditioning, rows[1].prompt, 17, 1)
    got = tiny_engine.generate(rows)
    assert [c.shape[-1] for c in got] == [1, 17]
    assert all(int(c.max()) < 64 and int(c.min()) >= 0 for c in got)


def test_guidance_off_runs_a_single_row_per_song(tiny_engine):
    tiny_engine.set_generation_params(guidance_scale=1.0, top_k=1)
    got = tiny_engine.generate(rows_for(tiny_engine, PROMPTS, 5))
    assert [c.shape for c in got] == [torch.Size([4, 5])] * 2


def test_decode_is_exactly_the_requested_length_and_chunking_keeps_the_audio(tiny_engine):
    codes = tiny_engine.generate(rows_for(tiny_engine, PROMPTS[:1], 300, seeds=[7]))[0]
    hop = tiny_engine.hop_length
    whole = tiny_engine.decode(codes, 300 * hop - 33, chunk_frames=10_000)
    chunked = tiny_engine.decode(codes, 300 * hop - 33, chunk_frames=100)
    assert whole.shape == chunked.shape == (300 * hop - 33,)
    assert whole.dtype == np.float32 and np.isfinite(chunked).all()
    # A second of context on each side puts every seam outside the samples that are kept.
    np.testing.assert_allclose(chunked, whole, atol=1e-4)
    with pytest.raises(ValueError):
        tiny_engine.decode(codes, 300 * hop + 1)


def test_derived_seeds_are_stable_and_distinct():
    assert derive_seed(1, 0) == derive_seed(1, 0)
    assert len({derive_seed(s, w) for s in range(10) for w in range(10)}) == 100
    # Every character of a file name counts, not just a prefix.
    assert derive_seed(7, "cinematic_a.wav") != derive_seed(7, "cinematic_b.wav")


@pytest.mark.parametrize("bad", [{"top_k": 0}, {"temperature": 0}, {"guidance_scale": 0.5}])
def test_generation_params_reject_bad_values(bad):
    with pytest.raises(ValueError):
        GenerationParams(**bad)


def test_auto_batch_size_on_cpu_is_the_fixed_default(tiny_engine):
    assert tiny_engine.auto_batch_size(1500) == 8
