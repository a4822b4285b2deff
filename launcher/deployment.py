"""What every command reads of a deployment: terraform's outputs, the group, the bucket and its
batch, the prompts file as the workers name its songs, and the suggested commands."""

from __future__ import annotations

import os
import shlex
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from botocore.exceptions import ClientError

from contract.aws import error_code
from contract.bucket import FAILURES_PREFIX
from contract.defaults import DEFAULT_AUDIO_FORMAT
from contract.prompts import SUFFIXES, PromptFile, read_prompts
from launcher import batch, failed, group, instances, prices
from launcher.deps import Console, Deps
from launcher.options import UsageError
from launcher.tf import TerraformRoot, terraform_installed
from launcher.validate import split_bucket


def require_terraform() -> None:
    if not terraform_installed():
        raise UsageError(
            "terraform is not installed or not on PATH "
            "(https://developer.hashicorp.com/terraform/install)"
        )


def require_folder(terraform_dir: Path) -> None:
    """A launch writes its variables into the terraform folder and applies there: checked first,
    not after the prices, the checks and the question."""
    if not terraform_dir.is_dir():
        raise UsageError(f"--terraform-dir {shown(terraform_dir)}: no such folder")


def load_prompts(path: str, audio_format: str) -> PromptFile:
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


def audio_format(extra_vars: dict[str, str], outputs: dict[str, Any]) -> str:
    """The format the deployed workers write, which names their files: --var audio_format, else
    terraform's output, else terraform's default."""
    return extra_vars.get("audio_format") or outputs.get("audio_format") or DEFAULT_AUDIO_FORMAT


def worker_tag(extra_vars: dict[str, str], outputs: dict[str, Any]) -> dict[str, str]:
    return instances.worker_tag(outputs, extra_vars.get("name", instances.NAME))


def bucket_of(
    args: SimpleNamespace, extra_vars: dict[str, str], outputs: dict[str, Any]
) -> str | None:
    return args.bucket or extra_vars.get("bucket_name") or outputs.get("bucket_name")


def running_group(
    args: SimpleNamespace, deps: Deps, outputs: dict[str, Any]
) -> group.Group | None:
    """The group terraform created, when it still exists."""
    name = outputs.get("autoscaling_group_name")
    if not name:
        return None
    return group.describe_group(deps.autoscaling_client(args.region), name)


@contextmanager
def s3_reading(bucket: str, key: str = "") -> Iterator[None]:
    """A read S3 refuses (AccessDenied, or a bare 403 for a HEAD) as one line that names the
    bucket and the key (or prefix) being read, and the permissions it takes."""
    try:
        yield
    except ClientError as exc:
        code = error_code(exc)
        if code not in ("AccessDenied", "403", "AllAccessDisabled"):
            raise
        raise UsageError(
            f"S3 refused to let this AWS identity read s3://{bucket}/{key} ({code}); it needs "
            "s3:ListBucket on the bucket and s3:GetObject on its objects"
        ) from None


def progress_of(s3: Any, bucket: str | None, prompt_file: PromptFile) -> batch.Progress | None:
    if bucket is None:
        return None
    name, prefix = split_bucket(bucket)
    with s3_reading(name, prefix):
        keys = batch.songs_in_bucket(s3, name, prefix)
        if keys is None:
            return None
        return batch.examine_done(s3, name, batch.split_progress(prompt_file.jobs, keys), prefix)


def failed_for_good(
    s3: Any, bucket: str | None, progress: batch.Progress | None, out: Console
) -> list[failed.FailedSong]:
    if bucket is None or progress is None:
        return []
    name, prefix = split_bucket(bucket)
    with s3_reading(name, prefix + FAILURES_PREFIX):
        objects = failed.failure_objects(
            s3, name, prefix, warn=lambda line: print(line, file=out.stderr)
        )
    return failed.failed_for_good(progress.missing, objects)


def workers_table(
    ec2: Any,
    workers: list[instances.Worker],
    args: SimpleNamespace,
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


def spot_costs(
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


def destroy_command(root: TerraformRoot) -> str:
    return f"terraform -chdir={shlex.quote(shown(root.working_dir))} destroy"


def shown(path: Path) -> str:
    """Relative to the current directory when inside it (the usual `terraform`), else absolute."""
    relative = os.path.relpath(path.resolve())
    return str(path.resolve()) if relative.startswith("..") else relative


def folder_shown(path: Path) -> str:
    """A folder as `shown`, with its trailing slash."""
    return os.path.join(shown(path), "")
