"""Which floating-point type a worker computes in, and how many CPU threads it may use.

Pure functions (no torch import, so options are checked before the model loads) plus one thin
seam over `torch.cuda` that takes the module as a parameter.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

DTYPE_CHOICES = ("auto", "float16", "bfloat16", "float32")

# Ampere (8.0) is the first generation with bf16 tensor cores. torch's is_bf16_supported()
# also counts emulation and answers True on a T4 (7.5), where bf16 runs several times slower
# than fp16, so the capability decides, not that call.
NATIVE_BF16_CAPABILITY = (8, 0)


@dataclass(frozen=True)
class Gpu:
    name: str
    capability: tuple[int, int]

    def describe(self) -> str:
        major, minor = self.capability
        return f"{self.name} (compute capability {major}.{minor})"


def choose_dtype(capability: tuple[int, int] | None, device_type: str, override: str = "auto") -> str:
    """The dtype name to compute in: an explicit override wins; otherwise bf16 where the GPU has
    native bf16 (capability >= 8.0), fp16 on older GPUs, fp32 on the CPU."""
    if override not in DTYPE_CHOICES:
        raise ValueError(f"dtype must be one of {', '.join(DTYPE_CHOICES)}, got {override!r}")
    if override != "auto":
        return override
    if device_type != "cuda":
        return "float32"
    if capability is None:
        raise ValueError("a CUDA device needs its compute capability to choose a dtype")
    return "bfloat16" if tuple(capability) >= NATIVE_BF16_CAPABILITY else "float16"


def gpu_of(cuda: Any, index: int) -> Gpu:
    """Name and compute capability of CUDA device `index`; `cuda` is `torch.cuda` or a fake."""
    major, minor = cuda.get_device_capability(index)
    return Gpu(name=cuda.get_device_name(index), capability=(int(major), int(minor)))


def default_threads(cpu_count: int, gpu_count: int) -> int:
    """torch CPU threads per worker: the machine's cores shared evenly by its GPU workers.

    One process per GPU each opening one OpenMP thread per core oversubscribes the cores, and
    busy-waiting OpenMP threads then slow every process down.
    """
    return max(1, cpu_count // max(1, gpu_count))


@dataclass(frozen=True)
class Threads:
    count: int
    source: str  # where the count came from, as the worker's start line says it


def choose_threads(option: int | None, omp_num_threads: int | None, cpu_count: int, gpu_count: int) -> Threads:
    """The worker's own option wins; then OMP_NUM_THREADS, the variable every OpenMP program (torch's
    CPU kernels included) reads for its thread count, so a user who limited it on a busy machine
    is obeyed; then the machine's cores shared by its GPU workers."""
    if option is not None:
        return Threads(option, "--threads/MUSICGEN_THREADS")
    if omp_num_threads is not None:
        return Threads(omp_num_threads, "OMP_NUM_THREADS")
    return Threads(
        default_threads(cpu_count, gpu_count), f"{cpu_count} usable CPUs / {max(1, gpu_count)} GPU workers"
    )
