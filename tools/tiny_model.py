"""A tiny random MusicGen (T5 + EnCodec + decoder) built from transformers configs.

Saved with `save_pretrained`, it loads through exactly the `from_pretrained` path the worker
uses for facebook/musicgen-small, so the tests, and anyone without the hub, run the real code
offline and in seconds; its "songs" are noise. `random_musicgen` also builds
bench/throughput.py's full-size architecture.

    python -m tools.tiny_model DIR [--stereo] [--seed N]
    MUSICGEN_MODEL=DIR python -m worker
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import torch
from transformers import (
    EncodecConfig,
    EncodecFeatureExtractor,
    MusicgenConfig,
    MusicgenDecoderConfig,
    MusicgenForConditionalGeneration,
    MusicgenProcessor,
    T5Config,
    T5Tokenizer,
)

from worker.engine.hf_output import quiet_loading

SAMPLING_RATE = 8000
FRAME_RATE = 50  # 8000 Hz / (8 * 5 * 4) as in the real model's 32000 Hz / (8 * 5 * 4 * 4)
CODEBOOK_SIZE = 64
NUM_CODEBOOKS = 4
WORDS = ["ambient", "piano", "calm", "slow", "epic", "drums", "cinematic", "trailer", "jazz", "guitar", "lofi", "beat", "rock", "loud", "synth", "pop", "bass", "fail", "song", "music", "with", "and", "the", "a", "of", "in"]


def build_tokenizer(words: list[str]) -> T5Tokenizer:
    """A T5 tokenizer built offline whose vocabulary is `words` (plus T5's special tokens)."""
    vocab = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)]
    vocab += [("\u2581" + word, -1.0 - i / 100) for i, word in enumerate(words)]
    return T5Tokenizer(vocab=vocab, extra_ids=0)


def random_musicgen(
    text: T5Config,
    audio: EncodecConfig,
    decoder: MusicgenDecoderConfig,
    words: list[str],
    seed: int = 0,
) -> tuple[MusicgenForConditionalGeneration, MusicgenProcessor]:
    """A MusicGen with random weights and its processor. Generation starts and pads with the
    decoder's pad token, as the hub checkpoints do."""
    torch.manual_seed(seed)
    config = MusicgenConfig(text_encoder=text, audio_encoder=audio, decoder=decoder)
    model = MusicgenForConditionalGeneration(config)
    # transformers initialises EnCodec's codebooks to zeros, which would make every code decode to
    # the same audio; random ones make the audio depend on the codes, as a trained codec's does.
    for layer in model.audio_encoder.quantizer.layers:
        layer.codebook.embed.normal_()
    for name in ("pad_token_id", "decoder_start_token_id", "bos_token_id"):
        setattr(model.generation_config, name, decoder.pad_token_id)
    processor = MusicgenProcessor(
        feature_extractor=EncodecFeatureExtractor(sampling_rate=audio.sampling_rate),
        tokenizer=build_tokenizer(words),
    )
    return model.eval(), processor


def save_tiny_model(path: Path, seed: int = 0, audio_channels: int = 1) -> Path:
    """Mono, or stereo like facebook/musicgen-stereo-*: the same mono EnCodec, and a decoder with
    twice its codebooks, left and right interleaved."""
    with quiet_loading():
        return _save(path, seed, audio_channels)


def _save(path: Path, seed: int, audio_channels: int) -> Path:
    text = T5Config(
        vocab_size=3 + len(WORDS),
        d_model=32,
        d_kv=8,
        d_ff=64,
        num_layers=2,
        num_heads=4,
        decoder_start_token_id=0,
        pad_token_id=0,
    )
    audio = EncodecConfig(
        sampling_rate=SAMPLING_RATE,
        audio_channels=1,
        num_filters=4,
        upsampling_ratios=[4, 5, 8],
        codebook_size=CODEBOOK_SIZE,
        codebook_dim=16,
        hidden_size=16,
        num_lstm_layers=1,
        # bandwidth (kbps) = codebooks * frame rate * log2(codebook size) / 1000
        target_bandwidths=[NUM_CODEBOOKS * FRAME_RATE * 6 / 1000],
        normalize=False,
        use_causal_conv=False,
        chunk_length_s=None,
        overlap=None,
    )
    decoder = MusicgenDecoderConfig(
        vocab_size=CODEBOOK_SIZE,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        ffn_dim=64,
        num_codebooks=NUM_CODEBOOKS * audio_channels,
        audio_channels=audio_channels,
        max_position_embeddings=4096,
        pad_token_id=CODEBOOK_SIZE,
        bos_token_id=CODEBOOK_SIZE,
        decoder_start_token_id=CODEBOOK_SIZE,
    )
    model, processor = random_musicgen(text, audio, decoder, WORDS, seed)
    model.save_pretrained(path)
    processor.save_pretrained(path)
    return path


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tools.tiny_model",
        description="Save a tiny random MusicGen (its songs are noise) for trying the worker offline.",
    )
    parser.add_argument("dir", type=Path, help="folder to save it in (created if missing)")
    parser.add_argument(
        "--stereo", action="store_true", help="a stereo checkpoint, like facebook/musicgen-stereo-*"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the random weights")
    args = parser.parse_args(argv)
    if args.dir.exists() and not args.dir.is_dir():
        print(f"error: {args.dir} exists and is not a folder", file=sys.stderr)
        return 2
    save_tiny_model(args.dir, seed=args.seed, audio_channels=2 if args.stereo else 1)
    print(f"Tiny random MusicGen saved to {args.dir}: run the worker with --model {args.dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
