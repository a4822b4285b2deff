"""Hand-written wrappers around a real engine: record what it is asked, or fail on cue."""

from __future__ import annotations

import time


class SpyEngine:
    """Delegates to a real engine; records every window request, and fails where told.

    `fail_words`: a generate call whose batch holds a song whose prompt contains one of these
    words raises once that song has `fail_after_windows` windows.
    """

    def __init__(self, inner, fail_words=(), fail_after_windows=0):
        self.inner = inner
        self.fail_words = tuple(fail_words)
        self.fail_after_windows = fail_after_windows
        self.prompt_of = {}
        self.windows_of = {}
        self.calls = []
        self.busy_s = 0.0

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def with_params(self, params):
        """The spy over its engine's view with `params` (the records stay this spy's)."""
        self.inner = self.inner.with_params(params)
        return self

    def _timed(self, method, *args, **kwargs):
        started = time.perf_counter()
        try:
            return method(*args, **kwargs)
        finally:
            self.busy_s += time.perf_counter() - started

    def condition(self, prompt):
        conditioning = self._timed(self.inner.condition, prompt)
        self.prompt_of[id(conditioning)] = prompt
        self.windows_of[id(conditioning)] = 0
        return conditioning

    def generate(self, rows, on_step=None):
        prompts = [self.prompt_of[id(row.conditioning)] for row in rows]
        self.calls.append([(p, row.prompt.clone(), row.new_frames) for p, row in zip(prompts, rows)])
        for row, prompt in zip(rows, prompts):
            if (
                any(word in prompt for word in self.fail_words)
                and self.windows_of[id(row.conditioning)] >= self.fail_after_windows
            ):
                raise RuntimeError(f"injected fault for {prompt!r}")
        codes = self._timed(self.inner.generate, rows, on_step=on_step)
        for row in rows:
            self.windows_of[id(row.conditioning)] += 1
        return codes

    def decode(self, codes, num_samples):
        return self._timed(self.inner.decode, codes, num_samples)

    def generated_prompts(self):
        return [p for call in self.calls for p, _, _ in call]


class FakeEngine:
    """An engine without a model: silent codes and silence of the exact length, instantly.

    For tests of the worker's bookkeeping (spool, leases, checkpoints, records), where what
    matters is which song is stored where, not what it sounds like. `on_generate` runs before
    every batched call (a test sends a signal from there).
    """

    num_codebooks = 2
    codebook_size = 16
    sample_rate = 8000
    frame_rate = 50.0
    hop_length = 160

    def __init__(self, on_generate=None):
        self.on_generate = on_generate
        self.conditioned = []

    def with_params(self, params):
        """This fake itself, with `params`: each test makes its own, so nothing else sees them
        (and what it records stays in the object the test holds)."""
        self.params = params
        return self

    def auto_batch_size(self, window_frames):
        return 4

    def condition(self, prompt):
        import torch

        from worker.engine.generation import Conditioning

        self.conditioned.append(prompt)
        return Conditioning(hidden=torch.zeros(1, 4), mask=torch.ones(1))

    def generate(self, rows, on_step=None):
        import torch

        if self.on_generate is not None:
            self.on_generate(rows)
        return [torch.full((self.num_codebooks, row.new_frames), 3, dtype=torch.long) for row in rows]

    def decode(self, codes, num_samples):
        import numpy as np

        return np.zeros(num_samples, dtype=np.float32)
