"""How many songs fit on a GPU at once: pure arithmetic shared by the engine's default batch and
the launcher's estimate."""

from __future__ import annotations

from .defaults import MAX_AUTO_BATCH_SIZE
from .modelsize import DecoderShape

# The rest is headroom for activations, the prompt's prefill and the allocator.
MEMORY_SHARE = 0.7


def bytes_per_song(shape: DecoderShape, *, window_frames: int, dtype_bytes: int, guidance: bool) -> int:
    """The self-attention KV cache of a full window for the conditional and the unconditional row
    (allocated once per window), plus the float32 logits and sampling buffers."""
    rows = 2 if guidance else 1
    kv_cache = shape.kv_cache_bytes(shape.window_positions(window_frames), rows, dtype_bytes)
    sampling = rows * shape.codebooks * shape.vocab * 4 * 4
    return kv_cache + sampling


def batch_for_memory(free_bytes: int, per_song_bytes: int) -> int:
    """Songs per batch in MEMORY_SHARE of the free memory, between 1 and MAX_AUTO_BATCH_SIZE."""
    return max(1, min(MAX_AUTO_BATCH_SIZE, int(MEMORY_SHARE * free_bytes) // per_song_bytes))
