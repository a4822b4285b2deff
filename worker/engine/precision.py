"""Which device and floating-point type a worker computes in, whether its GPU works, and how
many CPU threads it may use.

Pure functions (no torch import, so options are checked before the model loads) plus thin seams
over `torch` and `torch.cuda` that take the module as a parameter.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

DTYPE_CHOICES = ("auto", "float16", "bfloat16", "float32")
# auto: the GPU when torch sees one, else the CPU (a local run); cuda: the GPU or exit 6 (the
# worker units); cpu: never touch CUDA.
DEVICE_CHOICES = ("auto", "cuda", "cpu")
# The self-test's square matrices: 2 MiB in half precision, a few milliseconds on any GPU. A
# product of all-ones matrices holds `size` everywhere, exactly in every dtype (a power of two).
SELF_TEST_SIZE = 1024
# A reason stays one line of at most this many characters (the boot records keep 500).
MAX_REASON_CHARS = 400


class GpuUnusable(Exception):
    """CUDA cannot be used; the message is torch's reason, on one line."""

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


def one_line(error: BaseException) -> str:
    """An exception's message on one line (CUDA's span several), shortened to MAX_REASON_CHARS."""
    text = " ".join(str(error).split()) or type(error).__name__
    return text if len(text) <= MAX_REASON_CHARS else text[: MAX_REASON_CHARS - 3] + "..."


def gpu_self_test(torch: Any, index: int, dtype: str) -> Gpu:
    """Initialise CUDA, then allocate two matrices on GPU `index` and multiply them in the dtype
    the worker will use (`dtype`: a name from DTYPE_CHOICES); returns the GPU. `torch` is the
    torch module or a stand-in.

    Raises GpuUnusable with torch's own reason: torch.cuda.init() raises AssertionError "Torch
    not compiled with CUDA enabled" in a CPU build, and RuntimeError from the driver ("Found no
    NVIDIA driver on your system ...", "No CUDA GPUs are available", "CUDA driver version is
    insufficient ..."); an allocation raises torch.OutOfMemoryError ("CUDA out of memory ..."),
    a kernel torch.AcceleratorError or RuntimeError ("CUDA error: ...")."""
    try:
        torch.cuda.init()
        gpu = gpu_of(torch.cuda, index)
        name = choose_dtype(gpu.capability, "cuda", dtype)
        ones = torch.ones((SELF_TEST_SIZE, SELF_TEST_SIZE), dtype=getattr(torch, name), device=torch.device("cuda", index))
        # .item() copies the answer to the host, so it waits for the kernel and raises its error.
        right = bool((ones @ ones).eq(SELF_TEST_SIZE).all().item())
    except Exception as error:  # whatever torch raises, the GPU is unusable
        raise GpuUnusable(one_line(error)) from error
    if not right:
        raise GpuUnusable(f"{gpu.describe()} multiplied two {SELF_TEST_SIZE}x{SELF_TEST_SIZE} matrices of ones in {name} wrongly")
    log.info("GPU self-test passed on %s in %s", gpu.describe(), name)
    return gpu


def choose_device(torch: Any, choice: str, dtype: str) -> Any:
    """The torch.device to compute on. `choice` is from DEVICE_CHOICES: cpu never touches CUDA;
    cuda self-tests GPU 0 (the worker's CUDA_VISIBLE_DEVICES makes its own GPU the first) and
    raises GpuUnusable; auto takes the CPU only where torch sees no GPU, and self-tests one it
    sees."""
    if choice not in DEVICE_CHOICES:
        raise ValueError(f"device must be one of {', '.join(DEVICE_CHOICES)}, got {choice!r}")
    if choice == "cpu" or (choice == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    gpu_self_test(torch, 0, dtype)
    return torch.device("cuda", 0)


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
