"""`python -m worker`: options, each declared once with the environment variable a systemd unit
sets it by, and read by a click parameter type that refuses a bad value in one line."""

from __future__ import annotations

import functools
import logging
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import click
from botocore.exceptions import BotoCoreError, ClientError, ParamValidationError

from contract import aws
from contract.bucket import PAGE_KEY, is_s3_uri
from contract.defaults import MAX_HOURS, MAX_PRICE_USD_PER_HOUR, MAX_USER_BATCH_SIZE
from contract.prompts import SUFFIXES, Job, PromptFile, read_prompts
from contract.values import number, parse_float, parse_int, quoted
from worker.engine.precision import (
    DEVICE_CHOICES,
    DTYPE_CHOICES,
    GpuUnusable,
    choose_device,
    choose_threads,
)
from worker.instance.stopping import Stop, stop_signals
from worker.options import (
    MAX_ACCESS_WAIT_S,
    MAX_ATTEMPTS,
    MAX_FADE_OUT_S,
    MAX_GPUS,
    MAX_GUIDANCE_SCALE,
    MAX_POLL_S,
    MAX_SEED,
    MAX_TEMPERATURE,
    MAX_THREADS,
    MAX_TOP_K,
    MAX_WINDOW_S,
    MIN_LEASE_S,
    Checked,
    UsageError,
    at_least,
    at_most,
    check_model,
    existing,
    imds_endpoint,
    loudness,
    numeric,
    omp_num_threads,
    one_of,
    option_name,
    place,
    spool_folder,
    worker_id,
)
from worker.output.report import worker_hourly_rate
from worker.run.results import (
    EXIT_FAILED,
    EXIT_GPU_UNUSABLE,
    EXIT_OK,
    EXIT_USAGE,
    RunResult,
    what_is_left,
)
from worker.settings import GenerationParams, MasteringSettings, RunSettings
from worker.store.identity import default_worker_id, earlier_self
from worker.store.leases import MAX_LEASE_S
from worker.store.store import Store, Unusable, local_path, make_folder, open_store
from worker.windows import WindowSettings

log = logging.getLogger("worker")
PROG = "python -m worker"


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


class _Option(click.Option):
    """An option whose variable counts as unset when blank, as systemd's Environment= may leave it."""

    def resolve_envvar_value(self, ctx: click.Context) -> str | None:
        value = super().resolve_envvar_value(ctx)
        return value if value and value.strip() else None


def _options() -> list[click.Option]:
    """Every option: its flag, its variable, its default as a user would type it, its type."""
    # Defaults come from the settings' dataclasses, so the two cannot disagree.
    params, window, mastering, run = GenerationParams(), WindowSettings(), MasteringSettings(), RunSettings()
    positive = (lambda v: v > 0, "must be > 0")
    not_negative = (lambda v: v >= 0, "must be >= 0")
    text = Checked(place, "path")
    table = [
        ("--prompts", "MUSICGEN_PROMPTS", "prompts.txt", text, "prompts file: PROMPT ; DURATION_S ; FILE_NAME per line"),
        ("--output", "MUSICGEN_OUTPUT", "output/", text, "s3://bucket/prefix or a local folder"),
        ("--model", "MUSICGEN_MODEL", _shown(run.model), Checked(check_model), "hub id or a save_pretrained folder"),
        ("--hourly-cost", "HOURLY_COST_USD", f"{run.hourly_cost_usd:.2f}", numeric(parse_float, not_negative, at_most(MAX_PRICE_USD_PER_HOUR)), "USD per hour (the spot max price) for the cost estimate"),
        ("--batch-size", "MUSICGEN_BATCH_SIZE", _shown(run.batch_size), numeric(parse_int, not_negative, at_most(MAX_USER_BATCH_SIZE)), "songs generated together; 0 = from free GPU memory"),
        ("--window-s", "MUSICGEN_WINDOW_S", _shown(window.window_s), numeric(parse_float, positive, at_most(MAX_WINDOW_S)), "seconds generated per window"),
        ("--stride-s", "MUSICGEN_STRIDE_S", _shown(window.stride_s), numeric(parse_float, positive), "seconds each continuation window adds"),
        ("--top-k", "MUSICGEN_TOP_K", _shown(params.top_k), numeric(parse_int, at_least(1), at_most(MAX_TOP_K)), "sampling: keep the k most likely tokens"),
        ("--temperature", "MUSICGEN_TEMPERATURE", _shown(params.temperature), numeric(parse_float, positive, at_most(MAX_TEMPERATURE)), "sampling temperature"),
        ("--guidance-scale", "MUSICGEN_GUIDANCE_SCALE", _shown(params.guidance_scale), numeric(parse_float, at_least(1), at_most(MAX_GUIDANCE_SCALE)), "classifier-free guidance scale"),
        ("--seed", "MUSICGEN_SEED", None, numeric(parse_int, (lambda v: abs(v) <= MAX_SEED, "must fit in 63 bits")), "base seed for reproducible songs (default: random per song)"),
        ("--worker-id", "MUSICGEN_WORKER_ID", None, Checked(worker_id), "name in records and leases (default: HOST:PID:START, unique per process)"),
        # The heartbeat renews every third of a lease: a tiny one would hammer the output.
        ("--lease-s", "MUSICGEN_LEASE_S", _shown(run.lease_s), numeric(parse_float, at_least(MIN_LEASE_S), at_most(MAX_LEASE_S)), "seconds a claim on a song lasts without renewal (renewed every third of it)"),
        ("--spool-dir", "MUSICGEN_SPOOL_DIR", _shown(run.spool_dir), Checked(spool_folder, "path"), "finished songs wait here until stored"),
        ("--imds-endpoint", "MUSICGEN_IMDS_ENDPOINT", None, Checked(imds_endpoint, "url"), "instance metadata URL; set on EC2 to watch for spot interruptions"),
        ("--imds-poll-s", "MUSICGEN_IMDS_POLL_S", _shown(run.imds_poll_s), numeric(parse_float, positive, at_most(MAX_POLL_S)), "seconds between interruption checks"),
        ("--device", "MUSICGEN_DEVICE", _shown(run.device), one_of(list(DEVICE_CHOICES)), "auto, cuda or cpu; cuda: the GPU or exit 6 before any song is claimed (the worker units set it); auto: the GPU when torch sees one, else the CPU"),
        ("--dtype", "MUSICGEN_DTYPE", _shown(run.dtype), one_of(DTYPE_CHOICES), "auto, float16, bfloat16 or float32 (any case); auto: bf16 on GPUs with native bf16 (compute capability 8.0+), else fp16; fp32 on the CPU"),
        ("--gpu-count", "MUSICGEN_GPU_COUNT", _shown(run.gpu_count), numeric(parse_int, at_least(1), at_most(MAX_GPUS)), "GPU workers on this machine: they share its cores and its hourly cost"),
        ("--threads", "MUSICGEN_THREADS", None, numeric(parse_int, at_least(1), at_most(MAX_THREADS)), "torch CPU threads (default: OMP_NUM_THREADS if set, else CPU cores / GPU count, at least 1)"),
        ("--loudness-lufs", "MUSICGEN_LOUDNESS_LUFS", _shown(mastering.loudness_lufs), Checked(loudness), "integrated loudness of every song in LUFS, or off"),
        ("--fade-out-s", "MUSICGEN_FADE_OUT_S", _shown(mastering.fade_out_s), numeric(parse_float, (lambda v: 0 <= v <= MAX_FADE_OUT_S, f"must be between 0 and {MAX_FADE_OUT_S:g} seconds")), "seconds of fade-out at each song's end; 0 = off"),
        ("--format", "MUSICGEN_FORMAT", _shown(run.audio_format), one_of(list(SUFFIXES)), "audio file format: wav or flac (any case)"),
        ("--max-attempts", "MUSICGEN_MAX_ATTEMPTS", _shown(run.max_attempts), numeric(parse_int, positive, at_most(MAX_ATTEMPTS)), "failed attempts (across workers) after which a song is given up"),
        ("--max-hours", "MUSICGEN_MAX_HOURS", None, numeric(parse_float, positive, at_most(MAX_HOURS)), "hours after which the worker stops as on a spot notice (checkpoints saved) and exits 5 (default: no cap)"),
        ("--access-wait-s", "MUSICGEN_ACCESS_WAIT_S", _shown(run.access_wait_s), numeric(parse_float, not_negative, at_most(MAX_ACCESS_WAIT_S)), "seconds a 403 from the S3 output is retried at startup, while a new instance's permissions propagate"),
    ]
    options = []
    for flag, env, default, kind, text in table:
        # An option without a default describes it in its text: "(default: ...)".
        where = env if default is None else f"{env}, default {default}"
        options.append(
            _Option([flag], envvar=env, default=default, type=kind, metavar=flag[2:].replace("-", "_").upper(), help=f"{text} [{where}]")
        )
    return options


command = click.Command(
    PROG,
    params=[
        *_options(),
        click.Option(["--check"], is_flag=True, help="validate the prompts file only; exit 2 on any error"),
        click.Option(["-v", "--verbose"], is_flag=True, help="debug logging"),
    ],
    help="Generate one long-form MusicGen song per line of a prompts file.",
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)


def parse_options(argv: Sequence[str]) -> dict[str, Any]:
    """The options by name, each read and checked by its type; UsageError of one line otherwise.
    --help prints the help and raises click.exceptions.Exit."""
    try:
        with command.make_context(PROG, list(argv)) as ctx:
            return dict(ctx.params)
    except click.BadParameter as error:
        raise UsageError(error.message) from None
    except click.NoSuchOption as error:
        raise UsageError(f"unknown option {quoted(error.option_name)} (see {PROG} --help)") from None
    except click.UsageError as error:
        raise UsageError(f"{error.format_message()} (see {PROG} --help)") from None


def _name(option: str) -> str:
    """An option as its refusals name it, from its one declaration."""
    return option_name(next(param for param in command.params if param.name == option))


def settings_from(options: dict[str, Any]) -> tuple[RunSettings, GenerationParams]:
    """The run's settings from the options parse_options read; the checks that weigh one option
    against another (the stride against the window) or the machine (threads) are here."""
    window, params = _generation_from(options)
    gpu_count = options["gpu_count"]
    threads = choose_threads(options["threads"], omp_num_threads(), usable_cpus(), gpu_count)
    settings = RunSettings(
        model=options["model"],
        # Each GPU's worker is charged its share of the instance (see worker_hourly_rate).
        hourly_cost_usd=worker_hourly_rate(options["hourly_cost"], gpu_count),
        batch_size=options["batch_size"],
        window=window,
        seed=options["seed"],
        # Unique per process (host, pid, start time), so two workers on one host never take
        # each other's leases; a rerun still recognises its own dead predecessor's leases.
        worker_id=options["worker_id"] or default_worker_id(),
        lease_s=options["lease_s"],
        spool_dir=options["spool_dir"],
        imds_endpoint=options["imds_endpoint"],
        imds_poll_s=options["imds_poll_s"],
        mastering=MasteringSettings(loudness_lufs=options["loudness_lufs"], fade_out_s=options["fade_out_s"]),
        audio_format=options["format"],
        dtype=options["dtype"],
        device=options["device"],
        threads=threads.count,
        threads_source=threads.source,
        gpu_count=gpu_count,
        max_attempts=options["max_attempts"],
        max_hours=options["max_hours"],
        access_wait_s=options["access_wait_s"],
    )
    return settings, params


def _generation_from(options: dict[str, Any]) -> tuple[WindowSettings, GenerationParams]:
    window_s, stride_s = options["window_s"], options["stride_s"]
    if stride_s > window_s:
        raise UsageError(
            f"{_name('stride_s')}={quoted(number(stride_s))}: must be <= the window, "
            f"{_name('window_s')}={number(window_s)}"
        )
    return (
        WindowSettings(window_s=window_s, stride_s=stride_s),
        GenerationParams(
            top_k=options["top_k"],
            temperature=options["temperature"],
            guidance_scale=options["guidance_scale"],
        ),
    )


def _check_places(output: str, spool_dir: str) -> None:
    """The spool must be a folder of its own: inside the output (or the output inside it), a
    stored song would be deleted as a spooled copy right after its upload."""
    name = _name("spool_dir")
    spool = Path(spool_dir)
    if not is_s3_uri(output):
        existing(_name("output"), output)
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
    """Parse, validate, --check, then run until done or stopped. The exit code (worker/run/results.py,
    docs/worker.md#exit-codes): 0 when every song is done (written, held by a worker that renews
    its lease, or given up after --max-attempts failures), 1 when a song failed here and is
    neither, 2 for unusable input, 3 when the instance is stopping (a spot notice, Auto
    Scaling's Terminated, a system shutdown), 5 at the time cap, 6 when the GPU is unusable,
    130 / 143 when SIGINT / SIGTERM stopped it while the instance is not stopping. `clock` is
    what the time cap (--max-hours) is measured with, from the moment main starts."""
    started = clock()
    try:
        options = parse_options(sys.argv[1:] if argv is None else argv)
    except click.exceptions.Exit as shown:  # --help
        return shown.exit_code
    except UsageError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_USAGE
    logging.basicConfig(
        level=logging.DEBUG if options["verbose"] else logging.INFO,
        format="%(asctime)s %(levelname)s %(message)s",
        stream=sys.stderr,
        force=True,
    )
    try:
        settings, params = settings_from(options)
        prompts = _read_prompts(options["prompts"], settings.audio_format)
    except UsageError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_USAGE
    if options["check"]:
        return check(prompts, options["prompts"])
    if not prompts.jobs:
        print(f"error: {no_songs(prompts, options['prompts'])}", file=sys.stderr)
        return EXIT_USAGE
    store = _open_output(options["output"], settings, s3_client or aws.s3_client)
    if isinstance(store, int):
        return store
    with stop_signals(
        settings.imds_endpoint, settings.imds_poll_s, settings.max_hours, started, clock=clock
    ) as stop:
        return _run(options, settings, params, prompts.jobs, store, stop, load_engine)


def _read_prompts(path: str, audio_format: str) -> PromptFile:
    """The prompts file, its problems printed one per line; UsageError when it cannot be read."""
    try:
        prompts = read_prompts(path, audio_format)
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
    options: dict[str, Any],
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
    from worker.run.runner import ModelUnavailable, Runner

    runner = Runner(
        settings,
        store,
        should_stop=stop.requested,
        earlier_self=(lambda owner: False) if options["worker_id"] else (
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
            from worker.engine.engine import Engine

            load_engine = functools.partial(Engine.from_pretrained, device=device, dtype=settings.dtype)

        def engine():
            from worker.engine.engine import limit_threads

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
        log.error("cannot use the output %s: %s", options["output"], error)
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
