"""The sampling loop against transformers' own generate, on a tiny random MusicGen."""

import numpy as np
import pytest
import torch

from worker.engine.engine import CPU_BATCH_SIZE
from worker.engine.generation import WindowRequest, derive_seed
from worker.settings import GenerationParams
from worker.windows import steps_for

PROMPTS = ["epic drums", "calm slow ambient piano with jazz"]


@pytest.fixture(params=["mono", "stereo"])
def any_engine(request):
    """The tiny model, mono (4 codebooks) and stereo (8 codebooks, left/right interleaved), with
    default settings."""
    name = "loaded_tiny_engine" if request.param == "mono" else "loaded_tiny_stereo_engine"
    loaded = request.getfixturevalue(name)
    return loaded.with_params(GenerationParams())


def hf_codes(engine, prompts, new_frames, prompt_codes=None):
    """Codes from MusicgenForConditionalGeneration.generate, captured on their way to EnCodec.

    A stereo model decodes its even and odd codebooks in two calls; they are interleaved back.
    """
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
            **inputs, **extra,
            max_new_tokens=steps_for(new_frames, engine.num_codebooks, engine.audio_channels),
            do_sample=False, guidance_scale=3.0,
        )
    finally:
        model.audio_encoder.decode = original
    if engine.audio_channels == 1:
        return captured[-1][0]
    left, right = captured[-2][0], captured[-1][0]
    return torch.stack([left, right], dim=2).reshape(left.shape[0], -1, left.shape[-1])


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


def test_first_window_matches_transformers_generate(any_engine):
    any_engine = any_engine.with_params(GenerationParams(top_k=1))
    expected = hf_codes(any_engine, PROMPTS, 20)
    got = any_engine.generate(rows_for(any_engine, PROMPTS, 20))
    k = 4 * any_engine.audio_channels
    assert [tuple(c.shape) for c in got] == [(k, 20), (k, 20)]
    for i in range(2):
        assert torch.equal(got[i], expected[i])


def test_continuation_from_codes_matches_transformers_decoder_input_ids(any_engine):
    any_engine = any_engine.with_params(GenerationParams(top_k=1))
    first = hf_codes(any_engine, PROMPTS, 20)
    prompt = first[:, :, -8:]
    expected = hf_codes(any_engine, PROMPTS, 10, prompt_codes=prompt)
    assert torch.equal(expected[:, :, :8], prompt)  # transformers keeps the prompt in front
    got = any_engine.generate(rows_for(any_engine, PROMPTS, 10, prompt_codes=prompt))
    for i in range(2):
        assert torch.equal(got[i], expected[i, :, 8:])


def test_stereo_pairs_share_a_delay_so_a_window_takes_frames_plus_3_steps(any_engine):
    assert any_engine.delays == ([0, 1, 2, 3] if any_engine.audio_channels == 1 else [0, 0, 1, 1, 2, 2, 3, 3])
    steps = []
    any_engine.generate(rows_for(any_engine, PROMPTS[:1], 20), on_step=steps.append)
    assert steps == list(range(1, 24))


def test_stereo_decodes_left_and_right_codebooks_separately(any_engine):
    codes = any_engine.generate(rows_for(any_engine, PROMPTS[:1], 60, seeds=[3]))[0]
    hop = any_engine.hop_length
    audio = any_engine.decode(codes, 60 * hop - 5, chunk_frames=25)
    if any_engine.audio_channels == 1:
        assert audio.shape == (60 * hop - 5,)
        return
    assert audio.shape == (60 * hop - 5, 2) and audio.dtype == np.float32
    encodec = any_engine.model.audio_encoder
    for channel in (0, 1):
        with torch.inference_mode():
            alone = encodec.decode(codes[channel::2][None, None], audio_scales=[None]).audio_values[0, 0]
        np.testing.assert_allclose(audio[:, channel], alone[: 60 * hop - 5].numpy(), atol=1e-4)
    assert not np.allclose(audio[:, 0], audio[:, 1])


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
    tiny_engine = tiny_engine.with_params(GenerationParams(guidance_scale=1.0, top_k=1))
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


# The tiny decoder: 2 layers x 32 hidden, 4 codebooks of 64 codes. Per song, a window of W frames
# holds a KV cache of rows x 2 layers x (K, V) x 32 x (W + 4) positions x bytes, plus float32
# sampling buffers of rows x 4 x 64 x 16 bytes; rows = 2 with guidance. 70% of free memory is used.
@pytest.mark.parametrize(
    ("free_bytes", "window_frames", "dtype", "guidance", "batch"),
    [
        (10_000_000, 1500, torch.float16, 3.0, 8),  # 7e6 // (770_048 + 8_192)
        (10_000_000, 1500, torch.float16, 1.0, 17),  # one row per song: 7e6 // 389_120
        (10_000_000, 1500, torch.float32, 3.0, 4),  # 4-byte cache: 7e6 // 1_548_288
        (1_000_000, 150, torch.float16, 3.0, 8),  # a shorter window: 7e5 // (78_848 + 8_192)
        (1_000_000, 1500, torch.float16, 3.0, 1),  # not even one song fits: still one
        (100 * 2**30, 1500, torch.float16, 3.0, 64),  # an 80 GB GPU: capped
    ],
)
def test_auto_batch_size_on_a_gpu_fits_its_share_of_free_memory(
    tiny_engine, monkeypatch, free_bytes, window_frames, dtype, guidance, batch
):
    asked = []

    def mem_get_info(device):
        asked.append(device)
        return free_bytes, 2 * free_bytes

    monkeypatch.setattr(torch.cuda, "mem_get_info", mem_get_info)
    tiny_engine.device, tiny_engine.dtype = torch.device("cuda", 1), dtype
    tiny_engine = tiny_engine.with_params(GenerationParams(guidance_scale=guidance))
    assert tiny_engine.auto_batch_size(window_frames) == batch
    assert asked == [torch.device("cuda", 1)]  # the worker's own GPU, not the first one


def test_auto_batch_size_on_cpu_asks_no_gpu_and_ignores_the_window(tiny_engine, monkeypatch):
    def mem_get_info(device):
        raise AssertionError("a CPU worker asked CUDA for free memory")

    monkeypatch.setattr(torch.cuda, "mem_get_info", mem_get_info)
    assert tiny_engine.auto_batch_size(1500) == tiny_engine.auto_batch_size(15) == CPU_BATCH_SIZE


def test_settings_belong_to_each_engine_and_the_loaded_model_is_shared(loaded_tiny_engine):
    greedy = loaded_tiny_engine.with_params(GenerationParams(top_k=1, guidance_scale=1.0))
    assert greedy.model is loaded_tiny_engine.model
    assert greedy.processor is loaded_tiny_engine.processor
    assert greedy.params == GenerationParams(top_k=1, guidance_scale=1.0)
    assert loaded_tiny_engine.params == GenerationParams()  # the loaded engine keeps its own
    rows = rows_for(greedy, PROMPTS[:1], 5)
    again = greedy.with_params(greedy.params)
    assert torch.equal(greedy.generate(rows)[0], again.generate(rows)[0])
