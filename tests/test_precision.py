"""The dtype choice per GPU generation, the device choice and the GPU self-test, the CPU thread
split, the per-GPU cost rate, and the engine end to end in bf16 and fp16 on the CPU."""

from __future__ import annotations

import json
import logging
from dataclasses import asdict

import numpy as np
import pytest
import torch

from contract.bucket import record_key
from contract.records import REPORT_COLUMNS, SongRecord
from tests.engines import FakeEngine
from worker.cli import main, parse_options, settings_from
from worker.engine.engine import device_dtype, pick_device
from worker.engine.generation import WindowRequest
from worker.engine.precision import (
    Gpu,
    GpuUnusable,
    choose_device,
    choose_dtype,
    default_threads,
    gpu_of,
)
from worker.output.report import parse_report, worker_hourly_rate

# (GPU, compute capability): the auto choice.
GPUS = [
    ("Tesla V100-SXM2-16GB", (7, 0), "float16"),
    ("Tesla T4", (7, 5), "float16"),
    ("NVIDIA A100-SXM4-40GB", (8, 0), "bfloat16"),
    ("NVIDIA A10G", (8, 6), "bfloat16"),
    ("NVIDIA L4", (8, 9), "bfloat16"),
    ("NVIDIA H100 80GB HBM3", (9, 0), "bfloat16"),
]


@pytest.mark.parametrize(("name", "capability", "expected"), GPUS)
def test_auto_dtype_is_bf16_only_with_native_bf16(name, capability, expected):
    assert choose_dtype(capability, "cuda") == expected


@pytest.mark.parametrize(
    ("capability", "device", "override", "expected"),
    [
        (None, "cpu", "auto", "float32"),
        (None, "cpu", "bfloat16", "bfloat16"),
        (None, "cpu", "float16", "float16"),
        ((7, 5), "cuda", "bfloat16", "bfloat16"),
        ((9, 0), "cuda", "float16", "float16"),
        ((8, 6), "cuda", "float32", "float32"),
    ],
)
def test_an_explicit_dtype_wins(capability, device, override, expected):
    assert choose_dtype(capability, device, override) == expected


def test_unknown_dtype_is_refused():
    with pytest.raises(ValueError, match="float8"):
        choose_dtype((8, 0), "cuda", "float8")


class FakeCuda:
    """torch.cuda's device queries, answering for one GPU of the table."""

    def __init__(self, name: str, capability: tuple[int, int]) -> None:
        self.name, self.capability = name, capability
        self.asked: list[int] = []

    def is_available(self) -> bool:
        return True

    def is_bf16_supported(self) -> bool:
        return True  # what the pinned torch says on every one of these, T4 included

    def get_device_capability(self, index: int = 0) -> tuple[int, int]:
        self.asked.append(index)
        return self.capability

    def get_device_name(self, index: int = 0) -> str:
        return self.name


def test_gpu_of_reads_the_device_it_is_asked_about():
    cuda = FakeCuda("Tesla T4", (7, 5))
    assert gpu_of(cuda, 3) == Gpu("Tesla T4", (7, 5))
    assert cuda.asked == [3]
    assert Gpu("Tesla T4", (7, 5)).describe() == "Tesla T4 (compute capability 7.5)"


@pytest.mark.parametrize(("name", "capability", "expected"), GPUS)
def test_the_worker_dtype_choice_logs_the_gpu(monkeypatch, caplog, name, capability, expected):
    fake = FakeCuda(name, capability)
    for query in ("is_available", "is_bf16_supported", "get_device_capability", "get_device_name"):
        monkeypatch.setattr(torch.cuda, query, getattr(fake, query))
    with caplog.at_level(logging.INFO, logger="worker.engine.engine"):
        dtype = device_dtype(torch.device("cuda", 0))
    assert dtype == getattr(torch, expected)
    major, minor = capability
    assert f"precision: {expected} chosen on {name} (compute capability {major}.{minor})" in caplog.text


def test_the_cpu_computes_in_float32_unless_asked(caplog):
    with caplog.at_level(logging.INFO, logger="worker.engine.engine"):
        assert pick_device() == (torch.device("cpu"), torch.float32)
        assert pick_device(dtype="bfloat16") == (torch.device("cpu"), torch.bfloat16)
    assert "precision: float32 chosen on the CPU" in caplog.text
    assert "precision: bfloat16 as asked on the CPU" in caplog.text


@pytest.mark.parametrize(
    ("cpus", "gpus", "threads"),
    [(4, 1, 4), (48, 4, 12), (192, 8, 24), (8, 3, 2), (2, 4, 1), (1, 1, 1), (16, 0, 16)],
)
def test_threads_are_the_cores_shared_by_the_gpus(cpus, gpus, threads):
    assert default_threads(cpus, gpus) == threads


@pytest.mark.parametrize(
    ("hourly", "gpus", "rate"),
    [(0.40, 1, 0.40), (4.0, 4, 1.0), (3.912, 4, 0.978), (32.77, 8, 4.09625), (0.0, 2, 0.0)],
)
def test_each_gpu_worker_is_charged_its_share_of_the_instance(hourly, gpus, rate):
    assert worker_hourly_rate(hourly, gpus) == pytest.approx(rate)


def settings(*argv: str):
    return settings_from(parse_options(list(argv)))[0]


def test_options_and_environment_set_dtype_threads_and_gpu_count(monkeypatch):
    assert (settings().dtype, settings().gpu_count, settings().hourly_cost_usd) == ("auto", 1, 0.40)
    chosen = settings("--dtype", "float16", "--threads", "3", "--gpu-count", "4", "--hourly-cost", "3.2")
    assert (chosen.dtype, chosen.threads, chosen.gpu_count) == ("float16", 3, 4)
    assert chosen.hourly_cost_usd == pytest.approx(0.8)
    monkeypatch.setenv("MUSICGEN_DTYPE", "bfloat16")
    monkeypatch.setenv("MUSICGEN_THREADS", "5")
    monkeypatch.setenv("MUSICGEN_GPU_COUNT", "2")
    assert (settings().dtype, settings().threads, settings().gpu_count) == ("bfloat16", 5, 2)


def test_default_threads_split_this_machines_cpus(monkeypatch):
    monkeypatch.setattr("worker.cli.usable_cpus", lambda: 48)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert settings("--gpu-count", "4").threads == 12
    assert settings().threads == 48


@pytest.mark.parametrize(
    ("argv", "env", "message"),
    [
        (["--dtype", "half"], {}, "error: --dtype/MUSICGEN_DTYPE='half': must be one of auto, float16, bfloat16, float32"),
        ([], {"MUSICGEN_DTYPE": "fp16"}, "error: --dtype/MUSICGEN_DTYPE='fp16': must be one of"),
        (["--threads", "0"], {}, "error: --threads/MUSICGEN_THREADS='0': must be >= 1"),
        ([], {"MUSICGEN_GPU_COUNT": "two"}, "error: --gpu-count/MUSICGEN_GPU_COUNT='two' is not a valid int"),
        (["--gpu-count", "0"], {}, "error: --gpu-count/MUSICGEN_GPU_COUNT='0': must be >= 1"),
    ],
)
def test_bad_precision_options_exit_2_before_the_model_loads(refused, argv, env, message):
    err = refused(argv, env)
    assert message in err and len(err.splitlines()) == 1


@pytest.mark.parametrize(
    ("omp", "argv", "threads", "source"),
    [
        ("3", [], 3, "OMP_NUM_THREADS"),
        ("2,1", [], 2, "OMP_NUM_THREADS"),  # one count per nesting level; torch runs at the first
        ("3", ["--threads", "5"], 5, "--threads/MUSICGEN_THREADS"),
        (None, ["--gpu-count", "4"], 12, "48 usable CPUs / 4 GPU workers"),
        (" ", [], 48, "48 usable CPUs / 1 GPU workers"),  # empty counts as unset
    ],
)
def test_the_model_runs_with_omp_num_threads_unless_the_option_says_otherwise(
    tmp_path, monkeypatch, capsys, omp, argv, threads, source
):
    """OMP_NUM_THREADS is the thread count every OpenMP program takes from its environment
    (libgomp's manual: a comma-separated list, one count per nesting level); the worker's
    start line says where its count came from."""
    monkeypatch.setattr("worker.cli.usable_cpus", lambda: 48)
    if omp is None:
        monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    else:
        monkeypatch.setenv("OMP_NUM_THREADS", omp)
    prompts = tmp_path / "p.txt"
    prompts.write_text("calm piano ; 1 ; calm\n")
    loaded = []

    def load(model):
        loaded.append(torch.get_num_threads())
        return FakeEngine()

    before = torch.get_num_threads()
    try:
        places = ["--output", str(tmp_path / "out"), "--spool-dir", str(tmp_path / "spool")]
        assert main(["--prompts", str(prompts), *places, *argv], load_engine=load) == 0
    finally:
        torch.set_num_threads(before)
    assert loaded == [threads]
    start_line = next(line for line in capsys.readouterr().err.splitlines() if "CPU threads" in line)
    assert f", {threads} CPU threads, " in start_line
    assert start_line.endswith(f"; threads from {source}")


@pytest.mark.parametrize(
    ("omp", "message"),
    [
        ("four", "error: OMP_NUM_THREADS='four' is not a valid int"),
        ("0", "error: OMP_NUM_THREADS='0': must be >= 1"),
        ("100000", "error: OMP_NUM_THREADS='100000': must be <= 4096"),
    ],
)
def test_an_unusable_omp_num_threads_exits_2_in_one_line(refused, omp, message):
    assert refused([], {"OMP_NUM_THREADS": omp}) == message + "\n"


def test_a_gpu_worker_charges_its_share_and_limits_its_threads(
    tiny_model_dir, loaded_tiny_engine, tmp_path, monkeypatch
):
    prompts = tmp_path / "p.txt"
    prompts.write_text("calm piano ; 1 ; calm\n")
    loaded = []

    def load(model):
        loaded.append(torch.get_num_threads())
        return loaded_tiny_engine

    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)  # more than the worker is told to use
        argv = ["--prompts", str(prompts), "--output", str(tmp_path / "out"), "--model", str(tiny_model_dir),
                "--window-s", "4", "--stride-s", "2.5", "--hourly-cost", "2.0", "--gpu-count", "4",
                "--threads", "1"]
        assert main(argv, load_engine=load) == 0
    finally:
        torch.set_num_threads(before)
    assert loaded == [1]
    (row,) = parse_report((tmp_path / "out" / "cost_report.csv").read_bytes())
    assert list(row) == list(REPORT_COLUMNS)
    # The cost uses a quarter of the instance's price (the record keeps it unrounded).
    record = SongRecord.from_json((tmp_path / "out" / record_key("calm.wav")).read_bytes())
    assert record.estimated_cost_usd == pytest.approx(record.generation_time_s / 3600 * 0.5)
    assert record.estimated_cost_usd > 0


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_the_engine_runs_end_to_end_in_half_precision_on_the_cpu(tiny_engine_in, dtype):
    engine = tiny_engine_in(dtype)
    assert engine.dtype == getattr(torch, dtype)
    assert next(engine.model.decoder.parameters()).dtype == getattr(torch, dtype)
    k = engine.num_codebooks
    first = engine.generate([WindowRequest(engine.condition("calm piano"), torch.zeros((k, 0), dtype=torch.long), 40, 1)])[0]
    nxt = engine.generate([WindowRequest(engine.condition("calm piano"), first[:, -10:], 30, 2)])[0]
    codes = torch.cat([first, nxt], dim=1)
    vocab = engine.model.decoder.config.vocab_size
    assert codes.shape == (k, 70)
    assert int(codes.min()) >= 0 and int(codes.max()) < vocab
    samples = engine.decode(codes, 70 * engine.hop_length - 17)
    assert samples.shape == (70 * engine.hop_length - 17,)
    assert samples.dtype == np.float32 and np.isfinite(samples).all()


# -- the device: no silent CPU fallback, and a GPU self-test before anything is claimed ------


class StandInTorch:
    """torch as the worker's device choice uses it, with a GPU that behaves as told: `cuda`
    answers like torch.cuda for one GPU (its init, capability and name), and a tensor made "on
    the GPU" is made on the CPU, or raises `alloc_error`; `wrong` makes every product NaN (a
    GPU that computes garbage). What torch raises is documented in worker/engine/precision.py.

    The CPU tensors are float32 whatever dtype was asked (it is recorded in `made`): sums of
    ones are exact in every dtype here, and a CPU multiplies half-precision matrices many times
    slower than single-precision ones."""

    def __init__(self, gpu=("Tesla T4", (7, 5)), init_error=None, alloc_error=None, wrong=False):
        self.cuda = FakeCuda(*gpu)
        self.cuda.init = self._init
        self.init_error, self.alloc_error, self.wrong = init_error, alloc_error, wrong
        self.made = []

    def __getattr__(self, name):
        return getattr(torch, name)

    def _init(self):
        if self.init_error is not None:
            raise self.init_error

    def device(self, kind, index=None):
        return (kind, index)

    def ones(self, shape, dtype, device):
        if self.alloc_error is not None:
            raise self.alloc_error
        self.made.append((dtype, device))
        return torch.full(shape, float("nan") if self.wrong else 1.0, dtype=torch.float32)


# c10/cuda/CUDAFunctions.cpp, raised by torch.cuda.init() on a machine without the driver.
NO_DRIVER = (
    "Found no NVIDIA driver on your system. Please check that you have an NVIDIA GPU and installed a "
    "driver from http://www.nvidia.com/Download/index.aspx"
)
CUDA_OOM = (
    "CUDA out of memory. Tried to allocate 2.00 MiB. GPU 0 has a total capacity of 14.57 GiB of which\n"
    "1.06 MiB is free. Of the allocated memory 14.31 GiB is allocated by PyTorch."
)
ECC = (
    "CUDA error: uncorrectable ECC error encountered\n"
    "CUDA kernel errors might be asynchronously reported at some other API call, so the stacktrace below might be incorrect.\n"
    "For debugging consider passing CUDA_LAUNCH_BLOCKING=1"
)


@pytest.mark.parametrize(
    ("stand_in", "reason"),
    [
        (StandInTorch(init_error=AssertionError("Torch not compiled with CUDA enabled")),
         "Torch not compiled with CUDA enabled"),
        (StandInTorch(init_error=RuntimeError(NO_DRIVER)), NO_DRIVER),
        (StandInTorch(init_error=RuntimeError("No CUDA GPUs are available")), "No CUDA GPUs are available"),
        (StandInTorch(alloc_error=torch.OutOfMemoryError(CUDA_OOM)), " ".join(CUDA_OOM.split())),
        (StandInTorch(alloc_error=torch.AcceleratorError(ECC)), " ".join(ECC.split())),
        (StandInTorch(wrong=True),
         "Tesla T4 (compute capability 7.5) multiplied two 1024x1024 matrices of ones in float16 wrongly"),
    ],
)
def test_an_unusable_gpu_is_named_with_torchs_reason_on_one_line(stand_in, reason):
    with pytest.raises(GpuUnusable) as raised:
        choose_device(stand_in, "cuda", "auto")
    assert str(raised.value) == reason and "\n" not in str(raised.value)


@pytest.mark.parametrize(
    ("gpu", "dtype", "multiplied_in"),
    [(("Tesla T4", (7, 5)), "auto", torch.float16), (("NVIDIA L4", (8, 9)), "auto", torch.bfloat16),
     (("NVIDIA L4", (8, 9)), "float32", torch.float32)],
)
def test_the_self_test_multiplies_on_the_gpu_in_the_dtype_the_worker_will_use(gpu, dtype, multiplied_in):
    stand_in = StandInTorch(gpu)
    assert choose_device(stand_in, "cuda", dtype) == ("cuda", 0)
    assert stand_in.made == [(multiplied_in, ("cuda", 0))]


class NoCuda:
    """torch whose CUDA side must not be touched at all."""

    def __getattr__(self, name):
        if name == "cuda":
            raise AssertionError("CUDA was touched")
        return getattr(torch, name)


def test_cpu_never_touches_cuda_and_auto_takes_the_cpu_only_without_a_gpu():
    assert choose_device(NoCuda(), "cpu", "auto") == torch.device("cpu")
    unavailable = StandInTorch()
    unavailable.cuda.is_available = lambda: False
    assert choose_device(unavailable, "auto", "auto") == ("cpu", None) and unavailable.made == []
    seen = StandInTorch()
    assert choose_device(seen, "auto", "auto") == ("cuda", 0) and seen.made  # a GPU it sees is self-tested
    with pytest.raises(GpuUnusable, match="No CUDA GPUs are available"):
        choose_device(StandInTorch(init_error=RuntimeError("No CUDA GPUs are available")), "auto", "auto")


@pytest.mark.parametrize(("value", "expected"), [("CUDA", "cuda"), (" Cpu ", "cpu"), ("auto", "auto")])
def test_the_device_option_is_case_insensitive(monkeypatch, value, expected):
    monkeypatch.setenv("MUSICGEN_DEVICE", value)
    assert settings().device == expected
    assert settings("--device", value.upper()).device == expected


def test_an_unknown_device_exits_2_before_the_model_loads(refused):
    err = refused(["--device", "gpu"], {})
    assert err == "error: --device/MUSICGEN_DEVICE='gpu': must be one of auto, cuda, cpu\n"


def test_a_failing_gpu_self_test_exits_6_before_anything_is_claimed_uploaded_or_loaded(
    tmp_path, capsys, monkeypatch
):
    """--device auto (the local default) with a GPU torch sees but that cannot run: exit 6, the
    reason the last line on stderr; the spooled song stays unuploaded, no lease is written, and
    the model is never loaded."""
    out, spool = tmp_path / "out", tmp_path / "spool"
    prompts = tmp_path / "p.txt"
    prompts.write_text("calm piano ; 1 ; calm\n")
    spool.mkdir()
    (spool / "calm.wav").write_bytes(b"RIFF")
    record = SongRecord("calm.wav", "calm piano", 1.0, 2.0, 0.001, "calm.wav", 7, "m", 1, 1, "a", "b", "w")
    (spool / "calm.wav.record.json").write_text(json.dumps({**asdict(record), "output": str(out.resolve())}))
    busy = "CUDA error: CUDA-capable device(s) is/are busy or unavailable\nCompile with `TORCH_USE_CUDA_DSA` to enable device-side assertions."
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "init", lambda: (_ for _ in ()).throw(torch.AcceleratorError(busy)))

    def never(model):
        raise AssertionError("the model was loaded")

    argv = ["--prompts", str(prompts), "--output", str(out), "--spool-dir", str(spool), "--model", "m"]
    assert main(argv, load_engine=never) == 6
    err = capsys.readouterr().err
    assert err.splitlines()[-1] == f"error: GPU unusable: {' '.join(busy.split())}"
    assert sorted(p.name for p in spool.iterdir()) == ["calm.wav", "calm.wav.record.json"]
    assert list(out.iterdir()) == []  # no song, no lease, no report


def test_the_cpu_device_loads_and_generates_without_touching_cuda(tiny_model_dir, tmp_path, monkeypatch):
    """--device cpu through the worker's own model loading: every way into CUDA raises."""

    def touched(*args, **kwargs):
        raise AssertionError("CUDA was touched")

    for name in ("init", "is_available", "device_count", "get_device_capability", "get_device_name", "mem_get_info"):
        monkeypatch.setattr(torch.cuda, name, touched)
    prompts = tmp_path / "p.txt"
    prompts.write_text("calm piano ; 1 ; calm\n")
    argv = ["--prompts", str(prompts), "--output", str(tmp_path / "out"), "--model", str(tiny_model_dir),
            "--window-s", "4", "--stride-s", "2.5", "--device", "cpu", "--threads", "1"]
    before = torch.get_num_threads()
    try:
        assert main(argv) == 0
    finally:
        torch.set_num_threads(before)
    assert (tmp_path / "out" / "calm.wav").is_file()
