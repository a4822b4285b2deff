"""`launcher download [DIR]`: the batch's songs, cost report and listening page copied into DIR,
only what is new or changed."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import click
from botocore.exceptions import ClientError

from contract.aws import error_code
from contract.bucket import PAGE_KEY
from launcher import deployment, download
from launcher.commands.common import (
    Argument,
    aws_answers,
    bucket_option,
    command,
    common_options,
    prepared,
)
from launcher.deps import Console, Deps
from launcher.options import DEFAULT_DOWNLOAD_DIR, UsageError
from launcher.tf import TerraformRoot
from launcher.validate import Place, split_bucket

SUMMARY = (
    "copy the batch's songs, cost report and listening page into DIR, only what is new or changed"
)
DIR_HELP = f"the folder to copy into, created if missing (default: {DEFAULT_DOWNLOAD_DIR})"


@command("download", SUMMARY)
@common_options
@click.argument(
    "directory",
    cls=Argument,
    type=Place(),
    metavar="[DIR]",
    required=False,
    default=DEFAULT_DOWNLOAD_DIR,
    help=DIR_HELP,
)
@bucket_option("to copy from")
@click.option(
    "--prefix",
    default="",
    metavar="PREFIX",
    help="the batch's folder in the bucket, as in the worker's s3://BUCKET/PREFIX; or give it in "
    "--bucket (default: the bucket's root)",
)
@click.option("--logs", is_flag=True, help="copy the workers' logs/ as well")
@click.pass_obj
def download_command(deps: Deps, **params: Any) -> int:
    args, extra_vars = prepared("download", params, deps)
    with aws_answers(args):
        return download_batch(args, extra_vars, deps)


def download_batch(args: SimpleNamespace, extra_vars: dict[str, str], deps: Deps) -> int:
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
