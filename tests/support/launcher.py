"""The launcher's test harness: `python launcher` run in-process with a scripted terminal,
price history and Service Quotas, and the worker's repository served by `git daemon`, all
against the tests' moto server (an Auto Scaling group like terraform's: tests/support/autoscaling.py).

Its fixtures (workdir, terraform, source, launcher) are in tests/conftest.py.
"""

from __future__ import annotations

import io
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from launcher import aws
from launcher.cli import Console, Deps, main
from launcher.gitremote import WORKER_CODE
from launcher.prices import PricePoint
from tests.git_servers import GitDaemon, Remotes
from tests.service_quotas import FakeServiceQuotas

REPO_ROOT = Path(__file__).resolve().parent.parent.parent
# How the harness says the user started the launcher (the README's way).
PROGRAM = ".venv/bin/python launcher"
# What GetEbsDefaultKmsKeyId answers for an account that never changed its default EBS key: the
# AWS managed key aws/ebs, which AWS creates in each region for encryption by default.
AWS_MANAGED_EBS_KEY = "arn:aws:kms:us-east-1:123456789012:alias/aws/ebs"

GIT = ["--git-url", "https://github.com/example/musicgen-batch.git", "--git-ref", "main"]
# One of the AMIs moto always has; describe_images would take seconds to find one.
NOW = datetime(2026, 11, 29, 6, 0, tzinfo=UTC)
PROMPTS = """\
# Saturday batch
upbeat synthwave with driving bass ; 180 ; synthwave.wav
calm lo-fi piano, rain in the background ; 240 ; lofi_rain
epic orchestral trailer ; abc ; epic.wav
"""
REPORT = (
    "s3_filename,prompt,requested_duration_s,generation_time_s,estimated_cost_usd\n"
    "synthwave.wav,upbeat synthwave with driving bass,180,301.2,0.0335\n"
)


def history(*zones: tuple[str, list[float]]) -> list[PricePoint]:
    return [
        PricePoint(zone, price, NOW - timedelta(hours=len(prices) - i))
        for zone, prices in zones
        for i, price in enumerate(prices)
    ]


CALM_MARKET = history(
    ("us-east-1a", [0.2104, 0.2250, 0.2201]),
    ("us-east-1b", [0.41, 0.43]),
    ("us-east-1c", [0.1990]),
)
PACKER_AMI_NAME = "musicgen-batch-20261128-101500"


@dataclass
class WorkerSource:
    """What the worker will run: its repository (served by git daemon) and the Packer AMI."""

    repo: Remotes
    daemon: GitDaemon
    ami_id: str
    vpc_id: str

    def commit(self) -> str:
        return subprocess.run(
            ["git", "-C", str(self.repo.work), "rev-parse", "HEAD"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()

    def code_line(self) -> str:
        """The estimate's last line and the blank after it: the ref and the commit it names."""
        return (
            "Worker code: https://github.com/example/musicgen-batch.git @ main, commit "
            f"{self.commit()[:12]} (every instance, replacements too, runs this commit)\n\n"
        )

    def check_lines(self, ami: str = "") -> str:
        ami = ami or f"{self.ami_id} {PACKER_AMI_NAME}, built 0 min ago (newest packer/ build)"
        at = f"main ({self.commit()[:12]})"
        return (
            "Checks before launch:\n"
            "  ok  region: us-east-1 (from AWS_DEFAULT_REGION)\n"
            f"  ok  AMI: {ami}\n"
            f"  ok  network: default VPC {self.vpc_id}, default subnet in us-east-1a, us-east-1c\n"
            "  ok  EBS key: the root volumes are encrypted with the AWS managed key aws/ebs "
            "(encryption by default off), which Auto Scaling may use\n"
            "  ok  spot vCPU quota: All G and VT Spot Instance Requests is 64 vCPUs in "
            "us-east-1; 1 × g4dn.xlarge needs 4 vCPUs, 4 more while capacity rebalancing "
            "replaces an instance: 8 in all\n"
            "  ok  git: https://github.com/example/musicgen-batch.git can be read anonymously, "
            "as the worker reads it\n"
            f"  ok  prompts: prompts.txt is prompts.txt at {at} on the remote\n"
            f"  ok  worker code: worker/ and contract/ at {at} on the remote is this checkout's "
            f"({len(worker_code())} files)\n"
            "\n"
        )


def worker_code() -> dict[str, str]:
    """This checkout's worker/ and contract/ files as they are on disk (committed or not, untracked but not
    ignored): the code a remote must hold for the worker code check to pass."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard", "--", *WORKER_CODE],
        cwd=REPO_ROOT,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return {
        name: (REPO_ROOT / name).read_text(encoding="utf-8")
        for name in filter(None, listed.split("\0"))
        if (REPO_ROOT / name).is_file()
    }


class EbsDefaults:
    """moto's EC2 client plus GetEbsDefaultKmsKeyId, which moto does not implement, answered as
    AWS's API reference describes it: `{"KmsKeyId": <ARN of the default KMS key for EBS
    encryption>}`; `key_id` is what ModifyEbsDefaultKmsKeyId would have set."""

    def __init__(self, ec2: Any, key_id: str) -> None:
        self._ec2 = ec2
        self.key_id = key_id

    def get_ebs_default_kms_key_id(self, **kwargs: Any) -> dict:
        return {"KmsKeyId": self.key_id}

    def __getattr__(self, name: str) -> Any:
        return getattr(self._ec2, name)


def rewrite_git_urls(monkeypatch: pytest.MonkeyPatch, prefix: str, to: str) -> None:
    """git's command-line config from the environment: the user's config files are not read."""
    monkeypatch.setenv("GIT_CONFIG_COUNT", "1")
    monkeypatch.setenv("GIT_CONFIG_KEY_0", f"url.{to}.insteadOf")
    monkeypatch.setenv("GIT_CONFIG_VALUE_0", prefix)


@dataclass
class Result:
    code: int
    out: str
    err: str


@dataclass
class Launcher:
    """Runs main() in this process with a scripted terminal and price history."""

    prices: list[PricePoint]
    now: datetime = NOW
    price_requests: list[tuple[str, datetime, datetime]] | None = None
    quotas: FakeServiceQuotas = field(
        default_factory=lambda: FakeServiceQuotas(applied={"L-3819A6DF": 64})
    )
    ebs_key: str = AWS_MANAGED_EBS_KEY
    checkout: Path = REPO_ROOT
    s3_client: Callable[[str], Any] = aws.s3_client

    def __call__(
        self, *argv: str, stdin: str = "", tty: bool = True, stdout_tty: bool = False
    ) -> Result:
        self.price_requests = []

        def price_history(ec2, instance_type, start, end):
            self.price_requests.append((instance_type, start, end))
            return self.prices

        console = Console(io.StringIO(stdin), io.StringIO(), io.StringIO(), tty, stdout_tty)
        deps = Deps(
            console=console,
            now=lambda: self.now,
            price_history=price_history,
            ec2_client=lambda region: EbsDefaults(aws.ec2_client(region), self.ebs_key),
            s3_client=self.s3_client,
            service_quotas_client=lambda region: self.quotas,
            checkout=self.checkout,
            program=PROGRAM,
        )
        code = main(list(argv), deps)
        return Result(code, console.stdout.getvalue(), console.stderr.getvalue())
