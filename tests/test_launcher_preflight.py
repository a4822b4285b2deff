"""The checks before launch: pure decisions with tables, then `python launcher` end to end on
moto (EC2, SSM), a git daemon and a private smart-HTTP remote on 127.0.0.1."""

from __future__ import annotations

import json
import os
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import boto3
import pytest

from launcher import aws
from launcher.checks import Check, Image, Network, ami_check, network_check
from launcher.region import Region, SessionRegion, resolve_region, session_region
from tests.git_servers import PrivateHttpGit
from tests.support.fake_terraform import FakeTerraform
from tests.support.launcher import GIT, NOW, Launcher, WorkerSource, rewrite_git_urls

pytestmark = pytest.mark.filterwarnings("ignore:The 'warn' method is deprecated")

TOKEN = "glpat-PREFLIGHTsecret-0123456789"
PARAMETER = "/musicgen/git-token"
NO_SESSION_REGION = SessionRegion(None, "default", "~/.aws/config")


@pytest.mark.parametrize(
    ("option", "session", "env", "expected"),
    [
        (
            "eu-west-1",
            SessionRegion("us-west-2", "default", "c"),
            {"AWS_REGION": "x"},
            Region("eu-west-1", "--region"),
        ),
        (
            None,
            SessionRegion("us-west-2", "work", "/home/me/.aws/config"),
            {"AWS_REGION": "x"},
            Region("us-west-2", "profile 'work' in /home/me/.aws/config"),
        ),
        (
            None,
            SessionRegion("ap-south-1", "default", "c"),
            {"AWS_DEFAULT_REGION": "ap-south-1"},
            Region("ap-south-1", "AWS_DEFAULT_REGION"),
        ),
        (
            None,
            NO_SESSION_REGION,
            {"AWS_REGION": "eu-central-1"},
            Region("eu-central-1", "AWS_REGION"),
        ),
        (None, NO_SESSION_REGION, {}, Region("us-east-1", "default")),
    ],
)
def test_resolve_region(
    option: str | None, session: SessionRegion, env: dict[str, str], expected: Region
) -> None:
    assert resolve_region(option, session, env) == expected


def test_session_region_reads_the_profile(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "config"
    config.write_text("[default]\nregion = us-west-2\n[profile work]\nregion = eu-west-3\n")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
    for name in ("AWS_DEFAULT_REGION", "AWS_REGION", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)

    assert session_region() == SessionRegion("us-west-2", "default", str(config))
    monkeypatch.setenv("AWS_PROFILE", "work")
    assert session_region() == SessionRegion("eu-west-3", "work", str(config))


IMAGE = Image("ami-0abc", "musicgen-batch-20261127-090000", datetime(2026, 11, 27, 9, tzinfo=UTC))


@pytest.mark.parametrize(
    ("now", "age"),
    [
        (IMAGE.created + timedelta(minutes=42), "42 min"),
        (IMAGE.created + timedelta(hours=47, minutes=59), "47 h"),
        (IMAGE.created + timedelta(days=9, hours=3), "9 days"),
    ],
)
def test_ami_check_shows_name_and_age(now: datetime, age: str) -> None:
    assert ami_check(IMAGE, region="us-east-1", explicit_id=None, now=now) == Check.passed(
        f"AMI: ami-0abc musicgen-batch-20261127-090000, built {age} ago (newest packer/ build)"
    )


def test_ami_check_names_the_region_and_the_packer_command() -> None:
    assert ami_check(None, region="eu-west-1", explicit_id=None, now=NOW) == Check.failed(
        "AMI: no available AMI named musicgen-batch-* owned by this account in eu-west-1; "
        "build one with `packer build -var region=eu-west-1 packer/`"
    )
    missing = ami_check(None, region="eu-west-1", explicit_id="ami-0123", now=NOW)
    assert missing == Check.failed(
        "AMI: ami-0123 (--var ami_id) is not an available AMI in eu-west-1; AMIs are per "
        "region: copy it there, or build one with `packer build -var region=eu-west-1 packer/`"
    )


@pytest.mark.parametrize(
    ("network", "priced", "chosen", "expected"),
    [
        (
            Network("vpc-1", frozenset({"a", "b"})),
            ["a", "b", "c"],
            "b",
            Check.passed("network: default VPC vpc-1, default subnet in b"),
        ),
        (
            Network("vpc-1", frozenset({"a", "b"})),
            ["b", "c", "a"],
            None,
            Check.passed("network: default VPC vpc-1, default subnet in a, b"),
        ),
        (
            Network("vpc-1", frozenset({"a"})),
            [],
            None,
            Check.passed("network: default VPC vpc-1, default subnet in a"),
        ),
        (
            Network("vpc-1", frozenset({"a"})),
            ["c"],
            "c",
            Check.failed(
                "network: the default VPC vpc-1 has no default subnet in c; create one "
                "with `aws ec2 create-default-subnet --availability-zone c --region r`"
            ),
        ),
        (
            Network("vpc-1", frozenset({"a"})),
            ["c", "d"],
            None,
            Check.failed(
                "network: the default VPC vpc-1 has no default subnet in c or d; create "
                "one with `aws ec2 create-default-subnet --availability-zone c --region r`"
            ),
        ),
        (
            Network("vpc-1", frozenset()),
            [],
            None,
            Check.failed(
                "network: the default VPC vpc-1 has no default subnet; create one with "
                "`aws ec2 create-default-subnet --availability-zone ZONE --region r`"
            ),
        ),
        (
            Network(None, frozenset()),
            ["a"],
            "a",
            Check.failed(
                "network: no default VPC in r; create one with "
                "`aws ec2 create-default-vpc --region r`"
            ),
        ),
    ],
)
def test_network_check(
    network: Network, priced: list[str], chosen: str | None, expected: Check
) -> None:
    assert network_check(network, region="r", priced_zones=priced, chosen_zone=chosen) == expected


def delete_default_vpc(region: str = "us-east-1") -> str:
    ec2 = aws.ec2_client(region)
    (vpc,) = ec2.describe_vpcs(Filters=[{"Name": "is-default", "Values": ["true"]}])["Vpcs"]
    vpc_id = vpc["VpcId"]
    for subnet in ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [vpc_id]}])["Subnets"]:
        ec2.delete_subnet(SubnetId=subnet["SubnetId"])
    gateways = ec2.describe_internet_gateways(
        Filters=[{"Name": "attachment.vpc-id", "Values": [vpc_id]}]
    )["InternetGateways"]
    for gateway in gateways:
        ec2.detach_internet_gateway(InternetGatewayId=gateway["InternetGatewayId"], VpcId=vpc_id)
        ec2.delete_internet_gateway(InternetGatewayId=gateway["InternetGatewayId"])
    ec2.delete_vpc(VpcId=vpc_id)
    return vpc_id


def test_a_dry_run_reports_every_failure_after_the_estimate(
    launcher: Launcher, terraform: FakeTerraform, source: WorkerSource, workdir: Path
) -> None:
    """The AMI not built yet, no default VPC, prompts not pushed: every failure is named, and
    the cost still shows before them, since that is what the user wants to know meanwhile."""
    aws.ec2_client("us-east-1").deregister_image(ImageId=source.ami_id)
    delete_default_vpc()
    (workdir / "prompts.txt").write_text((workdir / "prompts.txt").read_text() + "x ; 9 ; x\n")

    result = launcher(*GIT, "--dry-run", tty=False)

    at = f"main ({source.commit()[:12]})"
    assert result.code == 2
    assert result.err == (
        "error: AMI: no available AMI named musicgen-batch-* owned by this account in "
        "us-east-1; build one with `packer build -var region=us-east-1 packer/`\n"
        "error: network: no default VPC in us-east-1; create one with "
        "`aws ec2 create-default-vpc --region us-east-1`\n"
        f"error: prompts: prompts.txt differs from prompts.txt at {at} "
        "on the remote, which the worker runs: commit and push it, or pass --git-ref\n"
        "error: 3 checks failed; nothing launched\n"
    )
    # Zones within the max price, but none has a default subnet: no VPC holds one.
    assert (
        "Zones: us-east-1a, us-east-1c have a current price within the max $0.40/h, but "
        "us-east-1 has no default VPC, so no default subnet to launch into (see the network "
        "check)\n"
    ) in result.out
    assert "default subnet and a current price" not in result.out
    checks = result.out[result.out.index("Checks before launch:\n") :]
    assert checks.startswith(
        "Checks before launch:\n"
        "  ok  region: us-east-1 (from AWS_DEFAULT_REGION)\n"
        "  FAILED  AMI (the error is below)\n"
        "  FAILED  network (the error is below)\n"
        "  ok  EBS key: the root volumes are encrypted with the AWS managed key aws/ebs "
        "(encryption by default off), which Auto Scaling may use\n"
        "  ok  spot vCPU quota: All G and VT Spot Instance Requests is 64 vCPUs in "
        "us-east-1; 1 × g4dn.xlarge needs 4 vCPUs, 4 more while capacity rebalancing replaces "
        "an instance: 8 in all\n"
        "  ok  git: https://github.com/example/musicgen-batch.git can be read anonymously, "
        "as the worker reads it\n"
        "  FAILED  prompts (the error is below)\n"
        f"  ok  worker code: worker/ and contract/ at {at} on the remote is this checkout's "
    )
    # The batch is the local file's (3 songs now), and its estimate comes before the errors.
    assert "Batch: 3 songs in prompts.txt, 7.2 min of audio requested\n" in checks
    assert "Estimate (upper bound, at the max price): $0.162\n" in checks
    assert checks.endswith(source.code_line())
    assert "Dry run" not in result.out
    assert terraform.argvs() == []


@pytest.mark.parametrize("args", [["--yes"], []])
def test_yes_does_not_bypass_a_missing_ref(
    launcher: Launcher, terraform: FakeTerraform, args: list[str]
) -> None:
    result = launcher(*GIT[:2], "--git-ref", "not-pushed", *args, stdin="y\n")

    assert result.code == 2
    assert result.err == (
        "error: git: https://github.com/example/musicgen-batch.git has no branch, tag or commit "
        "'not-pushed': push it (git push origin not-pushed), or pass --git-ref\n"
        "error: 1 check failed; nothing launched\n"
    )
    assert "Launch 1 ×" not in result.out
    assert terraform.argvs() == []
    assert aws.ec2_client("us-east-1").describe_instances()["Reservations"] == []


def test_an_explicit_ami_that_does_not_exist_is_refused(
    launcher: Launcher, terraform: FakeTerraform
) -> None:
    result = launcher(*GIT, "--var", "ami_id=ami-0123456789abcdef0", "--yes")

    assert result.code == 2
    assert result.err.startswith(
        "error: AMI: ami-0123456789abcdef0 (--var ami_id) is not an available AMI in us-east-1;"
    )
    assert terraform.argvs() == []


def test_the_region_comes_from_the_profile(
    launcher: Launcher,
    terraform: FakeTerraform,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    config = tmp_path / "aws-config"
    config.write_text("[profile songs]\nregion = us-west-2\n")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
    monkeypatch.setenv("AWS_PROFILE", "songs")
    monkeypatch.delenv("AWS_DEFAULT_REGION")
    monkeypatch.setenv("AWS_REGION", "eu-west-1")  # the profile's region comes first
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)
    launcher.prices = []

    result = launcher(*GIT, "--dry-run")

    # The Packer AMI was built in us-east-1 only, so the check names the build for us-west-2.
    assert result.code == 2
    assert result.out.startswith("Spot prices for g4dn.xlarge (Linux) in us-west-2, last 24 h")
    assert f"  ok  region: us-west-2 (from profile 'songs' in {config})\n" in result.out
    assert result.err == (
        "error: AMI: no available AMI named musicgen-batch-* owned by this account in "
        "us-west-2; build one with `packer build -var region=us-west-2 packer/`\n"
        "error: 1 check failed; nothing launched\n"
    )


def test_a_private_repository_is_refused_without_a_token(
    launcher: Launcher,
    terraform: FakeTerraform,
    source: WorkerSource,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with PrivateHttpGit(source.repo.base, TOKEN) as private:
        rewrite_git_urls(
            monkeypatch, "https://github.com/example/", f"http://127.0.0.1:{private.port}/"
        )
        result = launcher(*GIT, "--yes")

    assert result.code == 2
    (failure, summary) = result.err.splitlines()
    assert failure.startswith(
        "error: git: the worker clones anonymously and could not read "
        "https://github.com/example/musicgen-batch.git ("
    )
    assert failure.endswith("pass --git-token-parameter NAME")
    assert summary == "error: 1 check failed; nothing launched"
    assert terraform.argvs() == []


def test_a_private_repository_with_the_token_in_ssm(
    launcher: Launcher,
    terraform: FakeTerraform,
    source: WorkerSource,
    workdir: Path,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    boto3.client("ssm").put_parameter(Name=PARAMETER, Value=TOKEN, Type="SecureString")
    terraform.set_outputs(bucket_name="b", autoscaling_group_name="musicgen-batch-workers")

    with PrivateHttpGit(source.repo.base, TOKEN) as private:
        rewrite_git_urls(
            monkeypatch, "https://github.com/example/", f"http://127.0.0.1:{private.port}/"
        )
        result = launcher(*GIT, "--git-token-parameter", PARAMETER, "--yes")

    assert result.code == 0, result.err
    assert (
        f"  ok  git token: SSM parameter {PARAMETER} in us-east-1 is a SecureString\n"
        "  ok  git: https://github.com/example/musicgen-batch.git can be read with the token in "
        f"{PARAMETER}, as the worker reads it\n"
        f"  ok  prompts: prompts.txt is prompts.txt at main ({source.commit()[:12]}) on the "
        "remote\n"
    ) in result.out
    tfvars = (workdir / "terraform" / "launcher.auto.tfvars.json").read_text()
    assert json.loads(tfvars)["git_token_parameter"] == PARAMETER
    # The token reached the server, and never a process list, an output or the tfvars.
    assert private.authorizations and private.process_lists
    seen = "".join(private.process_lists) + result.out + result.err + tfvars
    assert TOKEN not in seen + "".join(capfd.readouterr())


def test_a_token_parameter_that_is_missing_or_plain(
    launcher: Launcher, terraform: FakeTerraform
) -> None:
    missing = launcher(*GIT, "--git-token-parameter", PARAMETER, "--dry-run")
    boto3.client("ssm").put_parameter(Name=PARAMETER, Value=TOKEN, Type="String")
    plain = launcher(*GIT, "--git-token-parameter", PARAMETER, "--dry-run")
    bad_name = launcher(*GIT, "--git-token-parameter", "my token")

    assert missing.code == plain.code == bad_name.code == 2
    assert missing.err == (
        f"error: git token: no SSM parameter {PARAMETER} in us-east-1; create it with `aws ssm "
        f"put-parameter --region us-east-1 --type SecureString --name {PARAMETER} --value TOKEN`\n"
        "error: 1 check failed; nothing launched\n"
    )
    assert plain.err.startswith(
        f"error: git token: SSM parameter {PARAMETER} is a String, not a SecureString;"
    )
    assert bad_name.err == (
        "error: --git-token-parameter must be an SSM parameter name such as "
        "/musicgen/git-token (got 'my token')\n"
    )
    assert terraform.argvs() == []


def test_git_runs_without_the_users_git_setup(
    launcher: Launcher, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A url rewrite in the user's ~/.gitconfig is not on the worker, so it is not used here."""
    home = tmp_path / "home"
    home.mkdir()
    (home / ".gitconfig").write_text('[url "file:///nowhere/"]\n\tinsteadOf = git://\n')
    monkeypatch.setenv("HOME", str(home))
    assert subprocess.run(
        ["git", "config", "--global", "--list"],
        capture_output=True,
        text=True,
        check=True,
        env=os.environ,
    ).stdout

    result = launcher(*GIT, "--dry-run")

    assert result.code == 0, result.err
