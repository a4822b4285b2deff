"""Upper-bound cost of a batch, from requested audio length and an assumed generation speed."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from contract.defaults import usd, usd_amount
from launcher.gpus import InstanceGpus

# Audio seconds generated per wall-clock second on one GPU, a T4 (g4dn.xlarge), with musicgen-small.
# An assumption, chosen on the slow side: MusicGen produces 50 tokens per audio second, and
# long songs are built from overlapping windows whose overlap is generated again. Measure your
# own: requested_duration_s / generation_time_s in a finished batch's cost_report.csv.
DEFAULT_REALTIME_FACTOR = 0.5

# Minutes an instance is paid for before it generates anything: boot, bootstrap (clone,
# dependencies) and loading the model onto the GPU. Also an assumption, rounded up.
DEFAULT_BOOT_OVERHEAD_MIN = 10.0


@dataclass(frozen=True)
class Estimate:
    audio_s: float
    generation_h: float
    overhead_h: float
    instance_h: float
    wall_h: float
    cost_usd: float
    gpus: int = 1  # GPUs generating at once per instance


def estimate_batch(
    audio_s: float,
    *,
    realtime_factor: float,
    max_price: float,
    worker_count: int,
    boot_overhead_min: float,
    gpus_per_instance: int = 1,
    songs: int | None = None,
) -> Estimate:
    """Instance hours and cost at the max price, which a spot instance never exceeds.

    The real-time factor is per GPU; each instance runs one worker per GPU, so songs run
    `gpus_per_instance` at a time per instance (fewer when there are fewer `songs` than GPUs,
    and the idle GPUs are still paid). Generation hours are shared between workers; every
    worker pays its own boot overhead. The wall time assumes the songs divide evenly.
    """
    generation_h = audio_s / realtime_factor / 3600
    busy = gpus_per_instance
    if songs is not None:
        busy = max(1, min(gpus_per_instance, math.ceil(songs / worker_count)))
    overhead_h = worker_count * boot_overhead_min / 60
    instance_h = generation_h / busy + overhead_h
    return Estimate(
        audio_s=audio_s,
        generation_h=generation_h,
        overhead_h=overhead_h,
        instance_h=instance_h,
        wall_h=generation_h / busy / worker_count + boot_overhead_min / 60,
        cost_usd=instance_h * max_price,
        gpus=busy,
    )


def format_estimate(
    estimate: Estimate,
    *,
    realtime_factor: float,
    max_price: float,
    worker_count: int,
    boot_overhead_min: float,
    gpus: InstanceGpus | None = None,
    other_types: Sequence[InstanceGpus] = (),
) -> list[str]:
    """`gpus` is the type the estimate counts (of several, the one with the fewest GPUs, which
    takes longest); `other_types` are the group's other types, listed for what they hold."""
    lines = [f"Estimate (upper bound, at the max price): {usd_amount(estimate.cost_usd)}"]
    if gpus is None or gpus.count == 1:
        lines.append(
            f"  {estimate.audio_s / 60:.1f} min of audio at {realtime_factor:g} audio-s per second"
            f" = {estimate.generation_h:.2f} h of generation"
        )
    else:
        lines.append(
            f"  {estimate.audio_s / 60:.1f} min of audio at {realtime_factor:g} audio-s per second per GPU"
            f" = {estimate.generation_h:.2f} GPU-h of generation,"
            f" {estimate.generation_h / estimate.gpus:.2f} h on {estimate.gpus} GPUs at once"
        )
    if gpus is not None:
        lines.append(f"  {gpus.describe()}")
    if other_types:
        lines += [f"  or {other.describe()}" for other in other_types]
        lines.append(f"  (counted at {gpus.instance_type if gpus else 'one GPU'}, the fewest GPUs)")
    lines += [
        (
            f"  + {worker_count} × {boot_overhead_min:g} min boot and model load"
            f" = {estimate.instance_h:.2f} instance-h × {usd(max_price)}/h"
        ),
        f"  about {estimate.wall_h:.1f} h until the last song is in the bucket",
    ]
    return lines
