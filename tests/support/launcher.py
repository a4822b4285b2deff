"""The launcher's test harness: `python launcher` run in-process with a scripted terminal,
price history and Service Quotas, and the worker's repository served by `git daemon`, all
against the tests' moto server (an Auto Scaling group like terraform's: tests/support/autoscaling.py).

Its fixtures (workdir, terraform, source, launcher) are in tests/conftest.py.
"""

from __future__ import annotations

import io
import subprocess
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest

from launcher import aws
from launcher.cli import Console, Deps, main
from launcher.prices import PricePoint
from tests.git_servers import GitDaemon, Remotes
from tests.service_quotas import FakeServiceQuotas

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

    def check_lines(self, ami: str = "") -> str:
        ami = ami or f"{self.ami_id} {PACKER_AMI_NAME}, built 0 min ago (newest packer/ build)"
        return (
            "Checks before launch:\n"
            "  ok  region: us-east-1 (from AWS_DEFAULT_REGION)\n"
            f"  ok  AMI: {ami}\n"
            f"  ok  network: default VPC {self.vpc_id}, default subnet in us-east-1a, us-east-1c\n"
            "  ok  spot vCPU quota: All G and VT Spot Instance Requests is 64 vCPUs in "
            "us-east-1; 1 × g4dn.xlarge needs 4 vCPUs\n"
            "  ok  git: https://github.com/example/musicgen-batch.git can be read anonymously, "
            "as the worker reads it\n"
            f"  ok  prompts: prompts.txt is prompts.txt at main ({self.commit()[:12]}) on the remote\n"
            "\n"
        )


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
            ec2_client=aws.ec2_client,
            s3_client=aws.s3_client,
            service_quotas_client=lambda region: self.quotas,
        )
        code = main(list(argv), deps)
        return Result(code, console.stdout.getvalue(), console.stderr.getvalue())
