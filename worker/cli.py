"""`python -m worker`: options, each with an environment variable so a systemd unit can set it."""

from __future__ import annotations

import argparse
import functools
import logging
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from botocore.exceptions import BotoCoreError, ClientError, ParamValidationError

from contract import aws
from contract.bucket import PAGE_KEY, is_s3_uri
from contract.defaults import MAX_HOURS, MAX_PRICE_USD_PER_HOUR, MAX_USER_BATCH_SIZE
from contract.prompts import SUFFIXES, Job, PromptFile, read_prompts
from contract.values import number, parse_float, parse_int, quoted

from .identity import default_worker_id, earlier_self
from .leases import MAX_LEASE_S
from .options import (
    MAX_ACCESS_WAIT_S,
    MAX_ATTEMPTS,
    MAX_GPUS,
    MAX_GUIDANCE_SCALE,
    MAX_POLL_S,
    MAX_SEED,
    MAX_TEMPERATURE,
    MAX_THREADS,
    MAX_TOP_K,
    MAX_WINDOW_S,
    MIN_LEASE_S,
    UsageError,
    at_least,
    at_most,
    check_model,
    choice,
    existing,
    imds_endpoint,
    omp_num_threads,
    place,
    spool_folder,
    typed,
    worker_id,
)
from .precision import DEVICE_CHOICES, DTYPE_CHOICES, GpuUnusable, choose_device, choose_threads
from .report import worker_hourly_rate
from .results import (
    EXIT_FAILED,
    EXIT_GPU_UNUSABLE,
    EXIT_OK,
    EXIT_USAGE,
    RunResult,
    what_is_left,
)
from .settings import GenerationParams, MasteringSettings, RunSettings
from .stopping import Stop, stop_signals
from .store import Store, Unusable, local_path, make_folder, open_store
from .windows import WindowSettings

log = logging.getLogger("worker")


def _env(name: str, default: str | None) -> str | None:
    value = os.environ.get(name, "")
    return value if value.strip() else default


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity mask, which a container or systemd may narrow)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _shown(value: float | str | None) -> str:
    """A default as an option's text, written as a user would type it: 30.0 as 30, None as off."""
    if value is None:
        return "off"
    return value if isinstance(value, str) else number(value)


def build_parser() -> argparse.ArgumentParser:
    # Defaults come from the settings' dataclasses, so the two cannot disagree.
    params, window, mastering, run = GenerationParams(), WindowSettings(), MasteringSettings(), RunSettings()
    parser = argparse.ArgumentParser(
        prog="python -m worker",
        description="Generate one long-form MusicGen song per line of a prompts file.",
    )
    options = [
        ("--prompts", "MUSICGEN_PROMPTS", "prompts.txt", "prompts file: PROMPT ; DURATION_S ; FILE_NAME per line"),
        ("--output", "MUSICGEN_OUTPUT", "output/", "s3://bucket/prefix or a local folder"),
        ("--model", "MUSICGEN_MODEL", _shown(run.model), "hub id or a save_pretrained folder"),
        ("--hourly-cost", "HOURLY_COST_USD", f"{run.hourly_cost_usd:.2f}", "USD per hour (the spot max price) for the cost estimate"),
        ("--batch-size", "MUSICGEN_BATCH_SIZE", _shown(run.batch_size), "songs generated together; 0 = from free GPU memory"),
        ("--window-s", "MUSICGEN_WINDOW_S", _shown(window.window_s), "seconds generated per window"),
        ("--stride-s", "MUSICGEN_STRIDE_S", _shown(window.stride_s), "seconds each continuation window adds"),
        ("--top-k", "MUSICGEN_TOP_K", _shown(params.top_k), "sampling: keep the k most likely tokens"),
        ("--temperature", "MUSICGEN_TEMPERATURE", _shown(params.temperature), "sampling temperature"),
        ("--guidance-scale", "MUSICGEN_GUIDANCE_SCALE", _shown(params.guidance_scale), "classifier-free guidance scale"),
        ("--seed", "MUSICGEN_SEED", None, "base seed for reproducible songs (default: random per song)"),
        ("--worker-id", "MUSICGEN_WORKER_ID", None, "name in records and leases (default: HOST:PID:START, unique per process)"),
        ("--lease-s", "MUSICGEN_LEASE_S", _shown(run.lease_s), "seconds a claim on a song lasts without renewal (renewed every third of it)"),
        ("--spool-dir", "MUSICGEN_SPOOL_DIR", _shown(run.spool_dir), "finished songs wait here until stored"),
        ("--imds-endpoint", "MUSICGEN_IMDS_ENDPOINT", None, "instance metadata URL; set on EC2 to watch for spot interruptions"),
        ("--imds-poll-s", "MUSICGEN_IMDS_POLL_S", _shown(run.imds_poll_s), "seconds between interruption checks"),
        ("--device", "MUSICGEN_DEVICE", _shown(run.device), "auto, cuda or cpu; cuda: the GPU or exit 6 before any song is claimed (the worker units set it); auto: the GPU when torch sees one, else the CPU"),
        ("--dtype", "MUSICGEN_DTYPE", _shown(run.dtype), "auto, float16, bfloat16 or float32 (any case); auto: bf16 on GPUs with native bf16 (compute capability 8.0+), else fp16; fp32 on the CPU"),
        ("--gpu-count", "MUSICGEN_GPU_COUNT", _shown(run.gpu_count), "GPU workers on this machine: they share its cores and its hourly cost"),
        ("--threads", "MUSICGEN_THREADS", None, "torch CPU threads (default: OMP_NUM_THREADS if set, else CPU cores / GPU count, at least 1)"),
        ("--loudness-lufs", "MUSICGEN_LOUDNESS_LUFS", _shown(mastering.loudness_lufs), "integrated loudness of every song in LUFS, or off"),
        ("--fade-out-s", "MUSICGEN_FADE_OUT_S", _shown(mastering.fade_out_s), "seconds of fade-out at each song's end; 0 = off"),
        ("--format", "MUSICGEN_FORMAT", _shown(run.audio_format), "audio file format: wav or flac (any case)"),
        ("--max-attempts", "MUSICGEN_MAX_ATTEMPTS", _shown(run.max_attempts), "failed attempts (across workers) after which a song is given up"),
        ("--max-hours", "MUSICGEN_MAX_HOURS", None, "hours after which the worker stops as on a spot notice (checkpoints saved) and exits 5 (default: no cap)"),
        ("--access-wait-s", "MUSICGEN_ACCESS_WAIT_S", _shown(run.access_wait_s), "seconds a 403 from the S3 output is retried at startup, while a new instance's permissions propagate"),
    ]
    for flag, env, default, text in options:
        # An option without a default describes it in its text: "(default: ...)".
        where = env if default is None else f"{env}, default {default}"
        parser.add_argument(flag, default=_env(env, default), help=f"{text} [{where}]")
    parser.add_argument("--check", action="store_true", help="validate the prompts file only; exit 2 on any error")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    return parser


# A target outside these bounds is a typo (-140, +14) rather than a level anyone masters to.
LOUDNESS_RANGE_LUFS = (-50.0, -5.0)
MAX_FADE_OUT_S = 60.0


def mastering_from(args: argparse.Namespace) -> MasteringSettings:
    low, high = LOUDNESS_RANGE_LUFS
    loudness = None
    if args.loudness_lufs.strip().lower() != "off":
        loudness = typed(
            parse_float, "--loudness-lufs/MUSICGEN_LOUDNESS_LUFS", args.loudness_lufs,
            (lambda v: low <= v <= high, f"must be between {low:g} and {high:g} LUFS, or off"),
        )
    fade = typed(
        parse_float, "--fade-out-s/MUSICGEN_FADE_OUT_S", args.fade_out_s,
        (lambda v: 0 <= v <= MAX_FADE_OUT_S, f"must be between 0 and {MAX_FADE_OUT_S:g} seconds"),
    )
    return MasteringSettings(loudness_lufs=loudness, fade_out_s=fade)


def audio_format_from(args: argparse.Namespace) -> str:
    return choice("--format/MUSICGEN_FORMAT", args.format, list(SUFFIXES))


def device_from(args: argparse.Namespace) -> str:
    return choice("--device/MUSICGEN_DEVICE", args.device, list(DEVICE_CHOICES))


def settings_from(args: argparse.Namespace) -> tuple[RunSettings, GenerationParams]:
    positive = (lambda v: v > 0, "must be > 0")
    not_negative = (lambda v: v >= 0, "must be >= 0")
    hourly = typed(parse_float, "--hourly-cost/HOURLY_COST_USD", args.hourly_cost, not_negative, at_most(MAX_PRICE_USD_PER_HOUR))
    batch = typed(parse_int, "--batch-size/MUSICGEN_BATCH_SIZE", args.batch_size, not_negative, at_most(MAX_USER_BATCH_SIZE))
    window, params = _generation_from(args)
    dtype = choice("--dtype/MUSICGEN_DTYPE", args.dtype, DTYPE_CHOICES)
    gpu_count = typed(parse_int, "--gpu-count/MUSICGEN_GPU_COUNT", args.gpu_count, at_least(1), at_most(MAX_GPUS))
    threads = choose_threads(
        typed(parse_int, "--threads/MUSICGEN_THREADS", args.threads, at_least(1), at_most(MAX_THREADS)),
        omp_num_threads(),
        usable_cpus(),
        gpu_count,
    )
    settings = RunSettings(
        model=check_model(args.model),
        # Each GPU's worker is charged its share of the instance (see worker_hourly_rate).
        hourly_cost_usd=worker_hourly_rate(hourly, gpu_count),
        batch_size=batch,
        window=window,
        seed=typed(parse_int, "--seed/MUSICGEN_SEED", args.seed, (lambda v: abs(v) <= MAX_SEED, "must fit in 63 bits")),
        # Unique per process (host, pid, start time), so two workers on one host never take
        # each other's leases; a rerun still recognises its own dead predecessor's leases.
        worker_id=worker_id(args.worker_id) or default_worker_id(),
        # The heartbeat renews every third of a lease: a tiny one would hammer the output.
        lease_s=typed(
            parse_float, "--lease-s/MUSICGEN_LEASE_S", args.lease_s, at_least(MIN_LEASE_S), at_most(MAX_LEASE_S)
        ),
        spool_dir=spool_folder(args.spool_dir),
        imds_endpoint=imds_endpoint(args.imds_endpoint),
        imds_poll_s=typed(parse_float, "--imds-poll-s/MUSICGEN_IMDS_POLL_S", args.imds_poll_s, positive, at_most(MAX_POLL_S)),
        mastering=mastering_from(args),
        audio_format=audio_format_from(args),
        dtype=dtype,
        device=device_from(args),
        threads=threads.count,
        threads_source=threads.source,
        gpu_count=gpu_count,
        max_attempts=typed(
            parse_int, "--max-attempts/MUSICGEN_MAX_ATTEMPTS", args.max_attempts, positive, at_most(MAX_ATTEMPTS)
        ),
        max_hours=typed(parse_float, "--max-hours/MUSICGEN_MAX_HOURS", args.max_hours, positive, at_most(MAX_HOURS)),
        access_wait_s=typed(
            parse_float, "--access-wait-s/MUSICGEN_ACCESS_WAIT_S", args.access_wait_s, not_negative,
            at_most(MAX_ACCESS_WAIT_S),
        ),
    )
    return settings, params


def _generation_from(args: argparse.Namespace) -> tuple[WindowSettings, GenerationParams]:
    """Windows and sampling; each bound is checked here, where the message can name its option."""
    positive = (lambda v: v > 0, "must be > 0")
    window_s = typed(parse_float, "--window-s/MUSICGEN_WINDOW_S", args.window_s, positive, at_most(MAX_WINDOW_S))
    stride_s = typed(
        parse_float, "--stride-s/MUSICGEN_STRIDE_S", args.stride_s, positive,
        (lambda v: v <= window_s, f"must be <= the window, --window-s/MUSICGEN_WINDOW_S={number(window_s)}"),
    )
    top_k = typed(parse_int, "--top-k/MUSICGEN_TOP_K", args.top_k, at_least(1), at_most(MAX_TOP_K))
    temperature = typed(
        parse_float, "--temperature/MUSICGEN_TEMPERATURE", args.temperature, positive, at_most(MAX_TEMPERATURE)
    )
    guidance = typed(
        parse_float, "--guidance-scale/MUSICGEN_GUIDANCE_SCALE", args.guidance_scale,
        at_least(1), at_most(MAX_GUIDANCE_SCALE),
    )
    return (
        WindowSettings(window_s=window_s, stride_s=stride_s),
        GenerationParams(top_k=top_k, temperature=temperature, guidance_scale=guidance),
    )


def _check_places(output: str, spool_dir: str) -> None:
    """The spool must be a folder of its own: inside the output (or the output inside it), a
    stored song would be deleted as a spooled copy right after its upload."""
    name = "--spool-dir/MUSICGEN_SPOOL_DIR"
    spool = Path(spool_dir)
    if not is_s3_uri(output):
        existing("--output/MUSICGEN_OUTPUT", output)
        out = local_path(output).resolve()
        here = spool.resolve()
        if here == out or here.is_relative_to(out) or out.is_relative_to(here):
            raise UsageError(
                f"the spool {quoted(spool_dir)} and the output {quoted(output)} overlap; "
                f"give {name} a folder outside the output"
            )
    try:
        make_folder(spool, name)
    except ValueError as error:
        raise UsageError(str(error)) from None


def main(
    argv: Sequence[str] | None = None,
    *,
    load_engine: Callable | None = None,
    s3_client=None,
    clock: Callable[[], float] = time.monotonic,
) -> int:
    """Parse, validate, --check, then run until done or stopped. The exit code (worker/results.py,
    docs/worker.md#exit-codes): 0 when every song is done (written, held by a worker that renews
    its lease, or given up after --max-attempts failures), 1 when a song failed here and is
    neither, 2 for unusable input, 3 when the instance is stopping (a spot notice, Auto
    Scaling's Terminated, a system shutdown), 5 at the time cap, 6 when the GPU is unusable,
    130 / 143 when SIGINT / SIGTERM stopped it while the instance is not stopping. `clock` is
    what the time cap (--max-hours) is measured with, from the moment main starts."""
    started = clock()
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(message)s",
        stream=sys.stderr,
        force=True,
    )
    try:
        settings, params = settings_from(args)
        prompts = _read_prompts(args.prompts, settings.audio_format)
    except UsageError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_USAGE
    if args.check:
        return check(prompts, args.prompts)
    if not prompts.jobs:
        print(f"error: {no_songs(prompts, args.prompts)}", file=sys.stderr)
        return EXIT_USAGE
    store = _open_output(args.output, settings, s3_client or aws.s3_client)
    if isinstance(store, int):
        return store
    with stop_signals(
        settings.imds_endpoint, settings.imds_poll_s, settings.max_hours, started, clock=clock
    ) as stop:
        return _run(args, settings, params, prompts.jobs, store, stop, load_engine)


def _read_prompts(path: str, audio_format: str) -> PromptFile:
    """The prompts file, its problems printed one per line; UsageError when it cannot be read."""
    try:
        prompts = read_prompts(place("--prompts/MUSICGEN_PROMPTS", path), audio_format)
    except OSError as error:
        raise UsageError(f"cannot read prompts file {quoted(path)}: {error.strerror or error}") from None
    for problem in prompts.errors:
        print(f"{path} {problem}", file=sys.stderr)
    return prompts


def check(prompts: PromptFile, path: str) -> int:
    """--check: list the songs the prompts file describes; exit 2 on any error or no song."""
    for job in prompts.jobs:
        print(f"line {job.line_no}: {job.file_name} {job.duration_s:g} s: {job.prompt}")
    print(f"{len(prompts.jobs)} songs, {len(prompts.errors)} errors")
    if not prompts.jobs:
        print(f"error: {no_songs(prompts, path)}", file=sys.stderr)
    return EXIT_USAGE if prompts.errors or not prompts.jobs else EXIT_OK


def no_songs(prompts: PromptFile, path: str) -> str:
    """Why a prompts file without a valid song is refused."""
    if prompts.errors:
        return f"no valid song in {path}: every song line has an error (listed above)"
    return (
        f"no valid song in {path}: it has only blank and comment lines; "
        "a song is one line PROMPT ; DURATION_S ; FILE_NAME"
    )


def _open_output(output: str, settings: RunSettings, s3_client: Callable) -> Store | int:
    """The output's store, or the exit code after saying in one line why it cannot be used:
    2 when it names nothing usable, 1 when it exists but cannot be written or read."""
    try:
        place("--output/MUSICGEN_OUTPUT", output)
        _check_places(output, settings.spool_dir)
        store = open_store(output, s3_client, settings.access_wait_s)
        problem = store.problem()
    except Unusable as error:
        print(f"error: output {output}: {error}", file=sys.stderr)
        return EXIT_FAILED
    except (UsageError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except ParamValidationError:  # botocore checks a bucket name before it sends anything
        print(
            f"error: output {quoted(output)}: not a bucket name S3 accepts (3 to 63 lower-case "
            "letters, digits, dots and hyphens)",
            file=sys.stderr,
        )
        return EXIT_USAGE
    except (BotoCoreError, ClientError) as error:
        print(f"error: cannot use the output {output}: {error}", file=sys.stderr)
        return EXIT_FAILED
    if problem is not None:
        print(f"error: output {output}: {problem}", file=sys.stderr)
        return EXIT_USAGE
    return store


def _run(
    args: argparse.Namespace,
    settings: RunSettings,
    params: GenerationParams,
    jobs: list[Job],
    store: Store,
    stop: Stop,
    load_engine: Callable | None,
) -> int:
    device = _usable_device(settings)
    if device is None:
        return EXIT_GPU_UNUSABLE
    # The audio libraries load here, and torch with the engine, after the input has been checked.
    from .runner import ModelUnavailable, Runner

    runner = Runner(
        settings,
        store,
        should_stop=stop.requested,
        earlier_self=(lambda owner: False) if args.worker_id else (
            lambda owner: earlier_self(owner, settings.worker_id)
        ),
    )
    log.info(
        "worker %s: CUDA_VISIBLE_DEVICES=%s, %d CPU threads, cost rate $%.4f/h (the instance's $%g/h"
        " shared by %d GPU workers); threads from %s",
        settings.worker_id, os.environ.get("CUDA_VISIBLE_DEVICES", "unset"), settings.threads,
        settings.hourly_cost_usd, settings.hourly_cost_usd * settings.gpu_count, settings.gpu_count,
        settings.threads_source,
    )
    try:
        runner.upload_spooled(jobs)
        if load_engine is None:
            from .engine import Engine

            load_engine = functools.partial(Engine.from_pretrained, device=device, dtype=settings.dtype)

        def engine():
            from .engine import limit_threads

            limit_threads(settings.threads)
            try:
                loaded = load_engine(settings.model)
            except OSError as error:  # no such folder, or the hub is out of reach
                raise ModelUnavailable(str(error)) from error
            return loaded.with_params(params)

        try:
            runner.run_batch(jobs, engine)
        except ModelUnavailable as error:
            log.error("cannot load the model %s: %s", settings.model, error)
            return EXIT_FAILED
        runner.write_report(jobs)
    except (BotoCoreError, ClientError, OSError) as error:  # OSError: a full or failing disk
        log.error("cannot use the output %s: %s", args.output, error)
        return EXIT_FAILED
    result = runner.result
    _summarise(result)
    code = result.exit_code(stop.code())
    if result.unfinished:
        log.warning("%s; %s", stop.cause.why, what_is_left(result, code, settings.max_hours))
    print(f"Listen: {page_location(store)}", flush=True)
    return code


def _usable_device(settings: RunSettings):
    """The torch.device to generate on, chosen (and a GPU self-tested) before anything is
    claimed, uploaded or loaded; None after saying on one line, the last, why the GPU is
    unusable."""
    import torch

    try:
        return choose_device(torch, settings.device, settings.dtype)
    except GpuUnusable as error:
        print(f"error: GPU unusable: {error}", file=sys.stderr, flush=True)
        return None


def _summarise(result: RunResult) -> None:
    not_written = result.not_written()
    log.info(
        "done: %d generated, %d skipped, %d failed%s, %d left to live workers, %d unfinished",
        len(result.generated), len(result.skipped), len(not_written),
        f" ({', '.join(not_written)})" if not_written else "",
        len(result.left_to), len(result.unfinished),
    )
    for name, failure in result.given_up.items():
        log.error("given up: %s failed %d times, last: %s", name, failure.attempts, failure.error)
    for name in not_written:
        if name not in result.given_up:
            log.error("not written: %s: %s", name, result.why_failed.get(name, "see above"))


def page_location(store: Store) -> str:
    """Where to open the listening page: a file:// URL for a local output, else its S3 URI."""
    where = store.uri(PAGE_KEY)
    if where.startswith("s3://"):
        return f"{where} (`python launcher download` copies it with the songs)"
    return Path(where).resolve().as_uri()
