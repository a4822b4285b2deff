"""`python -m worker`: options, each with an environment variable so a systemd unit can set it."""

from __future__ import annotations

import argparse
import functools
import logging
import math
import os
import sys
import time
import urllib.parse
from collections.abc import Callable, Sequence
from pathlib import Path

from botocore.exceptions import BotoCoreError, ClientError, ParamValidationError

from . import aws
from .bounds import MAX_HOURS, MAX_PRICE_USD_PER_HOUR
from .identity import default_worker_id, earlier_self
from .leases import MAX_LEASE_S
from .page import PAGE_KEY
from .precision import DTYPE_CHOICES, default_threads
from .prompts import SUFFIXES, Job, PromptFile, read_prompts
from .report import worker_hourly_rate
from .results import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_STOPPED,
    EXIT_TIME_CAP,
    EXIT_USAGE,
    RunResult,
)
from .settings import GenerationParams, MasteringSettings, RunSettings
from .stopping import Stop, stop_signals
from .store import Store, is_s3_uri, local_path, make_folder, open_store
from .windows import WindowSettings

log = logging.getLogger("worker")



class UsageError(Exception):
    pass


def _env(name: str, default: str | None) -> str | None:
    value = os.environ.get(name, "")
    return value if value.strip() else default


def _typed(convert: Callable, name: str, value: str | None, *checks: tuple[Callable, str]):
    """`value` converted, or UsageError naming the option, its variable and the value."""
    if value is None:
        return None
    try:
        result = convert(value)
    except ValueError:
        raise UsageError(f"{name}={value!r} is not a valid {convert.__name__}") from None
    # nan passes every comparison as False, and inf overflows the frame arithmetic.
    if isinstance(result, float) and not math.isfinite(result):
        raise UsageError(f"{name}={value!r}: must be a finite number")
    for check, what in checks:
        if not check(result):
            raise UsageError(f"{name}={value!r}: {what}")
    return result


def _at_most(high: float) -> tuple[Callable, str]:
    return (lambda v: v <= high), f"must be <= {high:g}"


# Bounds a working setting never reaches; beyond them a value is a typo (18000 for 1.8) or
# would overflow tensor sizes and timers.
MAX_BATCH_SIZE = 1024
MAX_WINDOW_S = 600.0
MAX_TOP_K = 1 << 20
MAX_TEMPERATURE = 100.0
MAX_GUIDANCE_SCALE = 100.0
MAX_SEED = (1 << 63) - 1
MAX_POLL_S = 3600.0
MAX_ATTEMPTS = 100
MIN_LEASE_S = 0.5
MAX_GPUS = 64
MAX_THREADS = 4096


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
    return str(value) if isinstance(value, int | str) else f"{value:g}"


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
        ("--worker-id", "MUSICGEN_WORKER_ID", None, "name in records and leases (default: host name)"),
        ("--lease-s", "MUSICGEN_LEASE_S", _shown(run.lease_s), "seconds a claim on a song lasts without renewal (renewed every third of it)"),
        ("--spool-dir", "MUSICGEN_SPOOL_DIR", _shown(run.spool_dir), "finished songs wait here until stored"),
        ("--imds-endpoint", "MUSICGEN_IMDS_ENDPOINT", None, "instance metadata URL; set on EC2 to watch for spot interruptions"),
        ("--imds-poll-s", "MUSICGEN_IMDS_POLL_S", _shown(run.imds_poll_s), "seconds between interruption checks"),
        ("--dtype", "MUSICGEN_DTYPE", _shown(run.dtype), "auto, float16, bfloat16 or float32; auto: bf16 on GPUs with native bf16 (compute capability 8.0+), else fp16; fp32 on the CPU"),
        ("--gpu-count", "MUSICGEN_GPU_COUNT", _shown(run.gpu_count), "GPU workers on this machine: they share its cores and its hourly cost"),
        ("--threads", "MUSICGEN_THREADS", None, "torch CPU threads (default: CPU cores / GPU count, at least 1)"),
        ("--loudness-lufs", "MUSICGEN_LOUDNESS_LUFS", _shown(mastering.loudness_lufs), "integrated loudness of every song in LUFS, or off"),
        ("--fade-out-s", "MUSICGEN_FADE_OUT_S", _shown(mastering.fade_out_s), "seconds of fade-out at each song's end; 0 = off"),
        ("--format", "MUSICGEN_FORMAT", _shown(run.audio_format), "audio file format: wav or flac"),
        ("--max-attempts", "MUSICGEN_MAX_ATTEMPTS", _shown(run.max_attempts), "failed attempts (across workers) after which a song is given up"),
        ("--max-hours", "MUSICGEN_MAX_HOURS", None, "hours after which the worker stops as on a spot notice (checkpoints saved) and exits 5 (default: no cap)"),
    ]
    for flag, env, default, text in options:
        parser.add_argument(flag, default=_env(env, default), help=f"{text} [{env}, default {default}]")
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
        loudness = _typed(
            float, "--loudness-lufs/MUSICGEN_LOUDNESS_LUFS", args.loudness_lufs,
            (lambda v: low <= v <= high, f"must be between {low:g} and {high:g} LUFS, or off"),
        )
    fade = _typed(
        float, "--fade-out-s/MUSICGEN_FADE_OUT_S", args.fade_out_s,
        (lambda v: 0 <= v <= MAX_FADE_OUT_S, f"must be between 0 and {MAX_FADE_OUT_S:g} seconds"),
    )
    return MasteringSettings(loudness_lufs=loudness, fade_out_s=fade)


def audio_format_from(args: argparse.Namespace) -> str:
    value = args.format.strip().lower()
    if value not in SUFFIXES:
        raise UsageError(f"--format/MUSICGEN_FORMAT={args.format!r}: must be one of {', '.join(SUFFIXES)}")
    return value


def settings_from(args: argparse.Namespace) -> tuple[RunSettings, GenerationParams]:
    positive = (lambda v: v > 0, "must be > 0")
    not_negative = (lambda v: v >= 0, "must be >= 0")
    hourly = _typed(float, "--hourly-cost/HOURLY_COST_USD", args.hourly_cost, not_negative, _at_most(MAX_PRICE_USD_PER_HOUR))
    batch = _typed(int, "--batch-size/MUSICGEN_BATCH_SIZE", args.batch_size, not_negative, _at_most(MAX_BATCH_SIZE))
    window_s = _typed(float, "--window-s/MUSICGEN_WINDOW_S", args.window_s, positive, _at_most(MAX_WINDOW_S))
    stride_s = _typed(float, "--stride-s/MUSICGEN_STRIDE_S", args.stride_s, positive)
    # Lower bounds: GenerationParams names them.
    top_k = _typed(int, "--top-k/MUSICGEN_TOP_K", args.top_k, _at_most(MAX_TOP_K))
    temperature = _typed(float, "--temperature/MUSICGEN_TEMPERATURE", args.temperature, _at_most(MAX_TEMPERATURE))
    guidance = _typed(
        float, "--guidance-scale/MUSICGEN_GUIDANCE_SCALE", args.guidance_scale, _at_most(MAX_GUIDANCE_SCALE)
    )
    try:
        window = WindowSettings(window_s=window_s, stride_s=stride_s)
        params = GenerationParams(top_k=top_k, temperature=temperature, guidance_scale=guidance)
    except ValueError as error:
        raise UsageError(str(error)) from None
    if args.dtype not in DTYPE_CHOICES:
        raise UsageError(f"--dtype/MUSICGEN_DTYPE={args.dtype!r}: must be one of {', '.join(DTYPE_CHOICES)}")
    dtype = args.dtype
    at_least_one = (lambda v: v >= 1, "must be >= 1")
    gpu_count = _typed(int, "--gpu-count/MUSICGEN_GPU_COUNT", args.gpu_count, at_least_one, _at_most(MAX_GPUS))
    threads = _typed(int, "--threads/MUSICGEN_THREADS", args.threads, at_least_one, _at_most(MAX_THREADS))
    if threads is None:
        threads = default_threads(usable_cpus(), gpu_count)
    worker_id = args.worker_id
    if worker_id is not None and (not worker_id.strip() or not worker_id.isprintable()):
        raise UsageError(f"--worker-id/MUSICGEN_WORKER_ID={worker_id!r}: must be printable text")
    settings = RunSettings(
        model=args.model,
        # Each GPU's worker is charged its share of the instance (see worker_hourly_rate).
        hourly_cost_usd=worker_hourly_rate(hourly, gpu_count),
        batch_size=batch,
        window=window,
        seed=_typed(int, "--seed/MUSICGEN_SEED", args.seed, (lambda v: abs(v) <= MAX_SEED, "must fit in 63 bits")),
        # Unique per process (host, pid, start time), so two workers on one host never take
        # each other's leases; a rerun still recognises its own dead predecessor's leases.
        worker_id=worker_id or default_worker_id(),
        # The heartbeat renews every third of a lease: a tiny one would hammer the output.
        lease_s=_typed(
            float, "--lease-s/MUSICGEN_LEASE_S", args.lease_s,
            (lambda v: v >= MIN_LEASE_S, f"must be >= {MIN_LEASE_S:g}"), _at_most(MAX_LEASE_S),
        ),
        spool_dir=str(local_path(args.spool_dir)),
        imds_endpoint=_imds_endpoint(args.imds_endpoint),
        imds_poll_s=_typed(float, "--imds-poll-s/MUSICGEN_IMDS_POLL_S", args.imds_poll_s, positive, _at_most(MAX_POLL_S)),
        mastering=mastering_from(args),
        audio_format=audio_format_from(args),
        dtype=dtype,
        threads=threads,
        gpu_count=gpu_count,
        max_attempts=_typed(
            int, "--max-attempts/MUSICGEN_MAX_ATTEMPTS", args.max_attempts, positive, _at_most(MAX_ATTEMPTS)
        ),
        max_hours=_typed(float, "--max-hours/MUSICGEN_MAX_HOURS", args.max_hours, positive, _at_most(MAX_HOURS)),
    )
    _check_model(settings.model)
    return settings, params


def _imds_endpoint(value: str | None) -> str | None:
    if value is None:
        return None
    try:
        parsed = urllib.parse.urlsplit(value)
        parsed.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError:
        parsed = None
    if parsed is None or parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise UsageError(
            f"--imds-endpoint/MUSICGEN_IMDS_ENDPOINT={value!r}: must be an http:// URL "
            "such as http://169.254.169.254"
        )
    return value


def _check_model(model: str) -> None:
    """A hub id is `name` or `org/name`; anything else is meant as a folder, which must exist."""
    if not model.strip():
        raise UsageError("--model/MUSICGEN_MODEL is empty")
    path = local_path(model)
    looks_like_path = (
        model.startswith((".", "/", "~")) or model.count("/") > 1 or "\\" in model or path.exists()
    )
    if not looks_like_path:
        return
    if not path.exists():
        raise UsageError(f"--model/MUSICGEN_MODEL: folder {model!r} does not exist")
    if not path.is_dir():
        raise UsageError(f"--model/MUSICGEN_MODEL: {model!r} is a file, not a save_pretrained folder")
    if not (path / "config.json").is_file():
        raise UsageError(f"--model/MUSICGEN_MODEL: folder {model!r} has no config.json (not a saved model)")


def _check_places(output: str, spool_dir: str) -> None:
    """The spool must be a folder of its own: inside the output (or the output inside it), a
    stored song would be deleted as a spooled copy right after its upload."""
    spool = Path(spool_dir)
    if not is_s3_uri(output):
        out = local_path(output).resolve()
        here = spool.resolve()
        if here == out or here.is_relative_to(out) or out.is_relative_to(here):
            raise UsageError(
                f"the spool {spool_dir!r} and the output {output!r} overlap; "
                "give --spool-dir/MUSICGEN_SPOOL_DIR a folder outside the output"
            )
    try:
        make_folder(spool, "--spool-dir/MUSICGEN_SPOOL_DIR")
    except ValueError as error:
        raise UsageError(str(error)) from None


def main(argv: Sequence[str] | None = None, *, load_engine: Callable | None = None, s3_client=None) -> int:
    """Parse, validate, --check, then run until done or stopped. The exit code (worker/results.py):
    0 when every song is done (written, waited for while other workers hold it, or given up
    after --max-attempts failures), 1 when a song failed here and is neither, 2 for unusable
    input, 3 when a spot interruption notice or SIGTERM stopped the run, 5 when --max-hours
    stopped it (rerun to resume from the checkpoints)."""
    started = time.monotonic()
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
        return check(prompts)
    if not prompts.jobs:
        print(f"error: no valid song in {args.prompts}", file=sys.stderr)
        return EXIT_USAGE
    store = _open_output(args.output, settings.spool_dir, s3_client or aws.s3_client)
    if isinstance(store, int):
        return store
    with stop_signals(settings.imds_endpoint, settings.imds_poll_s, settings.max_hours, started) as stop:
        return _run(args, settings, params, prompts.jobs, store, stop, load_engine)


def _read_prompts(path: str, audio_format: str) -> PromptFile:
    """The prompts file, its problems printed one per line; UsageError when it cannot be read."""
    try:
        prompts = read_prompts(path, audio_format)
    except OSError as error:
        raise UsageError(f"cannot read prompts file {path}: {error.strerror or error}") from None
    for problem in prompts.errors:
        print(f"{path} {problem}", file=sys.stderr)
    return prompts


def check(prompts: PromptFile) -> int:
    """--check: list the songs the prompts file describes; exit 2 on any error or no song."""
    for job in prompts.jobs:
        print(f"line {job.line_no}: {job.file_name} {job.duration_s:g} s: {job.prompt}")
    print(f"{len(prompts.jobs)} songs, {len(prompts.errors)} errors")
    return EXIT_USAGE if prompts.errors or not prompts.jobs else EXIT_OK


def _open_output(output: str, spool_dir: str, s3_client: Callable) -> Store | int:
    """The output's store, or the exit code after saying in one line why it cannot be used."""
    try:
        _check_places(output, spool_dir)
        store = open_store(output, s3_client)
        problem = store.problem()
    except (UsageError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except ParamValidationError as error:  # a bucket name S3 cannot have
        print(f"error: output {output!r}: {error}".replace("\n", " "), file=sys.stderr)
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
        " shared by %d GPU workers)",
        settings.worker_id, os.environ.get("CUDA_VISIBLE_DEVICES", "unset"), settings.threads,
        settings.hourly_cost_usd, settings.hourly_cost_usd * settings.gpu_count, settings.gpu_count,
    )
    try:
        runner.upload_spooled(jobs)
        if load_engine is None:
            from .engine import Engine

            load_engine = functools.partial(Engine.from_pretrained, dtype=settings.dtype)

        def engine():
            from .engine import limit_threads

            limit_threads(settings.threads)
            try:
                loaded = load_engine(settings.model)
            except OSError as error:  # no such folder, or the hub is out of reach
                raise ModelUnavailable(str(error)) from error
            loaded.set_generation_params(**vars(params))
            return loaded

        try:
            runner.run_batch(jobs, engine)
        except ModelUnavailable as error:
            log.error("cannot load the model %s: %s", settings.model, error)
            return EXIT_FAILED
        runner.write_report(jobs)
    except (BotoCoreError, ClientError) as error:
        log.error("cannot use the output %s: %s", args.output, error)
        return EXIT_FAILED
    result = runner.result
    _summarise(result)
    code = result.exit_code(time_cap_hit=stop.time_cap.hit, interrupted=stop.interrupted())
    if code == EXIT_TIME_CAP:
        log.warning(
            "stopped at the time cap of %g h (--max-hours); run again to resume from the checkpoints",
            settings.max_hours,
        )
    elif code == EXIT_STOPPED:
        log.warning("stopped early (spot interruption or shutdown); run again to resume from the checkpoints")
    print(f"Listen: {page_location(store)}", flush=True)
    return code


def _summarise(result: RunResult) -> None:
    not_written = result.not_written()
    log.info(
        "done: %d generated, %d skipped, %d failed%s, %d left to other workers, %d unfinished",
        len(result.generated), len(result.skipped), len(not_written),
        f" ({', '.join(not_written)})" if not_written else "",
        len(result.elsewhere), len(result.unfinished),
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
