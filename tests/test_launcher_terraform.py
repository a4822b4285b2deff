"""`python launcher --yes` drives the REAL terraform over a copy of terraform/ against moto.

One apply is shared by every test here (it takes about a minute) and destroyed at the end.
"""

from __future__ import annotations

import base64
import json
import os
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs

import pytest

from launcher import aws
from tests import tf_support
from tests.git_servers import GitDaemon, Remotes
from tests.test_launcher_cli import (
    CALM_MARKET,
    GIT,
    MOTO_AMI,
    PROMPTS,
    REPORT,
    Launcher,
    Result,
    rewrite_git_urls,
)

pytestmark = [
    pytest.mark.terraform,
    pytest.mark.filterwarnings("ignore:The 'warn' method is deprecated"),
]

SKIP_REASON = tf_support.skip_reason()
ROLE = {"Key": "Role", "Value": "musicgen-batch-worker"}


@dataclass
class Launch:
    result: Result
    terraform_dir: Path
    env: dict[str, str]
    run_instances: list[dict[str, list[str]]]


def moto_api(endpoint: str, path: str, method: str = "POST") -> str:
    request = urllib.request.Request(f"{endpoint}/moto-api/{path}", method=method)
    with urllib.request.urlopen(request) as response:
        return response.read().decode()


def recorded_calls(recording: str, action: str) -> list[dict[str, list[str]]]:
    """Query-protocol bodies of one EC2 action from moto's request recording."""
    calls = []
    for line in recording.splitlines():
        entry = json.loads(line)
        body = entry.get("body") or ""
        if entry.get("body_encoded"):
            body = base64.b64decode(body).decode()
        fields = parse_qs(body)
        if fields.get("Action") == [action]:
            calls.append(fields)
    return calls


@pytest.fixture(scope="module")
def launch(moto_server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Launch]:
    if SKIP_REASON:
        pytest.skip(SKIP_REASON)
    tmp = tmp_path_factory.mktemp("real-terraform")
    env = tf_support.terraform_env(tmp / "terraform-home", moto_server)
    moto_api(moto_server, "reset")
    # The worker's repository, https://github.com/example/..., served by git daemon.
    repo = Remotes(tmp / "remote", "musicgen-batch", {"prompts.txt": PROMPTS})
    with pytest.MonkeyPatch.context() as patch, GitDaemon(repo.base) as daemon:
        for name in set(os.environ) - set(env):
            patch.delenv(name)
        for name, value in env.items():
            patch.setenv(name, value)
        rewrite_git_urls(patch, "https://github.com/example/", f"git://127.0.0.1:{daemon.port}/")
        # moto's recorder writes to ./moto_recording: keep it in the temporary directory.
        patch.chdir(tmp)
        (tmp / "prompts.txt").write_text(PROMPTS)
        terraform_dir = tf_support.copy_config(tmp / "terraform")
        moto_api(moto_server, "recorder/reset-recording")
        moto_api(moto_server, "recorder/start-recording")
        try:
            result = Launcher(prices=CALM_MARKET)(
                "--yes",
                *GIT,
                "--max-price",
                "0.35",
                "--terraform-dir",
                str(terraform_dir),
                "--var",
                f"ami_id={MOTO_AMI}",
                # Lets destroy remove the bucket the status test puts a song in.
                "--var",
                "force_destroy=true",
                tty=False,
            )
        finally:
            moto_api(moto_server, "recorder/stop-recording")
        recording = moto_api(moto_server, "recorder/download-recording", method="GET")
        yield Launch(result, terraform_dir, env, recorded_calls(recording, "RunInstances"))
        # No -var here: launcher.auto.tfvars must carry the required git_repo_url, as it does
        # for the `terraform -chdir=terraform destroy` the launcher tells users to run.
        tf_support.run_terraform(
            ["destroy", "-auto-approve", "-input=false", "-no-color"], terraform_dir, env
        )


def workers() -> list[dict]:
    pages = (
        aws.ec2_client("us-east-1")
        .get_paginator("describe_instances")
        .paginate(Filters=[{"Name": "tag:Role", "Values": [ROLE["Value"]]}])
    )
    return [i for page in pages for r in page["Reservations"] for i in r["Instances"]]


def test_yes_applies_a_tagged_spot_worker_at_the_max_price(launch: Launch) -> None:
    assert launch.result.code == 0, launch.result.err
    assert launch.result.err == ""
    outputs = json.loads(
        tf_support.run_terraform(["output", "-json"], launch.terraform_dir, launch.env).stdout
    )
    bucket = outputs["bucket_name"]["value"]
    [instance_id] = outputs["instance_ids"]["value"]
    assert launch.result.out.endswith(
        "Variables for terraform written to terraform/launcher.auto.tfvars\n"
        "\n"
        f"Launched: {instance_id}\n"
        f"Bucket:   {bucket}\n"
        "Next steps:\n"
        "  follow progress:  python launcher status\n"
        f"  songs appear in:  s3://{bucket}/  (cost report: s3://{bucket}/cost_report.csv, "
        f"run logs: s3://{bucket}/logs/)\n"
        "The instance keeps costing money until you run: terraform -chdir=terraform destroy\n"
    )

    [worker] = workers()
    assert worker["InstanceId"] == instance_id
    assert worker["State"]["Name"] == "running"
    assert worker["InstanceType"] == "g4dn.xlarge"
    assert worker["InstanceLifecycle"] == "spot"
    assert worker["Placement"]["AvailabilityZone"] == "us-east-1c"
    assert ROLE in worker["Tags"]
    # moto keeps no spot options, so the max price is checked in the request terraform sent.
    [run] = launch.run_instances
    assert run["InstanceMarketOptions.MarketType"] == ["spot"]
    assert run["InstanceMarketOptions.SpotOptions.MaxPrice"] == ["0.35"]


def test_a_second_launch_finds_the_worker_and_applies_nothing(launch: Launch) -> None:
    result = Launcher(prices=CALM_MARKET)(
        "--yes", *GIT, "--terraform-dir", str(launch.terraform_dir), tty=False
    )

    assert result.code == 0
    assert result.out.startswith(
        "A worker is already running in us-east-1; not launching another:\n"
    )
    assert len(workers()) == 1


def test_status_lists_the_worker_and_the_batch(launch: Launch) -> None:
    bucket = json.loads(
        tf_support.run_terraform(["output", "-json"], launch.terraform_dir, launch.env).stdout
    )["bucket_name"]["value"]
    s3 = aws.s3_client("us-east-1")
    # The bucket only allows TLS, which moto enforces on object calls; its endpoint is HTTP.
    s3.delete_bucket_policy(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="synthwave.wav", Body=b"RIFF")
    s3.put_object(Bucket=bucket, Key="cost_report.csv", Body=REPORT.encode())
    [worker] = workers()

    result = Launcher(prices=CALM_MARKET)("status", "--terraform-dir", str(launch.terraform_dir))

    assert result.code == 0, result.err
    lines = result.out.splitlines()
    assert lines[0] == "Workers in us-east-1:"
    assert lines[2].startswith(f"  {worker['InstanceId']}  g4dn.xlarge  running  us-east-1c  ")
    # The tests' clock is before moto's launch time: no uptime, nothing accrued yet.
    assert lines[3:] == [
        "  accrued so far (upper bound, at the max price): $0.00",
        "  accrued so far at the actual spot price: $0.00",
        "  (compute only: EBS volumes and data transfer are billed on top, in neither figure)",
        f"Songs in s3://{bucket}/: 1 of 2 done, 1 missing",
        "  done:",
        "    synthwave.wav",
        "  missing:",
        "    lofi_rain.wav  (line 3, 240 s)",
        "cost_report.csv: 1 song, total estimated cost $0.03",
    ]
