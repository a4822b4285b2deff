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
    max_attempts: int = 2  # failed attempts, across workers, after which a song is done
