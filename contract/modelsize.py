"""A MusicGen decoder's size from its config: parameters, weight memory, KV cache per song.

Pure arithmetic (no torch), so the same numbers serve the engine's batch sizing, its load log
and the documentation's table for every hub checkpoint (docs/audio.md, bench/model_sizes.py).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DecoderShape:
    layers: int
    hidden: int
    ffn: int
    codebooks: int
    vocab: int
    audio_channels: int = 1

    @classmethod
    def from_config(cls, config) -> DecoderShape:
        """From a MusicgenDecoderConfig (or anything with its attribute names)."""
        return cls(
            layers=config.num_hidden_layers,
            hidden=config.hidden_size,
            ffn=config.ffn_dim,
            codebooks=config.num_codebooks,
            vocab=config.vocab_size,
            audio_channels=getattr(config, "audio_channels", 1),
        )

    @property
    def parameters(self) -> int:
        """Weights of the decoder: per layer self- and cross-attention (4 h x h projections
        each, no biases) and the feed-forward pair; one embedding table (vocab + pad) and one
        output head per codebook. Layer norms are left out (under 0.1%)."""
        h = self.hidden
        per_layer = 8 * h * h + 2 * h * self.ffn
        return self.layers * per_layer + self.codebooks * (2 * self.vocab + 1) * h

    def weight_bytes(self, bytes_per_value: int = 2) -> int:
        return self.parameters * bytes_per_value

    def kv_cache_bytes(self, positions: int, rows: int = 2, bytes_per_value: int = 2) -> int:
        """Self-attention keys and values of one song's window: rows (2 with classifier-free
        guidance: conditional and unconditional) x layers x (K, V) x hidden x positions."""
        return rows * self.layers * 2 * self.hidden * positions * bytes_per_value

    def window_positions(self, window_frames: int) -> int:
        """Decoder positions of a window: the start token, the frames and the largest delay."""
        return 1 + window_frames + self.codebooks // self.audio_channels - 1
