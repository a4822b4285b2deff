"""What the launcher's commands touch outside this process, one seam each, replaceable in tests:
the terminal, the clock, the AWS clients, the price history, the checkout and how the user
started the launcher."""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from launcher import aws, invocation, prices, region
from launcher.options import REPO_ROOT


@dataclass
class Console:
    stdin: TextIO
    stdout: TextIO
    stderr: TextIO
    stdin_is_tty: bool
    stdout_is_tty: bool

    def say(self, *lines: str) -> None:
        for line in lines:
            print(line, file=self.stdout)

    def error(self, line: str) -> None:
        print(f"error: {line}", file=self.stderr)


@dataclass
class Deps:
    console: Console
    now: Callable[[], datetime]
    price_history: prices.PriceHistorySource
    ec2_client: Callable[[str], Any]
    s3_client: Callable[[str], Any]
    autoscaling_client: Callable[[str], Any] = aws.autoscaling_client
    ssm_client: Callable[[str], Any] = aws.ssm_client
    service_quotas_client: Callable[[str], Any] = aws.service_quotas_client
    kms_client: Callable[[str], Any] = aws.kms_client
    session_region: Callable[[], region.SessionRegion] = region.session_region
    # The checkout whose worker code the user ran, compared with the remote's before launch.
    checkout: Path = REPO_ROOT
    # The launcher's own command as the user typed it, for the commands it suggests.
    program: str = "musicgen-launcher"

    @classmethod
    def system(cls) -> Deps:
        return cls(
            console=Console(
                stdin=sys.stdin,
                stdout=sys.stdout,
                stderr=sys.stderr,
                stdin_is_tty=sys.stdin.isatty(),
                stdout_is_tty=sys.stdout.isatty(),
            ),
            now=lambda: datetime.now(UTC),
            price_history=prices.fetch_price_history,
            ec2_client=aws.ec2_client,
            s3_client=aws.s3_client,
            program=invocation.current(),
        )
