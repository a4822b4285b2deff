"""Build-time check of the AMI: the baked model folder loads on the GPU and generates audio.

Run by packer/musicgen.pkr.hcl as `python smoke_check.py MODEL_DIR`; exits non-zero (failing the
build) when CUDA is missing or the audio is empty or not finite.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import numpy as np
import torch
from transformers import AutoProcessor, MusicgenForConditionalGeneration


def generate_one_second(model_dir: str, device: str) -> tuple[np.ndarray, int]:
    """One second of audio (samples, channels) for a short prompt, and its sampling rate."""
    # float16 is what the worker runs on the GPU; CPU kernels need float32.
    dtype = torch.float16 if device.startswith("cuda") else torch.float32
    processor = AutoProcessor.from_pretrained(model_dir)
    model = MusicgenForConditionalGeneration.from_pretrained(model_dir, dtype=dtype).to(device)
    inputs = processor(text=["calm piano with soft drums"], padding=True, return_tensors="pt").to(
        device
    )
    frame_rate = model.config.audio_encoder.frame_rate
    # The delay pattern needs as many extra steps as the largest codebook delay: K - 1 for mono,
    # K / 2 - 1 for stereo checkpoints, whose left/right codebook pairs share a delay.
    channels = model.decoder.config.audio_channels
    with torch.inference_mode():
        audio = model.generate(
            **inputs, max_new_tokens=frame_rate + model.decoder.num_codebooks // channels - 1
        )
    return audio[0].float().cpu().numpy().T, model.config.audio_encoder.sampling_rate


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model_dir", help="folder saved with save_pretrained (weights + processor)")
    parser.add_argument("--device", default="cuda", help="torch device (default cuda)")
    args = parser.parse_args(argv)

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("smoke check failed: CUDA is not available (driver or torch build)", file=sys.stderr)
        return 1
    samples, sampling_rate = generate_one_second(args.model_dir, args.device)
    if samples.shape[0] == 0 or not np.isfinite(samples).all():
        print(
            f"smoke check failed: {samples.size} samples, finite={np.isfinite(samples).all()}",
            file=sys.stderr,
        )
        return 1
    where = torch.cuda.get_device_name() if args.device.startswith("cuda") else args.device
    print(
        f"smoke check passed: {samples.shape[0] / sampling_rate:.2f} s of audio at {sampling_rate} Hz,"
        f" {samples.shape[1]} channel(s), on {where}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
