"""The launcher's commands and options: one argparse parser per command, each with only its own
options, and the defaults their help texts show (the docs' option tables are generated from it)."""

from __future__ import annotations

import argparse
import os
import re
from pathlib import Path
from typing import NoReturn

from contract.defaults import (
    DEFAULT_INSTANCE_TYPE,
    DEFAULT_MAX_HOURS,
    DEFAULT_MAX_PRICE,
    MAX_HOURS,
    MAX_PRICE_USD_PER_HOUR,
)
from launcher import estimate, region

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DOWNLOAD_DIR = "songs"
# AWS keeps 90 days of spot price history.
MAX_PRICE_WINDOW_HOURS = 90 * 24
# Bounds of the estimate's inputs: past them a value is a typo (1e-300 for 0.3), and the estimate
# would print hundreds of digits. 0.01 audio-s per second is 100 s of work per second of song.
MIN_REALTIME_FACTOR, MAX_REALTIME_FACTOR = 0.01, 100.0
MAX_BOOT_OVERHEAD_MIN = 24 * 60
# Far above the spot vCPU quota of most accounts; the quota check tells the real limit.
MAX_WORKER_COUNT = 1000

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


class UsageError(Exception):
    """A problem the user can fix; printed as one line on stderr, exit status 2."""


class _Parser(argparse.ArgumentParser):
    """argparse's own refusals (a value it cannot convert, a missing value) become a UsageError,
    so they print as one line like every other usage error, not the usage text and a line."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


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
            "them); refused: a name terraform/variables.tf does not declare, variables with an "
            "option of their own (such as max_price), availability_zones (the launcher sets it) "
            "and the replaced instance_type, availability_zone and shutdown_when_done"
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
            f"spot max price in USD per hour per instance, above 0 and at most "
            f"{MAX_PRICE_USD_PER_HOUR:g} (the worker's bound); the estimate and the "
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
            f"instances, the group's size, 1 to {MAX_WORKER_COUNT}; they share the generation "
            "time and each "
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
            f"batch's state; above 0 and at most {MAX_HOURS:g} (30 days); terraform's max_hours "
            "(default: %(default)g)"
        ),
    )
    _bucket_option(parser, "to look for finished songs in, left out of the estimate")
    _estimate_options(parser)
    _source_options(parser)
    _answer_options(parser)


def _estimate_options(parser: argparse.ArgumentParser) -> None:
    """The estimate's assumptions and the price history it summarises."""
    parser.add_argument(
        "--realtime-factor",
        type=float,
        default=estimate.DEFAULT_REALTIME_FACTOR,
        metavar="FACTOR",
        help=(
            f"audio seconds generated per wall-clock second per GPU (one worker runs per GPU), "
            f"{MIN_REALTIME_FACTOR:g} to {MAX_REALTIME_FACTOR:g}; "
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
            f"model load); an assumption, 0 to {MAX_BOOT_OVERHEAD_MIN} (default: %(default)g)"
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


def _source_options(parser: argparse.ArgumentParser) -> None:
    """Where the workers' code and prompts come from."""
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
            "branch, tag or commit the workers run; push it first, they clone from the remote. "
            "The launch pins the commit it names on the remote then, so replacements run the same "
            "code (default: the current branch, the commit when HEAD is detached)"
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


def _answer_options(parser: argparse.ArgumentParser) -> None:
    """How the question is answered, or not asked."""
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

