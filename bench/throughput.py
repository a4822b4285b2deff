"""Throughput of the batched engine against a straightforward baseline, in one process and run.

Builds the real musicgen-small architecture with random weights (speed does not depend on the
weight values) and measures, on the same prompts and song lengths:

1. baseline: one song at a time, every window a `generate` call of stock transformers that
   re-encodes the previous audio as `input_values` and decodes the whole window again (the
   pre-token-space recipe);
2. engine: this worker's scheduler at the chosen batch size (and a sweep with --sweep);
3. raw step: the bare decoder forward step, through the engine's own model and cache, at the same
   batch and a typical cache length: the ceiling for this framework on this hardware;
4. raw window: the bare forward passes one continuation window needs (its prompt's prefill, then
   one step per new position), the ceiling for the windowed algorithm.

Prints audio-seconds per wall-second for each, engine/baseline and engine/raw, and peak memory.
The baseline treats songs one by one, so its rate does not depend on how many songs it gets; it
runs on the first --baseline-songs songs to keep a CPU run within minutes.
"""

from __future__ import annotations

import argparse
import copy
import logging
import platform
import resource
import time
from typing import Self

import torch
from transformers import (
    EncodecConfig,
    MusicgenDecoderConfig,
    MusicgenForConditionalGeneration,
    MusicgenProcessor,
    T5Config,
)

from contract.prompts import Job
from tools.tiny_model import random_musicgen
from worker.engine.engine import Engine, pick_device
from worker.engine.kvcache import window_cache
from worker.engine.precision import DTYPE_CHOICES
from worker.run.scheduler import BatchScheduler, Callbacks, Song, new_song
from worker.windows import WindowSettings, steps_for

PROMPTS = [
    "cinematic trailer music with epic drums",
    "calm lofi hip hop beat with soft piano",
    "80s synth pop with punchy bass",
    "acoustic folk guitar, warm and slow",
    "dark ambient drone with distant choir",
    "upbeat jazz trio with walking bass",
    "heavy rock riff with loud guitars",
    "orchestral strings, sad and tender",
]
WORDS = sorted({word for prompt in PROMPTS for word in prompt.replace(",", "").split()})


def build_model(
    device: torch.device, dtype: torch.dtype
) -> tuple[MusicgenForConditionalGeneration, MusicgenProcessor]:
    """facebook/musicgen-small's architecture: T5-base text encoder, 24-layer decoder, EnCodec 32 kHz."""
    text = T5Config(vocab_size=32128, d_model=768, d_kv=64, d_ff=3072, num_layers=12, num_heads=12)
    audio = EncodecConfig(
        sampling_rate=32000,
        num_filters=64,
        upsampling_ratios=[8, 5, 4, 4],
        num_lstm_layers=2,
        codebook_size=2048,
        target_bandwidths=[2.2],
        normalize=False,
        use_causal_conv=False,
        chunk_length_s=None,
        overlap=None,
    )
    decoder = MusicgenDecoderConfig(
        vocab_size=2048,
        hidden_size=1024,
        num_hidden_layers=24,
        num_attention_heads=16,
        ffn_dim=4096,
        num_codebooks=4,
        pad_token_id=2048,
        bos_token_id=2048,
        decoder_start_token_id=2048,
    )
    model, processor = random_musicgen(text, audio, decoder, WORDS)
    model.to(device=device, dtype=dtype)
    return model, processor


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


class Meter:
    """Wall time and peak memory of one measured phase."""

    def __init__(self, device: torch.device) -> None:
        self.device = device

    def __enter__(self) -> Self:
        sync(self.device)
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        self.started = time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        sync(self.device)
        self.seconds = time.perf_counter() - self.started
        if self.device.type == "cuda":
            self.peak = f"{torch.cuda.max_memory_allocated() / 2**30:.1f} GiB GPU"
        else:
            self.peak = f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.1f} GiB RSS (process)"


def make_songs(engine: Engine, durations: list[float], window_s: float, stride_s: float) -> list[Song]:
    """The worker's songs for these lengths, song i with seed i."""
    window = WindowSettings(window_s, stride_s)
    return [
        new_song(Job(i + 1, PROMPTS[i % len(PROMPTS)], duration, f"song{i}.wav"), i, window, engine)
        for i, duration in enumerate(durations)
    ]


class Breakdown:
    """Where the engine's wall time goes: decoder forward passes (prompt prefill included),
    text encoder, EnCodec, and the rest (sampling, delay pattern, scheduling: the loop's own
    overhead). Only meaningful on the CPU, where calls are synchronous."""

    def __init__(self, engine: Engine) -> None:
        self.seconds = {"decoder forward": 0.0, "text encoder": 0.0, "EnCodec decode": 0.0}
        self._restore = []
        self._wrap(engine, "next_logits", "decoder forward")
        self._wrap(engine, "condition", "text encoder")
        self._wrap(engine, "decode", "EnCodec decode")

    def _wrap(self, owner, attribute, label) -> None:
        original = getattr(owner, attribute)

        def timed(*args, **kwargs):
            started = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                self.seconds[label] += time.perf_counter() - started

        setattr(owner, attribute, timed)
        self._restore.append((owner, attribute))

    def close(self) -> None:
        for owner, attribute in self._restore:
            delattr(owner, attribute)


def run_engine(engine, durations, window_s, stride_s, batch_size) -> tuple[Meter, dict[str, float]]:
    songs = make_songs(engine, durations, window_s, stride_s)
    lengths = {}
    callbacks = Callbacks(on_done=lambda song, audio: lengths.__setitem__(song.job.file_name, len(audio)))
    breakdown = Breakdown(engine)
    try:
        with Meter(engine.device) as meter:
            BatchScheduler(engine, batch_size, callbacks).run(songs)
    finally:
        breakdown.close()
    assert lengths == {s.job.file_name: s.num_samples for s in songs}, "engine lost a song"
    parts = dict(breakdown.seconds)
    parts["loop overhead"] = meter.seconds - sum(parts.values())
    return meter, parts


def run_baseline(engine, model, durations, window_s, stride_s) -> Meter:
    """One song at a time with stock `model`; each window re-encodes the last (window - stride) s
    of audio."""
    processor, sr = engine.processor, engine.sample_rate
    params = engine.params  # the worker's defaults, as the engine runs them
    options = {
        "do_sample": True, "top_k": params.top_k, "temperature": params.temperature,
        "guidance_scale": params.guidance_scale,
    }
    with Meter(engine.device) as meter, torch.inference_mode():
        # The same windows as the engine's songs; only how each window is made differs.
        for song in make_songs(engine, durations, window_s, stride_s):
            text = song.job.prompt
            needed = song.num_samples
            audio = torch.zeros(0)
            for plan in song.plans:
                if plan.prompt_frames == 0:
                    inputs = processor(text=[text], return_tensors="pt")
                else:
                    prompt = audio[-plan.prompt_frames * engine.hop_length :].numpy()
                    inputs = processor(text=[text], audio=prompt, sampling_rate=sr, return_tensors="pt")
                inputs = {k: v.to(engine.device) for k, v in inputs.items()}
                if "input_values" in inputs:
                    inputs["input_values"] = inputs["input_values"].to(engine.dtype)
                out = model.generate(**inputs, max_new_tokens=steps_for(plan.new_frames, engine.num_codebooks), **options)
                new = out[0, 0, plan.prompt_frames * engine.hop_length :].float().cpu()
                audio = torch.cat([audio, new])
            assert audio.shape[0] >= needed
    return meter


def raw_inputs(engine, batch_size, frames):
    """Guidance rows (2 x batch_size) of one prompt's text and `frames` random code frames."""
    rows = 2 * batch_size
    conditioning = engine.condition(PROMPTS[0])
    hidden = conditioning.hidden[None].expand(rows, -1, -1).contiguous()
    mask = conditioning.mask[None].expand(rows, -1).contiguous()
    ids = torch.randint(0, 2048, (rows * engine.num_codebooks, frames), device=engine.device)
    return ids, hidden, mask


def run_raw_step(engine, batch_size, cache_frames, steps=20) -> tuple[float, Meter]:
    """Decoder forward steps/s at `batch_size` songs (x2 rows for guidance), cache ~cache_frames."""
    ids, hidden, mask = raw_inputs(engine, batch_size, cache_frames)
    layers = engine.model.decoder.config.num_hidden_layers
    with torch.inference_mode():
        cache = window_cache(layers, cache_frames + steps)
        engine.next_logits(ids, hidden, mask, cache)
        with Meter(engine.device) as meter:
            for _ in range(steps):
                engine.next_logits(ids[:, -1:], hidden, mask, cache)
    return steps / meter.seconds, meter


def run_raw_window(engine, batch_size, prompt_frames, new_frames) -> Meter:
    """The forward passes of one continuation window, exactly as the engine issues them: the
    start token and the prompt in one prefill, then one step per remaining position."""
    k = engine.num_codebooks
    calls = steps_for(new_frames, k)
    ids, hidden, mask = raw_inputs(engine, batch_size, prompt_frames + 1)
    layers = engine.model.decoder.config.num_hidden_layers
    with torch.inference_mode(), Meter(engine.device) as meter:
        cache = window_cache(layers, prompt_frames + new_frames + k)
        engine.next_logits(ids, hidden, mask, cache)
        for _ in range(calls - 1):
            engine.next_logits(ids[:, -1:], hidden, mask, cache)
    return meter


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", type=float, default=None,
                        help="multiply window, stride and song lengths (default 0.05 on CPU, 1 on GPU)")
    parser.add_argument("--songs", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=None, help="default: --songs")
    parser.add_argument("--baseline-songs", type=int, default=2)
    parser.add_argument("--sweep", default=None,
                        help="comma-separated batch sizes, e.g. 1,8,32; each runs one full batch of songs")
    parser.add_argument("--dtype", choices=DTYPE_CHOICES, default="auto",
                        help="the worker's --dtype; auto: bf16 on GPUs with native bf16 (compute capability 8.0+), "
                             "else fp16; fp32 on the CPU")
    parser.add_argument("--duration-s", type=float, default=None,
                        help="every song this long (at scale 1), instead of 3 to 4.8 minutes; a short GPU run")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    logging.basicConfig(level=logging.INFO, format="%(message)s")  # the engine's precision line
    device, dtype = pick_device(dtype=args.dtype)
    scale = args.scale if args.scale is not None else (1.0 if device.type == "cuda" else 0.05)
    window = WindowSettings()  # the worker's default windows, scaled
    window_s, stride_s = window.window_s * scale, window.stride_s * scale
    # 3 to 4.8 minutes at full scale: between 7 and 11 windows per song.
    durations = [round((args.duration_s or 180 + 108 * (i % 5) / 4) * scale, 3) for i in range(args.songs)]
    batch_size = args.batch_size or args.songs
    total_audio = sum(durations)

    print(f"machine: {platform.machine()}, {torch.get_num_threads()} CPU threads, "
          f"{torch.cuda.get_device_name() if device.type == 'cuda' else 'no GPU'}; torch {torch.__version__}")
    started = time.perf_counter()
    model, processor = build_model(device, dtype)
    # The engine repacks its decoder's linear layers on the CPU; the baseline keeps stock ones.
    baseline_model = copy.deepcopy(model) if device.type == "cpu" else model
    engine = Engine(model, processor, device, dtype)
    print(f"model: musicgen-small architecture, random weights, {str(dtype).removeprefix('torch.')} on {device} "
          f"(built in {time.perf_counter() - started:.0f} s)")
    print(f"songs: {args.songs}, {total_audio:.1f} s of audio in all; window {window_s:g} s, stride {stride_s:g} s; "
          f"guidance {engine.params.guidance_scale:g}, top-k {engine.params.top_k}")

    run_engine(engine, durations[:1], window_s / 4, stride_s / 4, 1)  # warm-up: kernels, allocator
    rows = []
    baseline_audio = sum(durations[: args.baseline_songs])
    base = run_baseline(engine, baseline_model, durations[: args.baseline_songs], window_s, stride_s)
    base_rate = baseline_audio / base.seconds
    rows.append(("baseline (1 song at a time, re-encode + decode every window)", 1, base_rate, base.peak))
    sizes = [int(s) for s in args.sweep.split(",")] if args.sweep else [batch_size]
    window_frames, stride_frames = WindowSettings(window_s, stride_s).frames(engine.frame_rate)
    typical_cache = window_frames - stride_frames + stride_frames // 2
    results, breakdowns = {}, {}
    for size in sizes:
        songs = size if args.sweep else args.songs
        sweep_durations = [durations[i % len(durations)] for i in range(songs)]
        meter, parts = run_engine(engine, sweep_durations, window_s, stride_s, size)
        rate = sum(sweep_durations) / meter.seconds
        breakdowns[size] = (meter.seconds, parts)
        steps_per_s, step_meter = run_raw_step(engine, size, typical_cache)
        step_rate = size * steps_per_s / engine.frame_rate
        window_meter = run_raw_window(engine, size, window_frames - stride_frames, stride_frames)
        window_rate = size * stride_frames / engine.frame_rate / window_meter.seconds
        results[size] = (rate, step_rate, window_rate)
        rows.append((f"engine, batch {size}", size, rate, meter.peak))
        rows.append((f"raw decoder forward step, cache {typical_cache} frames", size, step_rate, step_meter.peak))
        rows.append(("raw decoder forward, one continuation window (prefill + steps)", size, window_rate,
                     window_meter.peak))

    print()
    print(f"{'what':<72} {'batch':>5} {'audio-s/s':>10}  peak memory")
    for name, size, rate, peak in rows:
        print(f"{name:<72} {size:>5} {rate:>10.3f}  {peak}")
    print()
    for size, (rate, step_rate, window_rate) in results.items():
        print(f"batch {size}: engine / baseline = {rate / base_rate:.1f}x, "
              f"engine / raw forward step = {100 * rate / step_rate:.0f}%, "
              f"engine / raw continuation window = {100 * rate / window_rate:.0f}%")
        if device.type == "cpu":
            wall, parts = breakdowns[size]
            shares = ", ".join(f"{name} {100 * sec / wall:.0f}%" for name, sec in parts.items())
            print(f"  engine wall time {wall:.0f} s: {shares}")


if __name__ == "__main__":
    main()
