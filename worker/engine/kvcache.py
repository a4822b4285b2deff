"""A self-attention KV cache allocated once per window and filled in place.

transformers' DynamicCache grows by concatenation: every decoding step copies each layer's whole
cache into freshly allocated memory, so a window of T steps moves O(T^2) bytes (T is 1500 for
30 s windows). A window's length is known before its first step, so the engine allocates the
cache once per window; attention reads a view of the filled part, so it never attends over
unused positions and needs no extra mask.
"""

from __future__ import annotations

import torch
from transformers.cache_utils import Cache, DynamicCache, DynamicLayer, EncoderDecoderCache


class WindowLayer(DynamicLayer):
    """One decoder layer's keys and values in buffers of `capacity` positions.

    It keeps DynamicLayer's contract (`keys`/`values` hold exactly the positions seen so far, so
    the causal mask and the positional offset come out the same) and only changes where they live.
    """

    def __init__(self, capacity: int) -> None:
        super().__init__()
        self.capacity = capacity

    def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        self.dtype, self.device = key_states.dtype, key_states.device
        batch, heads = key_states.shape[:2]
        self._keys = key_states.new_empty((batch, heads, self.capacity, key_states.shape[-1]))
        self._values = value_states.new_empty((batch, heads, self.capacity, value_states.shape[-1]))
        self.keys, self.values = self._keys[:, :, :0], self._values[:, :, :0]
        self.is_initialized = True

    def update(
        self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        start = self.keys.shape[-2]
        stop = start + key_states.shape[-2]
        if stop > self.capacity:
            raise ValueError(f"window cache holds {self.capacity} positions, got {stop}")
        self._keys[:, :, start:stop] = key_states
        self._values[:, :, start:stop] = value_states
        self.keys, self.values = self._keys[:, :, :stop], self._values[:, :, :stop]
        return self.keys, self.values


def window_cache(num_layers: int, capacity: int) -> EncoderDecoderCache:
    """Self-attention in preallocated buffers; the cross-attention cache is written once, on the
    window's first call, so the default one is already right."""
    self_attention = Cache(layers=[WindowLayer(capacity) for _ in range(num_layers)])
    return EncoderDecoderCache(self_attention, DynamicCache())
