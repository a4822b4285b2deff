"""Build-time check of the AMI: the worker's own engine loads the baked model on every GPU, picks
the dtype the worker would, and generates one second of audio on each.

Run by packer/musicgen.pkr.hcl as `PYTHONPATH=DIR_WITH_worker_AND_contract python smoke_check.py MODEL_DIR`
(from a checkout: `PYTHONPATH=. python packer/smoke_check.py MODEL_DIR --device cpu`). Prints each
GPU's name, capability, dtype and decoding steps per second, so the build log shows its speed, and
exits 1 (failing the build) when CUDA is missing, the dtype is not the expected one, or the audio
is not finite or not exactly one second long.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Sequence

import numpy as np
import torch

from worker.engine.engine import Engine
from worker.engine.generation import WindowRequest
from worker.engine.precision import DTYPE_CHOICES, choose_dtype, gpu_of

PROMPT = "calm piano with soft drums"


class SmokeCheckFailed(Exception):
    pass


def devices(kind: str) -> list[torch.device]:
    """Every GPU the build instance has (the AMI may run on a larger type), or the CPU."""
    if kind == "cpu":
        return [torch.device("cpu")]
    if not torch.cuda.is_available():
        raise SmokeCheckFailed("CUDA is not available (driver or torch build)")
    return [torch.device("cuda", index) for index in range(torch.cuda.device_count())]


def check_device(model_dir: str, device: torch.device, dtype: str) -> str:
    """One second of audio through the worker's Engine on `device`; returns the report line."""
    gpu = gpu_of(torch.cuda, device.index or 0) if device.type == "cuda" else None
    expected = getattr(torch, choose_dtype(gpu.capability if gpu else None, device.type, dtype))
    engine = Engine.from_pretrained(model_dir, device=device, dtype=dtype)
    where = gpu.describe() if gpu else "the CPU"
    if engine.dtype != expected or next(engine.model.decoder.parameters()).dtype != expected:
        raise SmokeCheckFailed(f"{where}: the engine runs in {engine.dtype}, expected {expected}")

    frames = math.ceil(engine.frame_rate)
    row = WindowRequest(
        conditioning=engine.condition(PROMPT),
        prompt=torch.zeros((engine.num_codebooks, 0), dtype=torch.long),
        new_frames=frames,
        seed=0,
    )
    steps = []
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    started = time.perf_counter()
    (codes,) = engine.generate([row], on_step=steps.append)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - started
    samples = engine.decode(codes, engine.sample_rate)
    # (samples,) for mono checkpoints, (samples, 2) for stereo ones.
    channels = 1 if samples.ndim == 1 else samples.shape[1]
    if samples.shape[0] != engine.sample_rate or channels != engine.audio_channels:
        raise SmokeCheckFailed(
            f"{where}: {samples.shape[0]} samples, expected {engine.sample_rate} "
            f"({channels} channel(s), the model has {engine.audio_channels})"
        )
    if not np.isfinite(samples).all():
        raise SmokeCheckFailed(f"{where}: the audio is not finite")
    name = str(engine.dtype).removeprefix("torch.")
    return (
        f"smoke check passed: 1.00 s of audio at {engine.sample_rate} Hz, {channels} channel(s), on {device} ({where}), "
        f"{name}, {len(steps) / seconds:.1f} decoding steps/s at batch 1"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model_dir", help="folder saved with save_pretrained (weights + processor)")
    parser.add_argument("--device", choices=["cuda", "cpu"], default="cuda",
                        help="cuda: every GPU of this machine (default); cpu: the CPU only")
    parser.add_argument("--dtype", choices=DTYPE_CHOICES, default="auto",
                        help="the worker's --dtype (default auto: the worker's own choice)")
    args = parser.parse_args(argv)
    try:
        for device in devices(args.device):
            print(check_device(args.model_dir, device, args.dtype), flush=True)
    except SmokeCheckFailed as error:
        print(f"smoke check failed: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
