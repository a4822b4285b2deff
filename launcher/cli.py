"""The launcher's entry: parse, check the options, pick the region, run the command; every
refusal is one line on stderr (exit 2), never a traceback. `launcher status` and `launcher
download` live here; the launch itself in launcher.launch."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError, ProfileNotFound
from botocore.parsers import ResponseParserError

from contract.aws import error_code
from contract.bucket import PAGE_KEY, REPORT_KEY
from launcher import (
    batch,
    boot_failures,
    deployment,
    download,
    group,
    instances,
    region,
)
from launcher.deps import Console, Deps
from launcher.launch import launch
from launcher.options import DEFAULT_DOWNLOAD_DIR, REPO_ROOT, UsageError, build_parser, parse_args
from launcher.tf import TerraformError, TerraformRoot, declared_variables, terraform_installed
from launcher.validate import check_options, split_bucket

__all__ = ["Console", "Deps", "build_parser", "main"]


def main(argv: list[str] | None = None, deps: Deps | None = None) -> int:
    deps = deps or Deps.system()
    out = deps.console
    args: argparse.Namespace | None = None
    try:
        args = parse_args(sys.argv[1:] if argv is None else argv)
        declared, source = _declared(args.terraform_dir)
        extra_vars = check_options(args, declared, source)
        chosen_region = region.resolve_region(args.region, deps.session_region(), os.environ)
        args.region, args.region_source = chosen_region.name, chosen_region.source
        if args.command == "status":
            return status(args, extra_vars, deps)
        if args.command == "download":
            return download_command(args, extra_vars, deps)
        return launch(args, extra_vars, deps)
    except (UsageError, ProfileNotFound) as exc:
        out.error(str(exc))
        return 2
    except NoCredentialsError:
        out.error(
            "no AWS credentials found; configure them with `aws configure`, "
            "AWS_PROFILE or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY"
        )
        return 2
    except ResponseParserError as exc:
        # Not AWS's XML or JSON: a proxy's or captive portal's page, or an endpoint (such as an
        # emulator) that does not serve the region or the call.
        out.error(
            f"AWS: an answer in region {getattr(args, 'region', None) or '?'} could not be read "
            f"({str(exc).splitlines()[0]}); check --region, AWS_ENDPOINT_URL and any proxy "
            "(HTTPS_PROXY) between you and AWS"
        )
        return 2
    except (ClientError, BotoCoreError) as exc:
        out.error(f"AWS: {exc}")
        return 2
    except TerraformError as exc:
        out.error(str(exc))
        return 1


def _declared(terraform_dir: Path) -> tuple[dict[str, str], str]:
    """The variables --var may set: those the configuration in --terraform-dir declares, or,
    before that folder holds one, those of the configuration this checkout ships."""
    try:
        declared = declared_variables(terraform_dir)
    except OSError:
        declared = {}
    if declared:
        return declared, deployment.folder_shown(terraform_dir) + "*.tf"
    return declared_variables(REPO_ROOT / "terraform"), "terraform/variables.tf"


def status(args: argparse.Namespace, extra_vars: dict[str, str], deps: Deps) -> int:
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
        workers = instances.find_workers(ec2, deployment.worker_tag(extra_vars, outputs))
        if workers:
            costs = deployment.spot_costs(ec2, workers, deps)
            out.say(
                f"Workers in {args.region}:",
                *deployment.workers_table(ec2, workers, args, deps, costs),
            )
        else:
            out.say(f"Workers in {args.region}: none pending or running")

    bucket = deployment.bucket_of(args, extra_vars, outputs)
    if bucket is None:
        out.say(
            f"Bucket: unknown (no terraform outputs in "
            f"{deployment.folder_shown(args.terraform_dir)}; pass --bucket to name one)"
        )
        return 0
    s3 = deps.s3_client(args.region)
    progress = deployment.progress_of(s3, bucket, prompt_file)
    if progress is None:
        out.say(f"Bucket {bucket}: does not exist")
        return 0
    name, prefix = split_bucket(bucket)
    with deployment.s3_reading(name, prefix + boot_failures.PREFIX):
        boots = boot_failures.read_boot_failures(s3, name, prefix)
    out.say(
        *boot_failures.format_boot_failures(
            boots,
            where=f"s3://{name}/{prefix}{boot_failures.PREFIX}",
            desired=found.desired if found is not None else None,
            program=deps.program,
        )
    )
    with deployment.s3_reading(name, prefix + REPORT_KEY):
        report = batch.read_cost_report(s3, name, prefix)
    given_up = deployment.failed_for_good(s3, bucket, progress, out)
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


def download_command(args: argparse.Namespace, extra_vars: dict[str, str], deps: Deps) -> int:
    out = deps.console
    if args.bucket is None and "bucket_name" not in extra_vars:
        deployment.require_terraform()
    known = args.bucket or extra_vars.get("bucket_name")
    outputs = {} if known else TerraformRoot(args.terraform_dir).outputs()
    bucket = deployment.bucket_of(args, extra_vars, outputs)
    if bucket is None:
        raise UsageError(
            f"no bucket to download from: no terraform outputs in "
            f"{deployment.folder_shown(args.terraform_dir)}; pass --bucket"
        )
    bucket, prefix = split_bucket(bucket)
    if args.prefix.strip("/"):
        if prefix:
            raise UsageError("give the batch's prefix once: in --bucket or with --prefix")
        prefix = f"{args.prefix.strip('/')}/"
    source = f"s3://{bucket}/{prefix}"
    directory = Path(args.directory or DEFAULT_DOWNLOAD_DIR)
    if directory.exists() and not directory.is_dir():
        raise UsageError(f"{directory} exists and is not a folder")
    try:
        with deployment.s3_reading(bucket, prefix):
            result = download.download_batch(
                deps.s3_client(args.region),
                bucket,
                prefix,
                directory,
                include_logs=args.logs,
                progress=out.stderr,
            )
    except download.FolderError as exc:
        raise UsageError(str(exc)) from None
    except ClientError as exc:
        if error_code(exc) == "NoSuchBucket":
            raise UsageError(f"bucket {bucket} does not exist") from None
        raise
    _report_download(out, result, source, directory)
    return 1 if result.failed else 0


def _report_download(
    out: Console, result: download.Result, source: str, directory: Path
) -> None:
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
        out.error(f"could not copy {source}{key}: {why}")
    page = download.page_path(directory)
    if page is not None:
        out.say(f"Listen: {page.resolve().as_uri()}")
    elif any(item.key == PAGE_KEY for item in plan.copy):
        out.say(f"The listening page {source}{PAGE_KEY} could not be copied (see the error above).")
    else:
        out.say(f"No listening page in {source} yet: the worker writes it with the cost report.")


def _files(count: int, noun: str = "file") -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"
