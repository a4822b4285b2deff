"""A running group with songs missing: its progress, and the offer to raise it back to its
worker count (clearing the failed-boot records that stopped it) rather than apply again."""

from __future__ import annotations

import shlex
from types import SimpleNamespace
from typing import Any

from contract.bucket import BOOT_FAILURES_PREFIX
from contract.prompts import PromptFile
from launcher import boot_failures, deployment, failed, group
from launcher.answer import go_ahead
from launcher.deployment import shown
from launcher.deps import Deps
from launcher.options import UsageError
from launcher.tf import TerraformRoot
from launcher.validate import split_bucket


def offer_raise(
    args: SimpleNamespace,
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
    bucket = deployment.bucket_of(args, extra_vars, outputs)
    s3 = deps.s3_client(args.region)
    progress = deployment.progress_of(s3, bucket, prompt_file)
    given_up = deployment.failed_for_good(s3, bucket, progress, out)
    failed_names = {song.job.file_name for song in given_up}
    missing = [
        job
        for job in (progress.missing if progress else prompt_file.jobs)
        if job.file_name not in failed_names
    ]
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
            f"  copy it:         {deps.program} download",
            f"  then stop all:   {deployment.destroy_command(root)}",
        )
        return 0
    if found.desired >= wanted:
        out.say(
            f"The group already wants {found.desired} worker{'s' if found.desired != 1 else ''} "
            f"and replaces interrupted ones by itself. Follow it with `{deps.program} status`."
        )
        return 0
    if wanted > found.max_size:
        raise UsageError(
            f"--worker-count {wanted} is above the group's maximum size "
            f"{found.max_size}; change it with `terraform -chdir="
            f"{shlex.quote(shown(root.working_dir))} apply -var worker_count={wanted}`"
        )
    boots = _warn_failed_boots(s3, bucket, deps) if progress is not None else None
    recorded = len(boots.records) + boots.older + boots.unreadable if boots else 0
    question = (
        f"Raise the group from {found.desired} to {wanted} "
        f"worker{'s' if wanted != 1 else ''}"
        + (f" and clear its {recorded} failed-boot record{'s' if recorded != 1 else ''}" if recorded else "")
        + "? [y/N] "
    )
    if not go_ahead(args, out, question, "Nothing changed."):
        return 0
    if recorded:
        name, prefix = split_bucket(bucket)
        with deployment.s3_reading(name, prefix + BOOT_FAILURES_PREFIX):
            cleared = boot_failures.clear(s3, name, prefix)
        out.say(
            f"Cleared {cleared} failed-boot record{'s' if cleared != 1 else ''} from "
            f"s3://{name}/{prefix}{BOOT_FAILURES_PREFIX}: the count toward max_failed_boots starts "
            "again (each boot's log stays in logs/)."
        )
    group.raise_group(deps.autoscaling_client(args.region), found.name, wanted)
    out.say(
        f"Desired capacity of {found.name} set to {wanted}: Auto Scaling launches the "
        f"workers, which resume the missing songs. Follow them with `{deps.program} status`."
    )
    return 0


def _warn_failed_boots(
    s3: Any, bucket: str | None, deps: Deps
) -> boot_failures.BootFailures | None:
    """Before a raise: the failed boots recorded; when they set the group to 0, the last cause."""
    if bucket is None:
        return None
    name, prefix = split_bucket(bucket)
    with deployment.s3_reading(name, prefix + BOOT_FAILURES_PREFIX):
        boots = boot_failures.read_boot_failures(s3, name, prefix)
    zeroed = boot_failures.group_zeroed(boots)
    if zeroed is not None:
        print(
            f"warning: the group was set to 0 after failed boots ({zeroed.instance_id}: "
            f"{zeroed.reason}); raise it once the cause is fixed (`{deps.program} status` "
            "lists them)",
            file=deps.console.stderr,
        )
    return boots


