"""`launcher` (the default command): a running group is offered a raise; otherwise the spot
prices, the checks before launch, the batch and its estimate, the question, then terraform
apply with the AMI and the commit the checks found, so every instance runs what was checked."""

from __future__ import annotations

import shlex
from datetime import timedelta
from types import SimpleNamespace
from typing import Any

from launcher import (
    batch,
    boot_failures,
    checks,
    deployment,
    estimate,
    failed,
    gitinfo,
    gpus,
    group,
    instances,
    prices,
)
from launcher.deployment import shown
from launcher.deps import Console, Deps
from launcher.money import usd
from launcher.options import REPO_ROOT, UsageError
from launcher.preflight import Market, Preflight, run_checks, show_checks, show_failures
from launcher.tf import TerraformRoot, Value
from launcher.validate import split_bucket
from worker.prompts import Job, PromptFile
from worker.report import REPORT_KEY

BOLD, PLAIN = "\033[1m", "\033[0m"


def launch(args: SimpleNamespace, extra_vars: dict[str, str], deps: Deps) -> int:
    out = deps.console
    deployment.require_terraform()
    # A new launch applies --var audio_format, else terraform's default.
    prompt_file = deployment.load_prompts(args.prompts, extra_vars.get("audio_format", "wav"))
    root = TerraformRoot(args.terraform_dir)
    outputs = root.outputs()
    running = deployment.running_group(args, deps, outputs)
    if running is not None:
        # A running group's workers write the format it was launched with.
        launched_format = deployment.audio_format(extra_vars, outputs)
        prompt_file = deployment.load_prompts(args.prompts, launched_format)
        return offer_raise(args, extra_vars, deps, prompt_file, root, outputs, running)
    ec2 = deps.ec2_client(args.region)
    workers = instances.find_workers(ec2, deployment.worker_tag(extra_vars, outputs))
    if workers:
        return _already_running(ec2, workers, args, deps, root, outputs)
    git_url, git_ref = _git_source(args)
    market, usable = _show_market(args, deps, ec2)
    type_gpus = _type_gpus(ec2, args)
    preflight = run_checks(args, extra_vars, deps, ec2, market, (git_url, git_ref), type_gpus)
    show_checks(out, preflight)

    out.say(*batch.format_prompts(args.prompts, prompt_file))
    bucket = deployment.bucket_of(args, extra_vars, outputs)
    progress = deployment.progress_of(deps.s3_client(args.region), bucket, prompt_file)
    out.say(*batch.format_bucket_for_launch(bucket, progress))
    to_generate = progress.missing if progress else prompt_file.jobs
    if not to_generate:
        out.say(f"Nothing to generate: every song in {args.prompts} is already in the bucket.")
        out.say("Nothing launched.")
        return 0
    out.say(*_estimate(args, to_generate, type_gpus), _code_line(git_url, git_ref, preflight), "")
    if preflight.failed:
        show_failures(out, preflight)
        return 2
    question = (
        f"Launch {args.worker_count} × {' or '.join(args.instance_types)} spot in {args.region} "
        f"at max {usd(args.max_price)}/h? [y/N] "
    )
    if not _go_ahead(args, out, question, "Nothing launched."):
        return 0
    return _apply(root, _variables(args, extra_vars, git_url, preflight, usable), args, deps)


def _already_running(
    ec2: Any,
    workers: list[instances.Worker],
    args: SimpleNamespace,
    deps: Deps,
    root: TerraformRoot,
    outputs: dict[str, Any],
) -> int:
    """Tagged workers run without a group in this terraform state: nothing is launched. Without
    outputs in --terraform-dir they belong to another state, which is the one to destroy."""
    out = deps.console
    running = "A worker is" if len(workers) == 1 else f"{len(workers)} workers are"
    out.say(f"{running} already running in {args.region}; not launching another:")
    out.say(*deployment.workers_table(ec2, workers, args, deps))
    if outputs:
        stop = f"stop it with `{deployment.destroy_command(root)}`"
    else:
        stop = (
            f"it was not launched from {deployment.folder_shown(root.working_dir)} (no terraform "
            "state there): stop it with `terraform destroy` in the terraform folder that launched "
            "it, or terminate it in the EC2 console"
        )
    out.say(f"Follow it with `{deps.program} status`; {stop}.")
    return 0


def _show_market(
    args: SimpleNamespace, deps: Deps, ec2: Any
) -> tuple[Market, list[str]]:
    """The price table of each type over the zones the workers can launch into, the zones the
    group will use, and what the checks judge of them."""
    out = deps.console
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
        *prices.format_zones(
            stats_by_type,
            usable,
            region=args.region,
            max_price=args.max_price,
            default_vpc=network.vpc_id is not None,
        ),
        "",
    )
    above_max = bool(all_stats) and not usable
    if above_max and args.force:
        print(prices.price_warning(args.max_price), file=out.stderr)
    refusal = (
        prices.price_refusal(all_stats, args.max_price) if above_max and not args.force else None
    )
    zones = usable or sorted({s.zone for s in all_stats})
    return Market(network, zones, refusal), usable


def _type_gpus(ec2: Any, args: SimpleNamespace) -> list[gpus.InstanceGpus]:
    found = []
    for instance_type in args.instance_types:
        try:
            found.append(gpus.describe_gpus(ec2, instance_type, args.region))
        except gpus.NoGpuError as exc:
            raise UsageError(f"--instance-type: {exc}") from None
    return found


def _estimate(
    args: SimpleNamespace, to_generate: list[Job], type_gpus: list[gpus.InstanceGpus]
) -> list[str]:
    # Of several types the group may launch any: the one with the fewest GPUs takes longest.
    counted = min(type_gpus, key=lambda g: g.count)
    return estimate.format_estimate(
        estimate.estimate_batch(
            sum(job.duration_s for job in to_generate),
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
    )


def _code_line(url: str, ref: str, preflight: Preflight) -> str:
    if preflight.commit is None:
        return f"Worker code: {url} @ {ref} (no commit found on the remote: see the git checks)"
    return (
        f"Worker code: {url} @ {ref}, commit {preflight.commit[:12]} (every instance, "
        "replacements too, runs this commit)"
    )


def _variables(
    args: SimpleNamespace,
    extra_vars: dict[str, str],
    git_url: str,
    preflight: Preflight,
    usable: list[str],
) -> dict[str, Value]:
    variables: dict[str, Value] = {
        "name": instances.NAME,
        "region": args.region,
        "instance_types": args.instance_types,
        "max_price": args.max_price,
        "worker_count": args.worker_count,
        "git_repo_url": git_url,
        # The commit the checks compared, not the branch: a push after the launch would
        # otherwise reach only the replacements, which would run other code and prompts.
        "git_ref": preflight.commit or args.git_ref,
    }
    if usable:
        variables["availability_zones"] = usable
    variables["keep_alive"] = args.keep_alive
    variables["max_hours"] = _number(args.max_hours)
    if args.git_token_parameter:
        variables["git_token_parameter"] = args.git_token_parameter
    if preflight.image is not None:
        # The AMI the user saw, not whatever is newest when terraform runs.
        variables["ami_id"] = preflight.image.image_id
    variables.update(extra_vars)
    return variables


def _number(value: float) -> float:
    """12.0 as 12 in the tfvars, as a user would write it."""
    return int(value) if value.is_integer() else value


def _git_source(args: SimpleNamespace) -> tuple[str, str]:
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
    args.git_ref = ref
    return url, ref


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
    if not _go_ahead(args, out, question, "Nothing changed."):
        return 0
    if recorded:
        name, prefix = split_bucket(bucket)
        with deployment.s3_reading(name, prefix + boot_failures.PREFIX):
            cleared = boot_failures.clear(s3, name, prefix)
        out.say(
            f"Cleared {cleared} failed-boot record{'s' if cleared != 1 else ''} from "
            f"s3://{name}/{prefix}{boot_failures.PREFIX}: the count toward max_failed_boots starts "
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
    with deployment.s3_reading(name, prefix + boot_failures.PREFIX):
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


def _go_ahead(args: SimpleNamespace, out: Console, question: str, nothing: str) -> bool:
    """Whether to change something: not in a dry run, and --yes or the user's yes; otherwise
    says `nothing` (what was left as it was)."""
    if args.dry_run:
        out.say(f"Dry run: stopping before the question. {nothing}")
        return False
    if not _confirmed(args, out, question):
        out.say(nothing)
        return False
    return True


def _confirmed(args: SimpleNamespace, out: Console, question: str) -> bool:
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
    root: TerraformRoot, variables: dict[str, Value], args: SimpleNamespace, deps: Deps
) -> int:
    out = deps.console
    out.say(f"Variables for terraform written to {shown(root.write_variables(variables))}")
    out.stdout.flush()
    if not root.is_initialized():
        code = root.init()
        if code != 0:
            out.error(f"terraform init failed (exit {code}); see above")
            return 1
    code = root.apply()
    if code != 0:
        out.error(
            f"terraform apply failed (exit {code}); see terraform's error above. Anything it "
            f"created is in its state: fix and rerun, or `{deployment.destroy_command(root)}`"
        )
        return 1
    outputs = root.outputs()
    bucket = outputs.get("bucket_name", "?")
    name = outputs.get("autoscaling_group_name") or "(no autoscaling_group_name in the outputs)"
    destroy = deployment.destroy_command(root)
    if args.keep_alive:
        warning = (
            "The instances keep costing money after the batch (--keep-alive) until you run: "
            f"{destroy}"
        )
    else:
        warning = (
            "Each instance costs money until its workers finish the batch (or after "
            f"{args.max_hours:g} h) and scale it in; the bucket and the group stay until you "
            f"run: {destroy}"
        )
    out.say(
        "",
        f"Launched: Auto Scaling group {name}, {args.worker_count} × "
        f"{' or '.join(args.instance_types)} spot; it starts the workers and replaces "
        "interrupted ones",
        f"Bucket:   {bucket}",
        "Next steps:",
        f"  follow progress:  {deps.program} status",
        f"  songs appear in:  s3://{bucket}/  (cost report: s3://{bucket}/{REPORT_KEY},"
        f" run logs: s3://{bucket}/logs/)",
        f"{BOLD}{warning}{PLAIN}" if out.stdout_is_tty else warning,
    )
    return 0
