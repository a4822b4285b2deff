"""The checks before launch, run together so that one run names every problem: the region, the
AMI, the default VPC, the EBS key, the spot price and vCPU quota, the git remote, its prompts and
its worker code. Passed checks print as a block before the batch; the failures print after the
estimate, so a dry run shows the cost even while the AMI or the remote is not ready yet."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

from launcher import checks, ebs, gitinfo, gitremote, gpus, quotas

if TYPE_CHECKING:
    from launcher.cli import Console, Deps


@dataclass(frozen=True)
class Market:
    """What the price tables found that the checks judge."""

    network: checks.Network
    zones: list[str]  # the zones the group would use (or, when none fits, every priced zone)
    refusal: str | None  # every zone above the max price, without --force


@dataclass(frozen=True)
class Plan:
    """A launch as the market step found it: the options, the code the workers would clone,
    the zones and prices, and each type's GPUs; the checks and the estimate judge it."""

    args: SimpleNamespace
    extra_vars: dict[str, str]
    ec2: Any
    git_url: str
    git_ref: str
    market: Market
    usable_zones: list[str]  # the zones within the max price, which terraform is given
    type_gpus: list[gpus.InstanceGpus]


@dataclass(frozen=True)
class Preflight:
    results: list[checks.Check]
    image: checks.Image | None  # the AMI found to pin; None when --var ami_id names one
    commit: str | None  # the commit --git-ref names on the remote, which the launch pins

    @property
    def failed(self) -> list[checks.Check]:
        return [result for result in self.results if not result.ok]


def run_checks(plan: Plan, deps: Deps) -> Preflight:
    """Every check of the plan, also after a failure."""
    args, ec2, market = plan.args, plan.ec2, plan.market
    results = [checks.Check.passed(f"region: {args.region} (from {args.region_source})")]
    explicit_ami = plan.extra_vars.get("ami_id") or None
    image = (
        checks.image_by_id(ec2, explicit_ami) if explicit_ami else checks.newest_packer_image(ec2)
    )
    results.append(
        checks.ami_check(image, region=args.region, explicit_id=explicit_ami, now=deps.now())
    )
    results.append(
        checks.network_check(
            market.network, region=args.region, priced_zones=market.zones, chosen_zone=None
        )
    )
    key = ebs.default_key(ec2, deps.kms_client(args.region))
    results.append(ebs.key_check(key, region=args.region))
    if market.refusal:
        results.append(checks.Check.failed(market.refusal))
    results += _quota_checks(args, deps, ec2, plan.type_gpus)
    source = _source_checks(args, deps, plan.git_url, plan.git_ref)
    results += source.checks
    pinned_image = image if explicit_ami is None else None
    return Preflight(results, pinned_image, source.commit)


def _source_checks(args: SimpleNamespace, deps: Deps, url: str, ref: str) -> gitremote.Source:
    """The token parameter (when given), then the remote, its ref, prompts and worker code."""
    access = gitremote.Access(args.git_token_parameter, args.region)
    token = []
    if args.git_token_parameter:
        token = [
            checks.token_parameter_check(
                deps.ssm_client(args.region), args.git_token_parameter, region=args.region
            )
        ]
        if not token[0].ok:
            return gitremote.Source(token)
    local_prompts = Path(args.prompts).read_bytes()
    local_code = gitinfo.worktree_blobs(deps.checkout, gitremote.WORKER_CODE)
    found = gitremote.check_source(
        gitremote.GitRunner(access), url, ref, local_prompts, args.prompts, local_code
    )
    return gitremote.Source([*token, *found.checks], found.commit)


def _quota_checks(
    args: SimpleNamespace, deps: Deps, ec2: Any, type_gpus: list[gpus.InstanceGpus]
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
        value, in_use = None, 0
        if quota is not None:
            service_quotas = service_quotas or deps.service_quotas_client(args.region)
            value = quotas.read_quota(service_quotas, quota)
            in_use = quotas.spot_vcpus_in_use(ec2, quota)
        results.append(
            quotas.quota_check(
                instance_type=largest.instance_type,
                worker_count=args.worker_count,
                vcpus=largest.vcpus,
                quota=quota,
                value=value,
                region=args.region,
                in_use=in_use,
            )
        )
    return results


def show_checks(out: Console, preflight: Preflight) -> None:
    """The block of checks: passed ones, warnings (on stderr), and each failed one by name, its
    error coming after the estimate."""
    out.say("Checks before launch:")
    for result in preflight.results:
        if result.warning:
            print(f"warning: {result.line}", file=out.stderr)
        elif result.ok:
            out.say(f"  ok  {result.line}")
        else:
            out.say(f"  FAILED  {result.line.split(':', 1)[0]} (the error is below)")
    out.say("")


def show_failures(out: Console, preflight: Preflight) -> None:
    """Each failed check as one error line, then the count; nothing was launched."""
    failed = preflight.failed
    for result in failed:
        print(f"error: {result.line}", file=out.stderr)
    print(
        f"error: {len(failed)} check{'s' if len(failed) > 1 else ''} failed; nothing launched",
        file=out.stderr,
    )
