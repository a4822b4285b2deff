"""GPU memory and relative decoding cost of each MusicGen checkpoint, derived from its config.

    python bench/model_sizes.py

The decoder shapes are those of the hub configs (decoder: num_hidden_layers, hidden_size,
ffn_dim, num_codebooks, audio_channels); nothing is downloaded. Memory is the worker's own
accounting (contract/modelsize.py, worker/engine/engine.py's batch sizing). Speeds are NOT measured here:
the relative step cost assumes decoding is memory-bound (every step reads the decoder's weights
once), which holds at the small batches MusicGen runs; measure your GPU with bench/throughput.py.
"""

from __future__ import annotations

from contract.modelsize import DecoderShape

HUB = {
    "musicgen-small": DecoderShape(24, 1024, 4096, 4, 2048),
    "musicgen-medium": DecoderShape(48, 1536, 6144, 4, 2048),
    "musicgen-large": DecoderShape(48, 2048, 8192, 4, 2048),
    "musicgen-stereo-small": DecoderShape(24, 1024, 4096, 8, 2048, audio_channels=2),
    "musicgen-stereo-medium": DecoderShape(48, 1536, 6144, 8, 2048, audio_channels=2),
    "musicgen-stereo-large": DecoderShape(48, 2048, 8192, 8, 2048, audio_channels=2),
}
# T5-base's encoder (all sizes) and the 32 kHz EnCodec, approximately, in parameters.
SHARED_PARAMETERS = 0.17e9
WINDOW_FRAMES = 1500  # 30 s at 50 Hz
GIB = 1024**3


def main() -> None:
    small = HUB["musicgen-small"].weight_bytes()
    print("| model | layers x hidden, codebooks | decoder params | weights (16-bit) | KV cache per song | batch 1 | batch 16 | step cost vs small |")
    print("|---|---|---|---|---|---|---|---|")
    for name, shape in HUB.items():
        weights = shape.weight_bytes() + SHARED_PARAMETERS * 2
        per_song = shape.kv_cache_bytes(shape.window_positions(WINDOW_FRAMES))
        per_song += 2 * shape.codebooks * shape.vocab * 4 * 4
        print(
            f"| {name} | {shape.layers} x {shape.hidden}, {shape.codebooks} |"
            f" {shape.parameters / 1e9:.2f} B | {weights / GIB:.1f} GiB | {per_song / GIB:.2f} GiB |"
            f" {(weights + per_song) / GIB:.1f} GiB | {(weights + 16 * per_song) / GIB:.1f} GiB |"
            f" {shape.weight_bytes() / small:.1f}x |"
        )


if __name__ == "__main__":
    main()
