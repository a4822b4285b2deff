"""`launcher` (the default command): a running group is offered a raise; otherwise the spot
prices, the checks before launch, the batch and its estimate, the question, then terraform
apply with the AMI and the commit the checks found, so every instance runs what was checked."""

from __future__ import annotations

from datetime import timedelta
from types import SimpleNamespace
from typing import Any

from contract.bucket import LOGS_PREFIX, REPORT_KEY
from contract.defaults import DEFAULT_AUDIO_FORMAT, usd
from contract.prompts import Job, PromptFile
from launcher import (
    batch,
    checks,
    deployment,
    estimate,
    gitinfo,
    gpus,
    instances,
    prices,
)
from launcher.answer import go_ahead
from launcher.deployment import shown
from launcher.deps import Deps
from launcher.options import REPO_ROOT, UsageError
from launcher.preflight import Market, Plan, Preflight, run_checks, show_checks, show_failures
from launcher.raising import offer_raise
from launcher.tf import TerraformRoot, Value

BOLD, PLAIN = "\033[1m", "\033[0m"


def launch(args: SimpleNamespace, extra_vars: dict[str, str], deps: Deps) -> int:
    """A running group is offered a raise, tagged workers are named; otherwise the launch's
    steps in turn: market, preflight, estimate, confirm, apply."""
    deployment.require_terraform()
    deployment.require_folder(args.terraform_dir)
    # A new launch applies --var audio_format, else terraform's default.
    prompt_file = deployment.load_prompts(args.prompts, extra_vars.get("audio_format", DEFAULT_AUDIO_FORMAT))
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
    plan = market(args, extra_vars, deps, ec2)
    preflight = run_checks(plan, deps)
    show_checks(deps.console, preflight)
    to_generate = show_estimate(plan, preflight, prompt_file, outputs, deps)
    if not to_generate:
        return 0
    if preflight.failed:
        show_failures(deps.console, preflight)
        return 2
    if not confirm(plan, deps):
        return 0
    return _apply(root, _variables(plan, preflight), args, deps)


def market(args: SimpleNamespace, extra_vars: dict[str, str], deps: Deps, ec2: Any) -> Plan:
    """The code the workers would run, the spot prices and zones of each type, and its GPUs:
    what the checks judge and the estimate counts."""
    git_url, git_ref = _git_source(args)
    found, usable = _show_market(args, deps, ec2)
    return Plan(
        args=args,
        extra_vars=extra_vars,
        ec2=ec2,
        git_url=git_url,
        git_ref=git_ref,
        market=found,
        usable_zones=usable,
        type_gpus=_type_gpus(ec2, args),
    )


def show_estimate(
    plan: Plan,
    preflight: Preflight,
    prompt_file: PromptFile,
    outputs: dict[str, Any],
    deps: Deps,
) -> list[Job]:
    """The batch, the songs its bucket already holds, and what the rest would cost; the songs
    left to generate (none: nothing to launch, said so)."""
    out, args = deps.console, plan.args
    out.say(*batch.format_prompts(args.prompts, prompt_file))
    bucket = deployment.bucket_of(args, plan.extra_vars, outputs)
    progress = deployment.progress_of(deps.s3_client(args.region), bucket, prompt_file)
    out.say(*batch.format_bucket_for_launch(bucket, progress))
    to_generate = progress.missing if progress else prompt_file.jobs
    if not to_generate:
        out.say(f"Nothing to generate: every song in {args.prompts} is already in the bucket.")
        out.say("Nothing launched.")
        return []
    out.say(
        *_estimate(args, to_generate, plan.type_gpus),
        _code_line(plan.git_url, plan.git_ref, preflight),
        "",
    )
    return to_generate


def confirm(plan: Plan, deps: Deps) -> bool:
    """The question, answered by the user or by --yes; never asked in a dry run."""
    args = plan.args
    question = (
        f"Launch {args.worker_count} × {' or '.join(args.instance_types)} spot in {args.region} "
        f"at max {usd(args.max_price)}/h? [y/N] "
    )
    return go_ahead(args, deps.console, question, "Nothing launched.")


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


def _variables(plan: Plan, preflight: Preflight) -> dict[str, Value]:
    args = plan.args
    variables: dict[str, Value] = {
        "name": instances.NAME,
        "region": args.region,
        "instance_types": args.instance_types,
        "max_price": args.max_price,
        "worker_count": args.worker_count,
        "git_repo_url": plan.git_url,
        # The commit the checks compared, not the branch: a push after the launch would
        # otherwise reach only the replacements, which would run other code and prompts.
        "git_ref": preflight.commit or args.git_ref,
    }
    if plan.usable_zones:
        variables["availability_zones"] = plan.usable_zones
    variables["keep_alive"] = args.keep_alive
    variables["max_hours"] = _number(args.max_hours)
    if args.git_token_parameter:
        variables["git_token_parameter"] = args.git_token_parameter
    if preflight.image is not None:
        # The AMI the user saw, not whatever is newest when terraform runs.
        variables["ami_id"] = preflight.image.image_id
    variables.update(plan.extra_vars)
    return variables


def _number(value: float) -> float:
    """12.0 as 12 in the variables file, as a user would write it."""
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
        f" run logs: s3://{bucket}/{LOGS_PREFIX})",
        f"{BOLD}{warning}{PLAIN}" if out.stdout_is_tty else warning,
    )
    return 0
