"""The one real deployment of the real-terraform tier: `python launcher --yes` applies a copy of
terraform/ with the real terraform binary, once per test session (about a minute).
tests/test_launcher_terraform.py checks the launcher around it, tests/test_terraform.py checks
what terraform built and then destroys it; the session's end destroys it when no test did.

It lives on a moto server in a process of its own (tests/moto_process.py): the other tests reset
the session's in-process server between tests, which would wipe it. Its fixture
(`shared_terraform_launch`) is in tests/conftest.py; under pytest-xdist both modules are in the
xdist_group "terraform", so one worker holds it.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from launcher import aws
from tests import tf_support
from tests.git_servers import GitDaemon, Remotes
from tests.moto_process import MotoProcess
from tests.support.launcher import (
    CALM_MARKET,
    GIT,
    PROMPTS,
    Launcher,
    Result,
    rewrite_git_urls,
    worker_code,
)

# An AMI named like the Packer build's: the launcher's AMI check and terraform's data.aws_ami
# lookup by name find it, as they would a user's.
TEST_AMI_NAME = "musicgen-batch-20260101-000000"
GIT_TOKEN_PARAMETER = "/music/git-token"
# CALM_MARKET within $0.35/h: the launcher limits the group to us-east-1a and us-east-1c.
MAX_PRICE = "0.35"
INSTANCE_TYPES = ["g4dn.xlarge", "g4dn.2xlarge"]
WORKER_COUNT = "2"
MAX_HOURS = "6"
# Settings the launcher has no option for, as --var (terraform converts the strings).
EXTRA_VARIABLES = {
    "batch_size": "3",
    "model_path": "/opt/musicgen/models/musicgen-small",
    "max_failed_boots": "2",
    # Lets destroy remove the bucket the status test puts a song in.
    "force_destroy": "true",
}
# A map cannot be a --var: the user's own tfvars file beside the launcher's, which terraform
# loads with it on every command.
USER_TFVARS = ("team.auto.tfvars", 'tags = { Team = "music" }\n')


@dataclass
class Root:
    """The launcher's terraform root (its copy of terraform/) with its local state."""

    root: Path
    config: Path
    environment: dict[str, str]

    @property
    def state(self) -> Path:
        return self.config / "terraform.tfstate"

    def run(
        self, *args: str, endpoint: str | None = None, timeout: float = 300
    ) -> subprocess.CompletedProcess[str]:
        """terraform ARGS in the root (the launcher's tfvars apply, as for a user's own call),
        always against the deployment's server: `endpoint` is the same one."""
        return tf_support.run_terraform(list(args), self.config, self.environment, timeout)


@dataclass
class TerraformLaunch:
    result: Result
    workspace: Root
    endpoint: str
    git_port: int
    ami_id: str

    @property
    def terraform_dir(self) -> Path:
        return self.workspace.config

    @property
    def env(self) -> dict[str, str]:
        return self.workspace.environment

    def outputs(self) -> dict:
        raw = self.workspace.run("output", "-json").stdout
        return {name: item["value"] for name, item in json.loads(raw).items()}

    def destroyed(self) -> bool:
        return not json.loads(self.workspace.state.read_text())["resources"]

    @contextmanager
    def environment(self) -> Iterator[None]:
        """Run in the launcher's shoes: its environment (the AWS endpoint included), working
        directory and git URL rewrite, undone afterwards."""
        with pytest.MonkeyPatch.context() as patch:
            for name in set(os.environ) - set(self.env):
                patch.delenv(name)
            for name, value in self.env.items():
                patch.setenv(name, value)
            rewrite_git_urls(
                patch, "https://github.com/example/", f"git://127.0.0.1:{self.git_port}/"
            )
            patch.chdir(self.workspace.root)
            yield


def register_worker_ami(ec2) -> str:
    source = ec2.describe_images(Owners=["amazon"])["Images"][0]
    image = ec2.register_image(
        Name=TEST_AMI_NAME,
        Architecture="x86_64",
        RootDeviceName="/dev/sda1",
        VirtualizationType="hvm",
        BlockDeviceMappings=[
            {
                "DeviceName": "/dev/sda1",
                "Ebs": {"SnapshotId": source["BlockDeviceMappings"][0]["Ebs"]["SnapshotId"]},
            }
        ],
    )
    return image["ImageId"]


def launch_arguments(terraform_dir: Path) -> list[str]:
    types = [arg for t in INSTANCE_TYPES for arg in ("--instance-type", t)]
    extra = [arg for k, v in EXTRA_VARIABLES.items() for arg in ("--var", f"{k}={v}")]
    return [
        "--yes",
        *GIT,
        "--git-token-parameter",
        GIT_TOKEN_PARAMETER,
        "--max-price",
        MAX_PRICE,
        *types,
        "--worker-count",
        WORKER_COUNT,
        "--max-hours",
        MAX_HOURS,
        "--terraform-dir",
        str(terraform_dir),
        *extra,
    ]


@contextmanager
def terraform_launch(tmp: Path) -> Iterator[TerraformLaunch]:
    """Start the deployment's moto server and git daemon, launch, yield; destroy at the end
    unless a test did."""
    with MotoProcess() as moto:
        env = tf_support.terraform_env(tmp / "terraform-home", moto.url)
        # The worker's repository, https://github.com/example/..., served by git daemon.
        repo = Remotes(tmp / "remote", "musicgen-batch", {"prompts.txt": PROMPTS, **worker_code()})
        terraform_dir = tf_support.copy_config(tmp / "terraform")
        name, text = USER_TFVARS
        (terraform_dir / name).write_text(text)
        (tmp / "prompts.txt").write_text(PROMPTS)
        with GitDaemon(repo.base) as daemon:
            launch = TerraformLaunch(
                Result(-1, "", ""), Root(tmp, terraform_dir, env), moto.url, daemon.port, ""
            )
            with launch.environment():
                launch.ami_id = register_worker_ami(aws.ec2_client("us-east-1"))
                aws.ssm_client("us-east-1").put_parameter(
                    Name=GIT_TOKEN_PARAMETER, Value="ghp_test", Type="SecureString"
                )
                launch.result = Launcher(prices=CALM_MARKET)(
                    *launch_arguments(terraform_dir), tty=False
                )
            try:
                yield launch
            finally:
                if launch.workspace.state.exists() and not launch.destroyed():
                    launch.workspace.run(
                        "destroy", "-auto-approve", "-input=false", "-no-color", timeout=600
                    )
