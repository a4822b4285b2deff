"""Settings fixed for a whole run (torch-free, so validating input needs no model)."""

from __future__ import annotations

from dataclasses import dataclass, field

from .windows import WindowSettings


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
    """What is done to a song's decoded audio before it is written (see worker/audio.py)."""

    loudness_lufs: float | None = -14.0  # None: keep the decoder's level
    fade_out_s: float = 3.0  # 0: no fade


@dataclass(frozen=True)
class RunSettings:
    model: str
    hourly_cost_usd: float
    batch_size: int
    window: WindowSettings = field(default_factory=WindowSettings)
    seed: int | None = None
    worker_id: str = "worker"
    lease_s: float = 120.0
    spool_dir: str = ".spool"
    imds_endpoint: str | None = None  # set on EC2: watch for spot interruption notices
    imds_poll_s: float = 5.0
    mastering: MasteringSettings = field(default_factory=MasteringSettings)
    audio_format: str = "wav"
    dtype: str = "auto"  # a name from worker.precision.DTYPE_CHOICES
    threads: int = 1  # torch CPU threads of this process
    gpu_count: int = 1  # GPU workers on this machine, sharing its cores and its hourly cost
    max_attempts: int = 2  # failed attempts, across workers, after which a song is done
    max_hours: float | None = None  # stop as on a spot notice after this many hours (None: never)
