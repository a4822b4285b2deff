"""`launcher` or `launcher launch` (the default command): its options; the launch itself is
launcher.launch."""

from __future__ import annotations

from typing import Any

import click

from contract.defaults import DEFAULT_INSTANCE_TYPE, DEFAULT_MAX_HOURS, MAX_HOURS
from launcher import estimate
from launcher.commands.common import (
    aws_answers,
    batch_options,
    bucket_option,
    command,
    common_options,
    prepared,
    stacked,
)
from launcher.deps import Deps
from launcher.launch import launch
from launcher.options import (
    INSTANCE_TYPE_NAME,
    MAX_BOOT_OVERHEAD_MIN,
    MAX_PRICE_WINDOW_HOURS,
    MAX_REALTIME_FACTOR,
    MAX_WORKER_COUNT,
    MIN_REALTIME_FACTOR,
    SSM_PARAMETER_NAME,
)
from launcher.validate import Bounded, Pattern

SUMMARY = (
    "(the default) check for a running group, spot prices and the batch's cost, ask, then "
    "terraform apply; with a running group, offer to raise it back to its worker count"
)


def _instance_types(ctx: click.Context, param: click.Parameter, given: tuple[str, ...]) -> list[str]:
    # Repeated types count once; the order given is kept.
    return list(dict.fromkeys(given or [DEFAULT_INSTANCE_TYPE]))


# What the group launches: the types, how many, for how long.
fleet_options = stacked(
    click.option(
        "--instance-type",
        "instance_types",
        type=Pattern(
            INSTANCE_TYPE_NAME,
            f"an EC2 instance type such as {DEFAULT_INSTANCE_TYPE}",
            lower=True,
        ),
        multiple=True,
        callback=_instance_types,
        metavar="TYPE",
        help=(
            "GPU instance type of the workers; repeat it for several types of one GPU "
            "class, a wider spot capacity pool, all at one max price; terraform accepts "
            "the NVIDIA families g4dn, g5, g6, g6e, gr6, p4d, p4de, p5, p5e and p5en "
            f"(default: {DEFAULT_INSTANCE_TYPE})"
        ),
    ),
    click.option(
        "--worker-count",
        type=Bounded(int, 1, MAX_WORKER_COUNT, above=False),
        metavar="N",
        help=(
            f"instances, the group's size, 1 to {MAX_WORKER_COUNT}; they share the "
            "generation time and each pays the boot overhead (default: 1; with a running "
            "group, the count to raise it back to: its maximum size, which terraform "
            "sets to the launch's worker count)"
        ),
    ),
    click.option(
        "--keep-alive",
        is_flag=True,
        help=(
            "keep each instance up, and billing, after its workers finished, instead of "
            "scaling it in (terraform's keep_alive)"
        ),
    ),
    click.option(
        "--max-hours",
        type=Bounded(float, 0, MAX_HOURS, " (30 days)", above=True),
        default=DEFAULT_MAX_HOURS,
        metavar="HOURS",
        help=(
            "hours after which a worker checkpoints and scales its instance in, whatever "
            f"the batch's state; above 0 and at most {MAX_HOURS:g} (30 days); terraform's "
            f"max_hours (default: {DEFAULT_MAX_HOURS:g})"
        ),
    ),
)


# The estimate's assumptions and the price history it summarises.
estimate_options = stacked(
    click.option(
        "--realtime-factor",
        type=Bounded(
            float, MIN_REALTIME_FACTOR, MAX_REALTIME_FACTOR, " audio-s per second",
            above=False,
        ),
        default=estimate.DEFAULT_REALTIME_FACTOR,
        metavar="FACTOR",
        help=(
            "audio seconds generated per wall-clock second per GPU (one worker runs per "
            f"GPU), {MIN_REALTIME_FACTOR:g} to {MAX_REALTIME_FACTOR:g}; an assumption, on "
            "the slow side for musicgen-small on a T4 (g4dn.xlarge), as long songs "
            "re-generate overlapping windows: measure yours as requested_duration_s / "
            "generation_time_s in a finished cost_report.csv "
            f"(default: {estimate.DEFAULT_REALTIME_FACTOR:g})"
        ),
    ),
    click.option(
        "--boot-overhead-min",
        type=Bounded(float, 0, MAX_BOOT_OVERHEAD_MIN, above=False),
        default=estimate.DEFAULT_BOOT_OVERHEAD_MIN,
        metavar="MINUTES",
        help=(
            "minutes each instance is paid for before it generates anything (boot, "
            f"bootstrap, model load); an assumption, 0 to {MAX_BOOT_OVERHEAD_MIN} "
            f"(default: {estimate.DEFAULT_BOOT_OVERHEAD_MIN:g})"
        ),
    ),
    click.option(
        "--price-window-hours",
        type=Bounded(
            float, 0, MAX_PRICE_WINDOW_HOURS, " (90 days of spot price history)",
            above=True,
        ),
        default=24.0,
        metavar="HOURS",
        help=(
            "span of spot price history to summarise, above 0 and at most "
            f"{MAX_PRICE_WINDOW_HOURS}, as AWS keeps 90 days (default: 24)"
        ),
    ),
)


# Where the workers' code and prompts come from.
source_options = stacked(
    click.option(
        "--git-url",
        metavar="URL",
        help=(
            "repository the workers clone; https:// only, the workers get only HTTPS "
            "out (default: `git remote get-url origin`)"
        ),
    ),
    click.option(
        "--git-ref",
        metavar="REF",
        help=(
            "branch, tag or commit the workers run; push it first, they clone from the "
            "remote. The launch pins the commit it names on the remote then, so "
            "replacements run the same code (default: the current branch, the commit "
            "when HEAD is detached)"
        ),
    ),
    click.option(
        "--git-token-parameter",
        type=Pattern(SSM_PARAMETER_NAME, "an SSM parameter name such as /musicgen/git-token"),
        metavar="NAME",
        help=(
            "SSM Parameter Store SecureString holding a read-only token for a private "
            "repository, e.g. /musicgen/git-token; see docs/launcher-preflight.md "
            "(default: none, a public repository)"
        ),
    ),
)


# How the question is answered, or not asked.
answer_options = stacked(
    click.option(
        "--yes",
        is_flag=True,
        help="launch, or raise a running group, without asking, for automation; "
        "warnings are still printed",
    ),
    click.option(
        "--force",
        is_flag=True,
        help="launch although every zone's current spot price is above the max price "
        "(refused otherwise)",
    ),
    click.option(
        "--dry-run",
        is_flag=True,
        help="do everything up to the question (to launch, or to raise the group), then "
        "stop; changes nothing and needs no terminal",
    ),
)


@command("launch", SUMMARY)
@common_options
@batch_options
@fleet_options
@bucket_option("to look for finished songs in, left out of the estimate")
@estimate_options
@source_options
@answer_options
@click.pass_obj
def launch_command(deps: Deps, **params: Any) -> int:
    args, extra_vars = prepared("launch", params, deps)
    # A running group is raised back to the count it was launched with unless one is given.
    args.worker_count_given = args.worker_count is not None
    if args.worker_count is None:
        args.worker_count = 1
    with aws_answers(args):
        return launch(args, extra_vars, deps)
