"""`launcher status`: the group (or the tagged workers), its cost and the batch's progress; it
never launches or changes anything."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import click

from contract.bucket import BOOT_FAILURES_PREFIX, REPORT_KEY
from launcher import batch, boot_failures, deployment, group, instances
from launcher.commands.common import (
    aws_answers,
    batch_options,
    bucket_option,
    command,
    common_options,
    prepared,
)
from launcher.deps import Deps
from launcher.tf import TerraformRoot, terraform_installed
from launcher.validate import split_bucket

SUMMARY = (
    "show the group (or the tagged workers), its cost and the batch's progress; never launches "
    "or changes anything"
)


@command("status", SUMMARY)
@common_options
@batch_options
@bucket_option("whose progress to show")
@click.pass_obj
def status_command(deps: Deps, **params: Any) -> int:
    args, extra_vars = prepared("status", params, deps)
    with aws_answers(args):
        return status(args, extra_vars, deps)


def status(args: SimpleNamespace, extra_vars: dict[str, str], deps: Deps) -> int:
    out = deps.console
    if args.bucket is None and "bucket_name" not in extra_vars:
        deployment.require_terraform()
    root = TerraformRoot(args.terraform_dir)
    outputs = root.outputs() if terraform_installed() else {}
    prompt_file = deployment.load_prompts(args.prompts, deployment.audio_format(extra_vars, outputs))
    ec2 = deps.ec2_client(args.region)
    found = deployment.running_group(args, deps, outputs)
    if found is not None:
        out.say(*_group_status(ec2, found, args, deps))
    else:
        out.say(*_workers_status(ec2, args, deps, deployment.worker_tag(extra_vars, outputs)))
    bucket = deployment.bucket_of(args, extra_vars, outputs)
    if bucket is None:
        out.say(
            f"Bucket: unknown (no terraform outputs in "
            f"{deployment.folder_shown(args.terraform_dir)}; pass --bucket to name one)"
        )
        return 0
    out.say(*_batch_status(bucket, prompt_file, found, deps, args.region))
    return 0


def _workers_status(ec2: Any, args: SimpleNamespace, deps: Deps, tag: dict[str, str]) -> list[str]:
    """Without a group in the state: the workers carrying its tag, with what they cost so far."""
    workers = instances.find_workers(ec2, tag)
    if not workers:
        return [f"Workers in {args.region}: none pending or running"]
    costs = deployment.spot_costs(ec2, workers, deps)
    return [f"Workers in {args.region}:", *deployment.workers_table(ec2, workers, args, deps, costs)]


def _batch_status(
    bucket: str, prompt_file: Any, found: group.Group | None, deps: Deps, region: str
) -> list[str]:
    """The failed boots, the songs done and missing, and the cost report, from the bucket."""
    s3 = deps.s3_client(region)
    progress = deployment.progress_of(s3, bucket, prompt_file)
    if progress is None:
        return [f"Bucket {bucket}: does not exist"]
    name, prefix = split_bucket(bucket)
    with deployment.s3_reading(name, prefix + BOOT_FAILURES_PREFIX):
        boots = boot_failures.read_boot_failures(s3, name, prefix)
    lines = boot_failures.format_boot_failures(
        boots,
        where=f"s3://{name}/{prefix}{BOOT_FAILURES_PREFIX}",
        desired=found.desired if found is not None else None,
        program=deps.program,
    )
    with deployment.s3_reading(name, prefix + REPORT_KEY):
        report = batch.read_cost_report(s3, name, prefix)
    given_up = deployment.failed_for_good(s3, bucket, progress, deps.console)
    return [*lines, *batch.format_progress(name, progress, report, prefix, given_up)]


def _group_status(ec2: Any, found: group.Group, args: SimpleNamespace, deps: Deps) -> list[str]:
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
                spot_costs=deployment.spot_costs(ec2, runs, deps),
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
