"""`python launcher` (check, estimate, ask, apply), `python launcher status` and
`python launcher download`."""

from __future__ import annotations

import argparse
import math
import os
import re
import shlex
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TextIO

from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError, ProfileNotFound

from launcher import (
    aws,
    batch,
    checks,
    download,
    estimate,
    gitinfo,
    gitremote,
    gpus,
    instances,
    prices,
    quotas,
    region,
)
from launcher.money import usd
from launcher.tf import TerraformError, TerraformRoot, terraform_installed
from worker.prompts import SUFFIXES, PromptFile, read_prompts
from worker.report import REPORT_KEY

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_INSTANCE_TYPE = "g4dn.xlarge"
DEFAULT_MAX_PRICE = 0.40
DEFAULT_DOWNLOAD_DIR = "songs"

# Variables the launcher sets from its own options; a --var for one of them would make the
# question ("at max $0.40/h?") describe something other than what terraform applies.
OPTION_FOR_VARIABLE = {
    "region": "--region",
    "instance_type": "--instance-type",
    "max_price": "--max-price",
    "worker_count": "--worker-count",
    "git_repo_url": "--git-url",
    "git_ref": "--git-ref",
    "git_token_parameter": "--git-token-parameter",
}
# SSM Parameter Store names: letters, digits, _.- and / for a hierarchy.
# EC2 instance type names: family, a dot, size (g4dn.xlarge, p6-b200.48xlarge, u-6tb1.metal).
INSTANCE_TYPE_NAME = re.compile(r"^[a-z0-9-]+\.[a-z0-9-]+$")
SSM_PARAMETER_NAME = re.compile(r"^[A-Za-z0-9_.\-/]{1,2048}$")

BOLD, PLAIN = "\033[1m", "\033[0m"


class UsageError(Exception):
    """A problem the user can fix; printed as one line on stderr, exit status 2."""


@dataclass
class Console:
    stdin: TextIO
    stdout: TextIO
    stderr: TextIO
    stdin_is_tty: bool
    stdout_is_tty: bool

    def say(self, *lines: str) -> None:
        for line in lines:
            print(line, file=self.stdout)


@dataclass
class Deps:
    """What the commands touch outside this process, replaceable in tests."""

    console: Console
    now: Callable[[], datetime]
    price_history: prices.PriceHistorySource
    ec2_client: Callable[[str], Any]
    s3_client: Callable[[str], Any]
    ssm_client: Callable[[str], Any] = aws.ssm_client
    service_quotas_client: Callable[[str], Any] = aws.service_quotas_client
    session_region: Callable[[], region.SessionRegion] = region.session_region

    @classmethod
    def system(cls) -> Deps:
        return cls(
            console=Console(
                stdin=sys.stdin,
                stdout=sys.stdout,
                stderr=sys.stderr,
                stdin_is_tty=sys.stdin.isatty(),
                stdout_is_tty=sys.stdout.isatty(),
            ),
            now=lambda: datetime.now(UTC),
            price_history=prices.fetch_price_history,
            ec2_client=aws.ec2_client,
            s3_client=aws.s3_client,
        )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python launcher",
        description=(
            "Launch MusicGen spot workers with terraform after checking for running workers, "
            "spot prices and the batch's cost; `status` shows workers and the batch's progress; "
            "`download [DIR]` copies the songs, cost report and listening page."
        ),
    )
    parser.add_argument(
        "command",
        nargs="?",
        choices=["status", "download"],
        help="status: show workers and progress only; download: copy the batch into DIR",
    )
    parser.add_argument(
        "directory",
        nargs="?",
        metavar="DIR",
        help=f"download: the folder to copy into (default: {DEFAULT_DOWNLOAD_DIR})",
    )
    parser.add_argument(
        "--region",
        help=(
            "AWS region (default: boto3's: $AWS_DEFAULT_REGION, else the profile's region; "
            "else $AWS_REGION, else us-east-1)"
        ),
    )
    parser.add_argument("--instance-type", default=DEFAULT_INSTANCE_TYPE, help="%(default)s")
    parser.add_argument(
        "--max-price",
        type=float,
        default=DEFAULT_MAX_PRICE,
        help="most USD per hour to pay per instance (default: %(default).2f)",
    )
    parser.add_argument("--worker-count", type=int, default=1, help="instances (default: 1)")
    parser.add_argument("--prompts", default="prompts.txt", help="(default: %(default)s)")
    parser.add_argument(
        "--bucket", help="bucket to look for finished songs in (default: terraform output)"
    )
    parser.add_argument(
        "--realtime-factor",
        type=float,
        default=estimate.DEFAULT_REALTIME_FACTOR,
        help="audio seconds generated per second per GPU, an assumption (default: %(default)g)",
    )
    parser.add_argument(
        "--boot-overhead-min",
        type=float,
        default=estimate.DEFAULT_BOOT_OVERHEAD_MIN,
        help="minutes of boot and model load per instance (default: %(default)g)",
    )
    parser.add_argument(
        "--price-window-hours",
        type=float,
        default=24.0,
        help="spot price history to summarise (default: %(default)g)",
    )
    parser.add_argument("--git-url", help="repository the worker clones (default: origin)")
    parser.add_argument("--git-ref", help="branch, tag or commit (default: current branch)")
    parser.add_argument(
        "--git-token-parameter",
        metavar="NAME",
        help=(
            "SSM Parameter Store SecureString holding a read-only token for a private "
            "repository (default: none, the repository must be public)"
        ),
    )
    parser.add_argument(
        "--terraform-dir",
        type=Path,
        default=Path(os.environ.get("MUSICGEN_TERRAFORM_DIR") or REPO_ROOT / "terraform"),
        help="terraform root configuration (default: $MUSICGEN_TERRAFORM_DIR, else terraform/)",
    )
    parser.add_argument(
        "--var",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra terraform variable, repeatable (e.g. --var ami_id=ami-123)",
    )
    parser.add_argument("--yes", action="store_true", help="launch without asking")
    parser.add_argument(
        "--force",
        action="store_true",
        help="launch although every zone's current spot price is above the max price",
    )
    parser.add_argument(
        "--dry-run", action="store_true", help="stop before the question; change nothing"
    )
    parser.add_argument(
        "--prefix",
        default="",
        help="download: the batch's folder in the bucket, as in the worker's s3://BUCKET/PREFIX "
        "(default: the bucket's root)",
    )
    parser.add_argument(
        "--logs", action="store_true", help="download: copy the workers' logs/ as well"
    )
    return parser


def main(argv: list[str] | None = None, deps: Deps | None = None) -> int:
    deps = deps or Deps.system()
    args = build_parser().parse_args(argv)
    stderr = deps.console.stderr
    try:
        extra_vars = _check_options(args)
        chosen_region = region.resolve_region(args.region, deps.session_region(), os.environ)
        args.region, args.region_source = chosen_region.name, chosen_region.source
        if args.command == "status":
            return status(args, extra_vars, deps)
        if args.command == "download":
            return download_command(args, extra_vars, deps)
        return launch(args, extra_vars, deps)
    except UsageError as exc:
        print(f"error: {exc}", file=stderr)
        return 2
    except ProfileNotFound as exc:
        print(f"error: {exc}", file=stderr)
        return 2
    except NoCredentialsError:
        print(
            "error: no AWS credentials found; configure them with `aws configure`, "
            "AWS_PROFILE or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY",
            file=stderr,
        )
        return 2
    except (ClientError, BotoCoreError) as exc:
        print(f"error: AWS: {exc}", file=stderr)
        return 2
    except TerraformError as exc:
        print(f"error: {exc}", file=stderr)
        return 1


def launch(args: argparse.Namespace, extra_vars: dict[str, str], deps: Deps) -> int:
    out = deps.console
    _require_terraform()
    prompt_file = _read_prompts(args.prompts, extra_vars.get("audio_format", "wav"))
    root = TerraformRoot(args.terraform_dir)

    ec2 = deps.ec2_client(args.region)
    workers = instances.find_workers(ec2)
    if workers:
        running = "A worker is" if len(workers) == 1 else f"{len(workers)} workers are"
        out.say(f"{running} already running in {args.region}; not launching another:")
        out.say(*_workers_table(ec2, workers, args, deps))
        out.say(
            f"Follow it with `python launcher status`; stop it with `{_destroy_command(root)}`.",
        )
        return 0
    git_url, git_ref = _git_source(args)

    now = deps.now()
    window = timedelta(hours=args.price_window_hours)
    stats = prices.zone_stats(deps.price_history(ec2, args.instance_type, now - window, now))
    network = checks.default_network(ec2)
    coverage = (
        prices.cover_subnet_zones(stats, network.default_subnet_zones)
        if network.vpc_id is not None
        # Without a default VPC the network check fails; the table still shows every zone.
        else prices.Coverage(stats, [], [])
    )
    stats = coverage.stats
    chosen = prices.choose_zone(stats, args.max_price)
    out.say(
        *prices.format_price_table(
            stats,
            region=args.region,
            instance_type=args.instance_type,
            max_price=args.max_price,
            window_hours=args.price_window_hours,
            unpriced=coverage.unpriced,
            left_out=coverage.left_out,
            vpc_id=network.vpc_id,
        ),
        *prices.format_choice(
            stats,
            chosen,
            region=args.region,
            instance_type=args.instance_type,
            max_price=args.max_price,
        ),
        "",
    )
    above_max = bool(stats) and chosen is None
    if above_max and args.force:
        print(prices.price_warning(args.max_price), file=out.stderr)
    refusal = prices.price_refusal(stats, args.max_price) if above_max and not args.force else None

    try:
        instance_gpus = gpus.describe_gpus(ec2, args.instance_type, args.region)
    except gpus.NoGpuError as exc:
        raise UsageError(f"--instance-type: {exc}") from None
    image, failed = _preflight(
        args, extra_vars, deps, ec2, network, stats, chosen, refusal, git_url, git_ref,
        instance_gpus.vcpus,
    )
    if failed:
        print(
            f"error: {failed} check{'s' if failed > 1 else ''} failed; nothing launched",
            file=out.stderr,
        )
        return 2

    out.say(*batch.format_prompts(args.prompts, prompt_file))
    bucket = _bucket(args, extra_vars, root)
    progress = _progress(deps.s3_client(args.region), bucket, prompt_file)
    out.say(*batch.format_bucket_for_launch(bucket, progress))
    to_generate = progress.missing if progress else prompt_file.jobs
    if not to_generate:
        out.say(f"Nothing to generate: every song in {args.prompts} is already in the bucket.")
        out.say("Nothing launched.")
        return 0
    audio_s = sum(job.duration_s for job in to_generate)
    out.say(
        *estimate.format_estimate(
            estimate.estimate_batch(
                audio_s,
                realtime_factor=args.realtime_factor,
                max_price=args.max_price,
                worker_count=args.worker_count,
                boot_overhead_min=args.boot_overhead_min,
                gpus_per_instance=instance_gpus.count,
                songs=len(to_generate),
            ),
            realtime_factor=args.realtime_factor,
            max_price=args.max_price,
            worker_count=args.worker_count,
            boot_overhead_min=args.boot_overhead_min,
            gpus=instance_gpus,
        ),
        f"Worker code: {git_url} @ {git_ref}",
        "",
    )

    if args.dry_run:
        out.say("Dry run: stopping before the question. Nothing launched.")
        return 0
    if not _confirmed(args, out):
        out.say("Nothing launched.")
        return 0

    variables: dict[str, str | float | bool] = {
        "region": args.region,
        "instance_type": args.instance_type,
        "max_price": args.max_price,
        "worker_count": args.worker_count,
        "git_repo_url": git_url,
        "git_ref": git_ref,
    }
    if chosen is not None:
        variables["availability_zone"] = chosen.zone
    if args.git_token_parameter:
        variables["git_token_parameter"] = args.git_token_parameter
    if image is not None:
        # The AMI the user saw, not whatever is newest when terraform runs.
        variables["ami_id"] = image.image_id
    variables.update(extra_vars)
    return _apply(root, variables, out)


def status(args: argparse.Namespace, extra_vars: dict[str, str], deps: Deps) -> int:
    out = deps.console
    prompt_file = _read_prompts(args.prompts, extra_vars.get("audio_format", "wav"))
    ec2 = deps.ec2_client(args.region)
    workers = instances.find_workers(ec2)
    if workers:
        out.say(
            f"Workers in {args.region}:",
            *_workers_table(ec2, workers, args, deps, _spot_costs(ec2, workers, deps)),
        )
    else:
        out.say(f"Workers in {args.region}: none pending or running")

    if args.bucket is None and "bucket_name" not in extra_vars:
        _require_terraform()
    bucket = _bucket(args, extra_vars, TerraformRoot(args.terraform_dir))
    if bucket is None:
        out.say(
            f"Bucket: unknown (no terraform outputs in {os.path.join(_shown(args.terraform_dir), '')};"
            " pass --bucket to name one)"
        )
        return 0
    s3 = deps.s3_client(args.region)
    progress = _progress(s3, bucket, prompt_file)
    if progress is None:
        out.say(f"Bucket {bucket}: does not exist")
        return 0
    name, prefix = _split_bucket(bucket)
    report = batch.read_cost_report(s3, name, prefix)
    out.say(*batch.format_progress(name, progress, report, prefix))
    return 0


def download_command(args: argparse.Namespace, extra_vars: dict[str, str], deps: Deps) -> int:
    out = deps.console
    if args.bucket is None and "bucket_name" not in extra_vars:
        _require_terraform()
    bucket = _bucket(args, extra_vars, TerraformRoot(args.terraform_dir))
    if bucket is None:
        raise UsageError(
            f"no bucket to download from: no terraform outputs in "
            f"{os.path.join(_shown(args.terraform_dir), '')}; pass --bucket"
        )
    bucket, prefix = _split_bucket(bucket)
    if args.prefix.strip("/"):
        if prefix:
            raise UsageError("give the batch's prefix once: in --bucket or with --prefix")
        prefix = f"{args.prefix.strip('/')}/"
    source = f"s3://{bucket}/{prefix}"
    directory = Path(args.directory or DEFAULT_DOWNLOAD_DIR)
    if directory.exists() and not directory.is_dir():
        raise UsageError(f"{directory} exists and is not a folder")
    s3 = deps.s3_client(args.region)
    try:
        result = download.download_batch(
            s3, bucket, prefix, directory, include_logs=args.logs, progress=out.stderr
        )
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") == "NoSuchBucket":
            raise UsageError(f"bucket {bucket} does not exist") from None
        raise
    plan = result.plan
    fresh = f"{_files(len(plan.up_to_date))} already up to date"
    if plan.copy:
        size = download.human_size(sum(item.size for item in result.copied))
        out.say(
            f"Copied {_files(len(result.copied))} ({size}) from {source} to {directory}"
            + (f"; {fresh}." if plan.up_to_date else ".")
        )
    else:
        out.say(f"Nothing to copy from {source} to {directory}: {fresh}.")
    left_out = []
    if plan.bookkeeping:
        left_out.append(f"{_files(plan.bookkeeping)} of the worker's bookkeeping")
    if plan.logs:
        left_out.append(f"{_files(plan.logs, 'log')} (--logs copies them)")
    if left_out:
        out.say(f"Left out {' and '.join(left_out)}.")
    for key in plan.unsafe:
        print(f"warning: skipped {key!r}: it would land outside {directory}", file=out.stderr)
    for key, why in result.failed:
        print(f"error: could not copy {source}{key}: {why}", file=out.stderr)
    page = download.page_path(directory)
    if page is None:
        out.say(f"No listening page in {source} yet: the worker writes it with the cost report.")
    else:
        out.say(f"Listen: {page.resolve().as_uri()}")
    return 1 if result.failed else 0


def _files(count: int, noun: str = "file") -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"
# AWS keeps 90 days of spot price history.
MAX_PRICE_WINDOW_HOURS = 90 * 24


def _check_options(args: argparse.Namespace) -> dict[str, str]:
    """Extra terraform variables from --var, after rejecting values no launch could use."""
    if args.directory is not None and args.command != "download":
        raise UsageError(f"unexpected argument {args.directory!r} (only download takes a DIR)")
    for option in ("max_price", "realtime_factor", "boot_overhead_min", "price_window_hours"):
        value = getattr(args, option)
        # nan slips through every comparison below, and would reach terraform's variables.
        if not math.isfinite(value):
            raise UsageError(f"--{option.replace('_', '-')} must be a finite number (got {value:g})")
    if args.price_window_hours > MAX_PRICE_WINDOW_HOURS:
        raise UsageError(
            f"--price-window-hours must be at most {MAX_PRICE_WINDOW_HOURS} (90 days of spot "
            f"price history; got {args.price_window_hours:g})"
        )
    if args.max_price <= 0:
        raise UsageError(f"--max-price must be more than 0 USD/h (got {args.max_price:g})")
    if args.worker_count < 1:
        raise UsageError(f"--worker-count must be at least 1 (got {args.worker_count})")
    if not INSTANCE_TYPE_NAME.match(args.instance_type):
        raise UsageError(
            f"--instance-type must be an EC2 instance type such as {DEFAULT_INSTANCE_TYPE} "
            f"(got {args.instance_type!r})"
        )
    if args.realtime_factor <= 0:
        raise UsageError(f"--realtime-factor must be more than 0 (got {args.realtime_factor:g})")
    if args.boot_overhead_min < 0:
        raise UsageError(
            f"--boot-overhead-min must not be negative (got {args.boot_overhead_min:g})"
        )
    if args.price_window_hours <= 0:
        raise UsageError(
            f"--price-window-hours must be more than 0 (got {args.price_window_hours:g})"
        )
    if args.git_token_parameter is not None and not SSM_PARAMETER_NAME.match(
        args.git_token_parameter
    ):
        raise UsageError(
            "--git-token-parameter must be an SSM parameter name such as /musicgen/git-token "
            f"(got {args.git_token_parameter!r})"
        )
    extra: dict[str, str] = {}
    for item in args.var:
        name, equals, value = item.partition("=")
        name = name.strip()
        if not equals or not name:
            raise UsageError(f"--var expects KEY=VALUE (got {item!r})")
        if name in OPTION_FOR_VARIABLE:
            raise UsageError(f"use {OPTION_FOR_VARIABLE[name]} instead of --var {name}=...")
        extra[name] = value
    return extra


def _require_terraform() -> None:
    if not terraform_installed():
        raise UsageError(
            "terraform is not installed or not on PATH "
            "(https://developer.hashicorp.com/terraform/install)"
        )


def _read_prompts(path: str, audio_format: str) -> PromptFile:
    """The songs as the worker will name them: the extension follows the worker's format
    (terraform's audio_format), so progress looks for the real keys."""
    if audio_format not in SUFFIXES:
        raise UsageError(f"--var audio_format={audio_format!r}: must be one of {', '.join(SUFFIXES)}")
    try:
        prompt_file = read_prompts(path, audio_format)
    except FileNotFoundError:
        raise UsageError(f"prompts file not found: {path}") from None
    except OSError as exc:
        raise UsageError(f"cannot read prompts file {path}: {exc.strerror}") from None
    if not prompt_file.jobs:
        detail = f"; {prompt_file.errors[0]}" if prompt_file.errors else ""
        raise UsageError(f"{path} has no valid songs{detail}")
    return prompt_file


def _git_source(args: argparse.Namespace) -> tuple[str, str]:
    url = args.git_url or gitinfo.origin_url(REPO_ROOT)
    if not url:
        raise UsageError("no --git-url given and this checkout has no 'origin' remote")
    if not url.startswith("https://"):
        # terraform's git_repo_url validation would say so too, but only after the question.
        raise UsageError(
            f"the workers clone over HTTPS only; --git-url must be https:// (got {url})"
        )
    ref = args.git_ref or gitinfo.current_ref(REPO_ROOT)
    if not ref:
        raise UsageError("no --git-ref given and this checkout has no current branch or commit")
    return url, ref


def _preflight(
    args: argparse.Namespace,
    extra_vars: dict[str, str],
    deps: Deps,
    ec2: Any,
    network: checks.Network,
    stats: list[prices.ZoneStats],
    chosen: prices.ZoneStats | None,
    price_refusal: str | None,
    git_url: str,
    git_ref: str,
    vcpus: int,
) -> tuple[checks.Image | None, int]:
    """Runs every check, also after a failure, so one run names every problem; prints each
    passed check on stdout and each failure as an error line on stderr. Returns the AMI found
    and how many checks failed."""
    out = deps.console
    results = [checks.Check.passed(f"region: {args.region} (from {args.region_source})")]

    explicit_ami = extra_vars.get("ami_id") or None
    image = (
        checks.image_by_id(ec2, explicit_ami) if explicit_ami else checks.newest_packer_image(ec2)
    )
    results.append(
        checks.ami_check(image, region=args.region, explicit_id=explicit_ami, now=deps.now())
    )
    results.append(
        checks.network_check(
            network,
            region=args.region,
            priced_zones=[s.zone for s in stats],
            chosen_zone=chosen.zone if chosen else None,
        )
    )
    if price_refusal:
        results.append(checks.Check.failed(price_refusal))
    results.append(_quota_check(args, deps, vcpus))

    access = gitremote.Access(args.git_token_parameter, args.region)
    token_readable = True
    if args.git_token_parameter:
        token = checks.token_parameter_check(
            deps.ssm_client(args.region), args.git_token_parameter, region=args.region
        )
        results.append(token)
        token_readable = token.ok
    if token_readable:
        local = Path(args.prompts).read_bytes()
        results += gitremote.check_source(
            gitremote.GitRunner(access), git_url, git_ref, local, args.prompts
        )

    out.say("Checks before launch:")
    for result in results:
        if result.warning:
            print(f"warning: {result.line}", file=out.stderr)
        elif result.ok:
            out.say(f"  ok  {result.line}")
        else:
            print(f"error: {result.line}", file=out.stderr)
    out.say("")
    return (image if explicit_ami is None else None), sum(not r.ok for r in results)


def _quota_check(args: argparse.Namespace, deps: Deps, vcpus: int) -> checks.Check:
    quota = quotas.spot_quota_for(args.instance_type)
    value = quotas.read_quota(deps.service_quotas_client(args.region), quota) if quota else None
    return quotas.quota_check(
        instance_type=args.instance_type,
        worker_count=args.worker_count,
        vcpus=vcpus,
        quota=quota,
        value=value,
        region=args.region,
    )


def _workers_table(
    ec2: Any,
    workers: list[instances.Worker],
    args: argparse.Namespace,
    deps: Deps,
    spot_costs: dict[str, prices.SpotCost | None] | None = None,
) -> list[str]:
    return instances.format_workers(
        workers,
        now=deps.now(),
        max_prices=instances.spot_max_prices(ec2, workers),
        default_max_price=args.max_price,
        spot_costs=spot_costs,
    )


def _spot_costs(
    ec2: Any, workers: list[instances.Worker], deps: Deps
) -> dict[str, prices.SpotCost | None]:
    """Each worker's cost at the spot price in effect, from one price history per instance type
    reaching back to the oldest launch (AWS adds the price already in effect at its start)."""
    now = deps.now()
    costs: dict[str, prices.SpotCost | None] = {}
    for instance_type in sorted({w.instance_type for w in workers}):
        of_type = [w for w in workers if w.instance_type == instance_type]
        start = min(w.launch_time for w in of_type)
        history = deps.price_history(ec2, instance_type, start, now)
        for w in of_type:
            costs[w.instance_id] = prices.accrued_spot_cost(history, w.zone, w.launch_time, now)
    return costs


def _bucket(
    args: argparse.Namespace, extra_vars: dict[str, str], root: TerraformRoot
) -> str | None:
    return args.bucket or extra_vars.get("bucket_name") or root.outputs().get("bucket_name")


def _split_bucket(bucket: str) -> tuple[str, str]:
    try:
        return batch.split_bucket(bucket)
    except ValueError as exc:
        raise UsageError(f"--bucket: {exc}") from None


def _progress(s3: Any, bucket: str | None, prompt_file: PromptFile) -> batch.Progress | None:
    if bucket is None:
        return None
    name, prefix = _split_bucket(bucket)
    keys = batch.songs_in_bucket(s3, name, prefix)
    if keys is None:
        return None
    progress = batch.split_progress(prompt_file.jobs, keys)
    changed = batch.changed_songs(s3, name, progress.done, prefix)
    return batch.Progress(progress.done, progress.missing, changed)


def _confirmed(args: argparse.Namespace, out: Console) -> bool:
    question = (
        f"Launch {args.worker_count} × {args.instance_type} spot in {args.region} "
        f"at max {usd(args.max_price)}/h? [y/N] "
    )
    if args.yes:
        out.say(question + "yes (--yes)")
        return True
    if not out.stdin_is_tty:
        raise UsageError("stdin is not a terminal, so the launcher cannot ask; pass --yes")
    out.stdout.write(question)
    out.stdout.flush()
    try:
        answer = out.stdin.readline()
    except KeyboardInterrupt:
        out.say("")
        return False
    return answer.strip().lower() in ("y", "yes")


def _apply(root: TerraformRoot, variables: dict[str, str | float | bool], out: Console) -> int:
    out.say(f"Variables for terraform written to {_shown(root.write_variables(variables))}")
    out.stdout.flush()
    if not root.is_initialized():
        code = root.init()
        if code != 0:
            print(f"error: terraform init failed (exit {code}); see above", file=out.stderr)
            return 1
    code = root.apply()
    if code != 0:
        print(
            f"error: terraform apply failed (exit {code}); see terraform's error above. "
            f"Anything it created is in its state: fix and rerun, or `{_destroy_command(root)}`",
            file=out.stderr,
        )
        return 1
    outputs = root.outputs()
    bucket = outputs.get("bucket_name", "?")
    instance_ids = outputs.get("instance_ids") or []
    warning = (
        f"The {'instance keeps' if len(instance_ids) == 1 else 'instances keep'} costing money "
        f"until you run: {_destroy_command(root)}"
    )
    out.say(
        "",
        f"Launched: {', '.join(instance_ids) or 'no instance ids in the terraform outputs'}",
        f"Bucket:   {bucket}",
        "Next steps:",
        "  follow progress:  python launcher status",
        f"  songs appear in:  s3://{bucket}/  (cost report: s3://{bucket}/{REPORT_KEY},"
        f" run logs: s3://{bucket}/logs/)",
        f"{BOLD}{warning}{PLAIN}" if out.stdout_is_tty else warning,
    )
    return 0


def _destroy_command(root: TerraformRoot) -> str:
    return f"terraform -chdir={shlex.quote(_shown(root.working_dir))} destroy"


def _shown(path: Path) -> str:
    """Relative to the current directory when inside it (the usual `terraform`), else absolute."""
    relative = os.path.relpath(path.resolve())
    return str(path.resolve()) if relative.startswith("..") else relative
