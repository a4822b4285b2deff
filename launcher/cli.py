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
from typing import Any, NoReturn, TextIO

from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError, ProfileNotFound

from launcher import (
    aws,
    batch,
    checks,
    download,
    estimate,
    failed,
    gitinfo,
    gitremote,
    gpus,
    group,
    instances,
    prices,
    quotas,
    region,
)
from launcher.money import usd
from launcher.tf import TerraformError, TerraformRoot, Value, terraform_installed
from worker.prompts import SUFFIXES, PromptFile, read_prompts
from worker.report import REPORT_KEY

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_INSTANCE_TYPE = "g4dn.xlarge"
DEFAULT_MAX_PRICE = 0.40
DEFAULT_DOWNLOAD_DIR = "songs"
# The workers' hard cap (terraform's max_hours): a hung model or a bug never bills for days.
DEFAULT_MAX_HOURS = 12.0
# AWS keeps 90 days of spot price history.
MAX_PRICE_WINDOW_HOURS = 90 * 24

# Variables the launcher sets from its own options; a --var for one of them would make the
# question ("at max $0.40/h?") describe something other than what terraform applies.
OPTION_FOR_VARIABLE = {
    "region": "--region",
    "instance_types": "--instance-type",
    "max_price": "--max-price",
    "worker_count": "--worker-count",
    "keep_alive": "--keep-alive",
    "max_hours": "--max-hours",
    "git_repo_url": "--git-url",
    "git_ref": "--git-ref",
    "git_token_parameter": "--git-token-parameter",
}
# SSM Parameter Store names: letters, digits, _.- and / for a hierarchy.
# EC2 instance type names: family, a dot, size (g4dn.xlarge, p6-b200.48xlarge, u-6tb1.metal).
INSTANCE_TYPE_NAME = re.compile(r"^[a-z0-9-]+\.[a-z0-9-]+$")
SSM_PARAMETER_NAME = re.compile(r"^[A-Za-z0-9_.\-/]{1,2048}$")
# Variables the worker group replaced, and why a --var for them is refused.
REPLACED_VARIABLES = {
    "instance_type": "replaced by instance_types; use --instance-type, repeatable",
    "availability_zone": (
        "replaced by availability_zones, which the launcher sets to the zones with a default "
        "subnet and a spot price within the max"
    ),
    "availability_zones": (
        "the launcher sets it to the zones with a default subnet and a spot price within the max"
    ),
    "shutdown_when_done": (
        "replaced by keep_alive; the workers scale in when the batch is done unless --keep-alive"
    ),
}

BOLD, PLAIN = "\033[1m", "\033[0m"


class UsageError(Exception):
    """A problem the user can fix; printed as one line on stderr, exit status 2."""


class _Parser(argparse.ArgumentParser):
    """argparse's own refusals (a value it cannot convert, a missing value) become a UsageError,
    so they print as one line like every other usage error, not the usage text and a line."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


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
    autoscaling_client: Callable[[str], Any] = aws.autoscaling_client
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


PROG = "musicgen-launcher"
COMMANDS = ("launch", "status", "download")


def _common_options() -> argparse.ArgumentParser:
    """--region, --terraform-dir and --var: every command finds the deployment the same way."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--region",
        help=(
            "AWS region for prices, workers and terraform (default: boto3's: "
            "$AWS_DEFAULT_REGION, else the profile's region; else $AWS_REGION, else "
            f"{region.DEFAULT_REGION}); the checks before launch show where it came from"
        ),
    )
    common.add_argument(
        "--terraform-dir",
        type=Path,
        metavar="PATH",
        default=Path(os.environ.get("MUSICGEN_TERRAFORM_DIR") or REPO_ROOT / "terraform"),
        help="terraform root configuration and its state (default: $MUSICGEN_TERRAFORM_DIR, "
        "else terraform/)",
    )
    common.add_argument(
        "--var",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help=(
            "extra terraform variable, repeatable, e.g. ami_id, bucket_name, model_path, "
            "batch_size, audio_format, force_destroy, root_volume_size_gb (docs/deploy.md lists "
            "them); refused: variables with an option of their own (such as max_price), "
            "availability_zones (the launcher sets it) and the replaced instance_type, "
            "availability_zone and shutdown_when_done"
        ),
    )
    return common


def _bucket_option(parser: argparse.ArgumentParser, use: str) -> None:
    parser.add_argument(
        "--bucket",
        help=(
            f"bucket {use}: NAME, NAME/PREFIX or s3://NAME/PREFIX; read only, it does not "
            "rename the bucket terraform creates (default: the bucket_name terraform output, "
            "or --var bucket_name=...)"
        ),
    )


def _batch_options(parser: argparse.ArgumentParser) -> None:
    """--prompts and --max-price: what launch and status know of the batch and its price."""
    parser.add_argument(
        "--prompts",
        default="prompts.txt",
        metavar="FILE",
        help="prompts file, parsed exactly as the worker parses it (default: %(default)s)",
    )
    parser.add_argument(
        "--max-price",
        type=float,
        default=DEFAULT_MAX_PRICE,
        metavar="USD",
        help=(
            "spot max price in USD per hour per instance, above 0; the estimate and the "
            "cost-so-far figures use it as the hourly rate, except for a running spot worker, "
            "whose own spot request price counts where AWS reports one (default: %(default).2f)"
        ),
    )


def _launch_parser(parser: argparse.ArgumentParser) -> None:
    _batch_options(parser)
    parser.add_argument(
        "--instance-type",
        dest="instance_types",
        action="append",
        metavar="TYPE",
        help=(
            "GPU instance type of the workers; repeat it for several types of one GPU class, "
            "a wider spot capacity pool, all at one max price; terraform accepts the NVIDIA "
            f"families g4dn, g5, g6, g6e, gr6, p4d, p4de, p5, p5e and p5en "
            f"(default: {DEFAULT_INSTANCE_TYPE})"
        ),
    )
    parser.add_argument(
        "--worker-count",
        type=int,
        metavar="N",
        help=(
            "instances, the group's size, at least 1; they share the generation time and each "
            "pays the boot overhead (default: 1; with a running group, the count to raise it "
            "back to: its maximum size, which terraform sets to the launch's worker count)"
        ),
    )
    parser.add_argument(
        "--keep-alive",
        action="store_true",
        help=(
            "keep each instance up, and billing, after its workers finished, instead of "
            "scaling it in (terraform's keep_alive)"
        ),
    )
    parser.add_argument(
        "--max-hours",
        type=float,
        default=DEFAULT_MAX_HOURS,
        metavar="HOURS",
        help=(
            "hours after which a worker checkpoints and scales its instance in, whatever the "
            "batch's state; above 0; terraform's max_hours (default: %(default)g)"
        ),
    )
    _bucket_option(parser, "to look for finished songs in, left out of the estimate")
    parser.add_argument(
        "--realtime-factor",
        type=float,
        default=estimate.DEFAULT_REALTIME_FACTOR,
        metavar="FACTOR",
        help=(
            "audio seconds generated per wall-clock second per GPU (one worker runs per GPU); "
            "an assumption, on the slow side for musicgen-small on a T4 (g4dn.xlarge), as long "
            "songs re-generate overlapping windows: measure yours as requested_duration_s / "
            "generation_time_s in a finished cost_report.csv (default: %(default)g)"
        ),
    )
    parser.add_argument(
        "--boot-overhead-min",
        type=float,
        default=estimate.DEFAULT_BOOT_OVERHEAD_MIN,
        metavar="MINUTES",
        help=(
            "minutes each instance is paid for before it generates anything (boot, bootstrap, "
            "model load); an assumption, at least 0 (default: %(default)g)"
        ),
    )
    parser.add_argument(
        "--price-window-hours",
        type=float,
        default=24.0,
        metavar="HOURS",
        help=(
            "span of spot price history to summarise, above 0 and at most "
            f"{MAX_PRICE_WINDOW_HOURS}, as AWS keeps 90 days (default: %(default)g)"
        ),
    )
    parser.add_argument(
        "--git-url",
        metavar="URL",
        help=(
            "repository the workers clone; https:// only, the workers get only HTTPS out "
            "(default: `git remote get-url origin`)"
        ),
    )
    parser.add_argument(
        "--git-ref",
        metavar="REF",
        help=(
            "branch, tag or commit the workers run; push it first, they clone from the remote "
            "(default: the current branch, the commit when HEAD is detached)"
        ),
    )
    parser.add_argument(
        "--git-token-parameter",
        metavar="NAME",
        help=(
            "SSM Parameter Store SecureString holding a read-only token for a private "
            "repository, e.g. /musicgen/git-token; see docs/launcher-preflight.md (default: "
            "none, a public repository)"
        ),
    )
    parser.add_argument(
        "--yes",
        action="store_true",
        help="launch, or raise a running group, without asking, for automation; warnings are "
        "still printed",
    )
    parser.add_argument(
        "--force",
        action="store_true",
        help="launch although every zone's current spot price is above the max price (refused "
        "otherwise)",
    )
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="do everything up to the question (to launch, or to raise the group), then stop; "
        "changes nothing and needs no terminal",
    )


def _status_parser(parser: argparse.ArgumentParser) -> None:
    _batch_options(parser)
    _bucket_option(parser, "whose progress to show")


def _download_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "directory",
        nargs="?",
        default=DEFAULT_DOWNLOAD_DIR,
        metavar="DIR",
        help="the folder to copy into, created if missing (default: %(default)s)",
    )
    _bucket_option(parser, "to copy from")
    parser.add_argument(
        "--prefix",
        default="",
        help="the batch's folder in the bucket, as in the worker's s3://BUCKET/PREFIX; or give "
        "it in --bucket (default: the bucket's root)",
    )
    parser.add_argument(
        "--logs", action="store_true", help="copy the workers' logs/ as well"
    )


def build_parser() -> argparse.ArgumentParser:
    """The commands, each with only its own options; main() runs `launch` when none is named."""
    parser = _Parser(
        prog=PROG,
        description=(
            "Runs a batch of MusicGen songs on AWS spot GPUs. The same command runs from the "
            "checkout as `python launcher` or `python -m launcher`."
        ),
        epilog=(
            f"Without a command, {PROG} launches: `{PROG} --dry-run` is `{PROG} launch "
            f"--dry-run`. `{PROG} COMMAND --help` lists a command's options. Exit status: 0 "
            "done (launched, declined, nothing to do), 1 terraform or a copy failed, 2 a usage, "
            "check or AWS error."
        ),
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands")
    common = _common_options()

    def command(name: str, summary: str) -> argparse.ArgumentParser:
        return commands.add_parser(name, parents=[common], help=summary, description=summary)

    _launch_parser(
        command(
            "launch",
            "(the default) check for a running group, spot prices and the batch's cost, ask, "
            "then terraform apply; with a running group, offer to raise it back to its worker "
            "count",
        )
    )
    _status_parser(
        command(
            "status",
            "show the group (or the tagged workers), its cost and the batch's progress; never "
            "launches or changes anything",
        )
    )
    _download_parser(
        command(
            "download",
            "copy the batch's songs, cost report and listening page into DIR, only what is new "
            "or changed",
        )
    )
    return parser


def parse_args(argv: list[str]) -> argparse.Namespace:
    """The command's options; `launch` when the first argument names no command. An option of
    another command (`status --yes`) or an unknown one is a one-line usage error."""
    if not argv or argv[0] not in (*COMMANDS, "-h", "--help"):
        argv = ["launch", *argv]
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:
        raise UsageError(_unexpected(args.command, extra[0], parser))
    return args


def _unexpected(command: str, argument: str, parser: argparse.ArgumentParser) -> str:
    if argument in COMMANDS:
        return f"the command comes first: {PROG} {argument} [OPTIONS]"
    if not argument.startswith("-") or argument == "-":
        return f"unexpected argument {argument!r} (only download takes a DIR)"
    option = argument.split("=", 1)[0]
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    if any(option in sub._option_string_actions for sub in subparsers.choices.values()):
        return f"{command} does not take {option}"
    return f"unknown option {option} (see {PROG} {command} --help)"


def main(argv: list[str] | None = None, deps: Deps | None = None) -> int:
    deps = deps or Deps.system()
    stderr = deps.console.stderr
    try:
        args = parse_args(sys.argv[1:] if argv is None else argv)
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
    # A new launch applies --var audio_format, else terraform's default.
    audio_format = extra_vars.get("audio_format", "wav")
    prompt_file = _read_prompts(args.prompts, audio_format)
    root = TerraformRoot(args.terraform_dir)
    outputs = root.outputs()

    running_group = _running_group(args, deps, outputs)
    if running_group is not None:
        # A running group's workers write the format it was launched with.
        if _audio_format(extra_vars, outputs) != audio_format:
            prompt_file = _read_prompts(args.prompts, _audio_format(extra_vars, outputs))
        return _offer_raise(args, extra_vars, deps, prompt_file, root, outputs, running_group)
    ec2 = deps.ec2_client(args.region)
    workers = instances.find_workers(ec2, _worker_tag(extra_vars, outputs))
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
    network = checks.default_network(ec2)
    stats_by_type: dict[str, list[prices.ZoneStats]] = {}
    for instance_type in args.instance_types:
        stats = prices.zone_stats(deps.price_history(ec2, instance_type, now - window, now))
        coverage = (
            prices.cover_subnet_zones(stats, network.default_subnet_zones)
            if network.vpc_id is not None
            # Without a default VPC the network check fails; the table still shows every zone.
            else prices.Coverage(stats, [], [])
        )
        stats_by_type[instance_type] = coverage.stats
        out.say(
            *prices.format_price_table(
                coverage.stats,
                region=args.region,
                instance_type=instance_type,
                max_price=args.max_price,
                window_hours=args.price_window_hours,
                unpriced=coverage.unpriced,
                left_out=coverage.left_out,
                vpc_id=network.vpc_id,
            )
        )
    usable = prices.usable_zones(stats_by_type.values(), args.max_price)
    all_stats = [s for stats in stats_by_type.values() for s in stats]
    out.say(
        *prices.format_zones(stats_by_type, usable, region=args.region, max_price=args.max_price),
        "",
    )
    above_max = bool(all_stats) and not usable
    if above_max and args.force:
        print(prices.price_warning(args.max_price), file=out.stderr)
    refusal = (
        prices.price_refusal(all_stats, args.max_price) if above_max and not args.force else None
    )

    type_gpus = []
    for instance_type in args.instance_types:
        try:
            type_gpus.append(gpus.describe_gpus(ec2, instance_type, args.region))
        except gpus.NoGpuError as exc:
            raise UsageError(f"--instance-type: {exc}") from None
    image, failed_checks = _preflight(
        args,
        extra_vars,
        deps,
        ec2,
        network,
        usable or sorted({s.zone for s in all_stats}),
        refusal,
        git_url,
        git_ref,
        type_gpus,
    )
    if failed_checks:
        print(
            f"error: {failed_checks} check{'s' if failed_checks > 1 else ''} failed; "
            "nothing launched",
            file=out.stderr,
        )
        return 2

    out.say(*batch.format_prompts(args.prompts, prompt_file))
    bucket = _bucket(args, extra_vars, outputs)
    progress = _progress(deps.s3_client(args.region), bucket, prompt_file)
    out.say(*batch.format_bucket_for_launch(bucket, progress))
    to_generate = progress.missing if progress else prompt_file.jobs
    if not to_generate:
        out.say(f"Nothing to generate: every song in {args.prompts} is already in the bucket.")
        out.say("Nothing launched.")
        return 0
    audio_s = sum(job.duration_s for job in to_generate)
    # Of several types the group may launch any: the one with the fewest GPUs takes longest.
    counted = min(type_gpus, key=lambda g: g.count)
    out.say(
        *estimate.format_estimate(
            estimate.estimate_batch(
                audio_s,
                realtime_factor=args.realtime_factor,
                max_price=args.max_price,
                worker_count=args.worker_count,
                boot_overhead_min=args.boot_overhead_min,
                gpus_per_instance=counted.count,
                songs=len(to_generate),
            ),
            realtime_factor=args.realtime_factor,
            max_price=args.max_price,
            worker_count=args.worker_count,
            boot_overhead_min=args.boot_overhead_min,
            gpus=counted,
            other_types=[g for g in type_gpus if g is not counted],
        ),
        f"Worker code: {git_url} @ {git_ref}",
        "",
    )

    question = (
        f"Launch {args.worker_count} × {' or '.join(args.instance_types)} spot in {args.region} "
        f"at max {usd(args.max_price)}/h? [y/N] "
    )
    if not _go_ahead(args, out, question, "Nothing launched."):
        return 0

    variables: dict[str, Value] = {
        "name": instances.NAME,
        "region": args.region,
        "instance_types": args.instance_types,
        "max_price": args.max_price,
        "worker_count": args.worker_count,
        "git_repo_url": git_url,
        "git_ref": git_ref,
    }
    if usable:
        variables["availability_zones"] = usable
    variables["keep_alive"] = args.keep_alive
    variables["max_hours"] = _number(args.max_hours)
    if args.git_token_parameter:
        variables["git_token_parameter"] = args.git_token_parameter
    if image is not None:
        # The AMI the user saw, not whatever is newest when terraform runs.
        variables["ami_id"] = image.image_id
    variables.update(extra_vars)
    return _apply(root, variables, args, out)


def _number(value: float) -> float:
    """12.0 as 12 in the tfvars, as a user would write it."""
    return int(value) if value.is_integer() else value


def _running_group(
    args: argparse.Namespace, deps: Deps, outputs: dict[str, Any]
) -> group.Group | None:
    """The group terraform created, when it still exists."""
    name = outputs.get("autoscaling_group_name")
    if not name:
        return None
    return group.describe_group(deps.autoscaling_client(args.region), name)


def _offer_raise(
    args: argparse.Namespace,
    extra_vars: dict[str, str],
    deps: Deps,
    prompt_file: PromptFile,
    root: TerraformRoot,
    outputs: dict[str, Any],
    found: group.Group,
) -> int:
    """The group exists: show the batch's progress and, while songs are missing, offer to set the
    group's desired capacity back to its launch's worker count (its maximum size), or to
    --worker-count, rather than apply again."""
    out = deps.console
    wanted = args.worker_count if args.worker_count_given else found.max_size
    out.say(group.format_group(found, args.region))
    bucket = _bucket(args, extra_vars, outputs)
    s3 = deps.s3_client(args.region)
    progress = _progress(s3, bucket, prompt_file)
    given_up = _failed_for_good(s3, bucket, progress, out)
    missing = (progress.missing if progress else prompt_file.jobs)
    failed_names = {song.job.file_name for song in given_up}
    missing = [job for job in missing if job.file_name not in failed_names]
    written = len(progress.done) if progress else 0
    where = f"s3://{bucket}/" if bucket else "the bucket"
    out.say(
        f"Songs in {where}: {written} written, {len(missing)} missing, "
        f"{len(given_up)} failed for good (of {len(prompt_file.jobs)} in {args.prompts})",
        *failed.format_failed(given_up),
    )
    if not missing:
        out.say(
            "The batch is complete: every song is written or failed for good.",
            "  copy it:         python launcher download",
            f"  then stop all:   {_destroy_command(root)}",
        )
        return 0
    if found.desired >= wanted:
        out.say(
            f"The group already wants {found.desired} worker{'s' if found.desired != 1 else ''} "
            "and replaces interrupted ones by itself. Follow it with `python launcher status`."
        )
        return 0
    if wanted > found.max_size:
        raise UsageError(
            f"--worker-count {wanted} is above the group's maximum size "
            f"{found.max_size}; change it with `terraform -chdir="
            f"{shlex.quote(_shown(root.working_dir))} apply -var worker_count={wanted}`"
        )
    question = (
        f"Raise the group from {found.desired} to {wanted} "
        f"worker{'s' if wanted != 1 else ''}? [y/N] "
    )
    if not _go_ahead(args, out, question, "Nothing changed."):
        return 0
    group.raise_group(deps.autoscaling_client(args.region), found.name, wanted)
    out.say(
        f"Desired capacity of {found.name} set to {wanted}: Auto Scaling launches the "
        "workers, which resume the missing songs. Follow them with `python launcher status`."
    )
    return 0


def _failed_for_good(
    s3: Any, bucket: str | None, progress: batch.Progress | None, out: Console
) -> list[failed.FailedSong]:
    if bucket is None or progress is None:
        return []
    name, prefix = _split_bucket(bucket)
    objects = failed.failure_objects(
        s3, name, prefix, warn=lambda line: print(line, file=out.stderr)
    )
    return failed.failed_for_good(progress.missing, objects)


def status(args: argparse.Namespace, extra_vars: dict[str, str], deps: Deps) -> int:
    out = deps.console
    if args.bucket is None and "bucket_name" not in extra_vars:
        _require_terraform()
    root = TerraformRoot(args.terraform_dir)
    outputs = root.outputs() if terraform_installed() else {}
    prompt_file = _read_prompts(args.prompts, _audio_format(extra_vars, outputs))
    ec2 = deps.ec2_client(args.region)
    found = _running_group(args, deps, outputs)
    if found is not None:
        out.say(*_group_status(ec2, found, args, deps))
    else:
        workers = instances.find_workers(ec2, _worker_tag(extra_vars, outputs))
        if workers:
            out.say(
                f"Workers in {args.region}:",
                *_workers_table(ec2, workers, args, deps, _spot_costs(ec2, workers, deps)),
            )
        else:
            out.say(f"Workers in {args.region}: none pending or running")

    bucket = _bucket(args, extra_vars, outputs)
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
    given_up = _failed_for_good(s3, bucket, progress, out)
    out.say(*batch.format_progress(name, progress, report, prefix, given_up))
    return 0


def _group_status(
    ec2: Any, found: group.Group, args: argparse.Namespace, deps: Deps
) -> list[str]:
    """The group's counts, its last activities in plain words, and every instance it ran (still
    listed by EC2) with its cost at the max price and at the actual spot price."""
    activities = group.scaling_activities(
        deps.autoscaling_client(args.region), found.name, group.ACTIVITIES_FOR_COST
    )
    lines = [group.format_group(found, args.region)]
    described = group.describe_activities(activities)[-group.DEFAULT_ACTIVITIES :]
    if described:
        lines += ["  last scaling activities (UTC, oldest first):", *(f"    {d}" for d in described)]
    else:
        lines.append("  no scaling activities recorded")
    runs = group.group_instances(ec2, found.name, activities)
    if runs:
        lines.append("  instances it ran:")
        lines += [
            "  " + line
            for line in instances.format_workers(
                runs,
                now=deps.now(),
                max_prices=instances.spot_max_prices(ec2, runs),
                default_max_price=found.spot_max_price or args.max_price,
                spot_costs=_spot_costs(ec2, runs, deps),
            )
        ]
    else:
        lines.append("  instances it ran: none listed by EC2")
    unlisted = group.unlisted_instances(activities, runs)
    if unlisted:
        lines.append(
            f"  not in these figures: {', '.join(unlisted)} (EC2 no longer lists them; it keeps "
            "terminated instances for about an hour)"
        )
    return lines


def download_command(args: argparse.Namespace, extra_vars: dict[str, str], deps: Deps) -> int:
    out = deps.console
    if args.bucket is None and "bucket_name" not in extra_vars:
        _require_terraform()
    known = args.bucket or extra_vars.get("bucket_name")
    outputs = {} if known else TerraformRoot(args.terraform_dir).outputs()
    bucket = _bucket(args, extra_vars, outputs)
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


def _check_options(args: argparse.Namespace) -> dict[str, str]:
    """Extra terraform variables from --var, after rejecting values no command could use; each
    command checks the options it has."""
    numbers = ("max_price", "realtime_factor", "boot_overhead_min", "price_window_hours", "max_hours")
    for option in (name for name in numbers if hasattr(args, name)):
        value = getattr(args, option)
        # nan slips through every comparison below, and would reach terraform's variables.
        if not math.isfinite(value):
            raise UsageError(f"--{option.replace('_', '-')} must be a finite number (got {value:g})")
    if args.bucket is not None:
        _split_bucket(args.bucket)  # before any AWS call
    if args.command == "launch":
        _check_launch_options(args)
    elif args.command == "status":
        _check_max_price(args)
    return _extra_variables(args.var)


def _check_max_price(args: argparse.Namespace) -> None:
    if args.max_price <= 0:
        raise UsageError(f"--max-price must be more than 0 USD/h (got {args.max_price:g})")


def _check_launch_options(args: argparse.Namespace) -> None:
    if args.price_window_hours > MAX_PRICE_WINDOW_HOURS:
        raise UsageError(
            f"--price-window-hours must be at most {MAX_PRICE_WINDOW_HOURS} (90 days of spot "
            f"price history; got {args.price_window_hours:g})"
        )
    _check_max_price(args)
    # A running group is raised back to the count it was launched with unless one is given.
    args.worker_count_given = args.worker_count is not None
    if args.worker_count is None:
        args.worker_count = 1
    if args.worker_count < 1:
        raise UsageError(f"--worker-count must be at least 1 (got {args.worker_count})")
    # Repeated types count once; the order given is kept.
    args.instance_types = list(dict.fromkeys(args.instance_types or [DEFAULT_INSTANCE_TYPE]))
    for instance_type in args.instance_types:
        if not INSTANCE_TYPE_NAME.match(instance_type):
            raise UsageError(
                f"--instance-type must be an EC2 instance type such as {DEFAULT_INSTANCE_TYPE} "
                f"(got {instance_type!r})"
            )
    if args.max_hours <= 0:
        raise UsageError(f"--max-hours must be more than 0 (got {args.max_hours:g})")
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


def _extra_variables(items: list[str]) -> dict[str, str]:
    extra: dict[str, str] = {}
    for item in items:
        name, equals, value = item.partition("=")
        name = name.strip()
        if not equals or not name:
            raise UsageError(f"--var expects KEY=VALUE (got {item!r})")
        if name in OPTION_FOR_VARIABLE:
            raise UsageError(f"use {OPTION_FOR_VARIABLE[name]} instead of --var {name}=...")
        if name in REPLACED_VARIABLES:
            raise UsageError(f"--var {name}: {REPLACED_VARIABLES[name]}")
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
    zones: list[str],
    price_refusal: str | None,
    git_url: str,
    git_ref: str,
    type_gpus: list[gpus.InstanceGpus],
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
            priced_zones=zones,
            chosen_zone=None,
        )
    )
    if price_refusal:
        results.append(checks.Check.failed(price_refusal))
    results += _quota_checks(args, deps, type_gpus)

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


def _quota_checks(
    args: argparse.Namespace, deps: Deps, type_gpus: list[gpus.InstanceGpus]
) -> list[checks.Check]:
    """One check per spot quota the types fall under: the group may launch every worker as the
    quota's largest type, so that type's vCPUs count."""
    by_quota: dict[quotas.SpotQuota | None, list[gpus.InstanceGpus]] = {}
    for item in type_gpus:
        by_quota.setdefault(quotas.spot_quota_for(item.instance_type), []).append(item)
    results = []
    service_quotas = None
    for quota, members in by_quota.items():
        largest = max(members, key=lambda g: g.vcpus)
        value = None
        if quota is not None:
            service_quotas = service_quotas or deps.service_quotas_client(args.region)
            value = quotas.read_quota(service_quotas, quota)
        results.append(
            quotas.quota_check(
                instance_type=largest.instance_type,
                worker_count=args.worker_count,
                vcpus=largest.vcpus,
                quota=quota,
                value=value,
                region=args.region,
            )
        )
    return results


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
            costs[w.instance_id] = prices.accrued_spot_cost(history, w.zone, w.launch_time, w.end(now))
    return costs


def _audio_format(extra_vars: dict[str, str], outputs: dict[str, Any]) -> str:
    """The format the deployed workers write, which names their files: --var audio_format, else
    terraform's output, else terraform's default."""
    return extra_vars.get("audio_format") or outputs.get("audio_format") or "wav"


def _worker_tag(extra_vars: dict[str, str], outputs: dict[str, Any]) -> dict[str, str]:
    return instances.worker_tag(outputs, extra_vars.get("name", instances.NAME))


def _bucket(
    args: argparse.Namespace, extra_vars: dict[str, str], outputs: dict[str, Any]
) -> str | None:
    return args.bucket or extra_vars.get("bucket_name") or outputs.get("bucket_name")


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
    return batch.examine_done(s3, name, batch.split_progress(prompt_file.jobs, keys), prefix)


def _go_ahead(args: argparse.Namespace, out: Console, question: str, nothing: str) -> bool:
    """Whether to change something: not in a dry run, and --yes or the user's yes; otherwise
    says `nothing` (what was left as it was)."""
    if args.dry_run:
        out.say(f"Dry run: stopping before the question. {nothing}")
        return False
    if not _confirmed(args, out, question):
        out.say(nothing)
        return False
    return True


def _confirmed(args: argparse.Namespace, out: Console, question: str) -> bool:
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


def _apply(
    root: TerraformRoot, variables: dict[str, Value], args: argparse.Namespace, out: Console
) -> int:
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
    name = outputs.get("autoscaling_group_name") or "(no autoscaling_group_name in the outputs)"
    if args.keep_alive:
        warning = (
            "The instances keep costing money after the batch (--keep-alive) until you run: "
            f"{_destroy_command(root)}"
        )
    else:
        warning = (
            "Each instance costs money until its workers finish the batch (or after "
            f"{args.max_hours:g} h) and scale it in; the bucket and the group stay until you "
            f"run: {_destroy_command(root)}"
        )
    out.say(
        "",
        f"Launched: Auto Scaling group {name}, {args.worker_count} × "
        f"{' or '.join(args.instance_types)} spot; it starts the workers and replaces "
        "interrupted ones",
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
