"""Settings fixed for a whole run (torch-free, so validating input needs no model)."""

from __future__ import annotations

from dataclasses import dataclass, field

from contract.defaults import (
    DEFAULT_AUDIO_FORMAT,
    DEFAULT_BATCH_SIZE,
    DEFAULT_LEASE_S,
    DEFAULT_MAX_ATTEMPTS,
    DEFAULT_MAX_PRICE,
    DEFAULT_MODEL,
)
from worker.windows import WindowSettings


@dataclass(frozen=True)
class GenerationParams:
    top_k: int = 250
    temperature: float = 1.0
    guidance_scale: float = 3.0

    def __post_init__(self) -> None:
        if self.top_k < 1:
            raise ValueError(f"top_k must be >= 1, got {self.top_k}")
        if self.temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")
        if self.guidance_scale < 1:
            raise ValueError(f"guidance scale must be >= 1, got {self.guidance_scale}")


@dataclass(frozen=True)
class MasteringSettings:
    """What is done to a song's decoded audio before it is written (see worker/output/audio.py)."""

    loudness_lufs: float | None = -14.0  # None: keep the decoder's level
    fade_out_s: float = 3.0  # 0: no fade


@dataclass(frozen=True)
class RunSettings:
    """A run's settings; the defaults are the CLI's (worker/cli.py shows them in its help)."""

    model: str = DEFAULT_MODEL  # a hub id or a save_pretrained folder
    # One GPU worker's share of the instance's hourly price (the CLI's --hourly-cost is the
    # instance's; with one GPU the two are the same).
    hourly_cost_usd: float = DEFAULT_MAX_PRICE
    batch_size: int = DEFAULT_BATCH_SIZE  # 0: from free GPU memory
    window: WindowSettings = field(default_factory=WindowSettings)
    seed: int | None = None
    worker_id: str = "worker"
    lease_s: float = DEFAULT_LEASE_S
    spool_dir: str = ".spool"
    imds_endpoint: str | None = None  # set on EC2: watch for spot interruption notices
    imds_poll_s: float = 5.0
    mastering: MasteringSettings = field(default_factory=MasteringSettings)
    audio_format: str = DEFAULT_AUDIO_FORMAT
    dtype: str = "auto"  # a name from worker.engine.precision.DTYPE_CHOICES
    device: str = "auto"  # a name from worker.engine.precision.DEVICE_CHOICES
    threads: int = 1  # torch CPU threads of this process
    threads_source: str = "default"  # where `threads` came from, for the start line
    gpu_count: int = 1  # GPU workers on this machine, sharing its cores and its hourly cost
    max_attempts: int = DEFAULT_MAX_ATTEMPTS  # failed attempts, across workers, after which a song is done
    max_hours: float | None = None  # stop as on a spot notice after this many hours (None: never)
    # Seconds a 403 from the output's bucket is retried at startup (IAM is eventually consistent).
    access_wait_s: float = 120.0
