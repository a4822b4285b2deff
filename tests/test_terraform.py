"""The real terraform binary on the real root configuration: fmt, init, validate, variable
validation, then apply and destroy against moto's server, checking the result through boto3."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest

from tests import systemd_units, tf_support

pytestmark = [
    pytest.mark.terraform,
    pytest.mark.skipif(tf_support.skip_reason() is not None, reason=str(tf_support.skip_reason())),
]

WORKER_TAG = {"Role": "musicgen-batch-worker"}
SETTINGS = {
    "git_repo_url": "https://git.example.com/music/songs.git",
    "git_ref": "release-7",
    "max_price": "0.55",
    "worker_count": "2",
    "batch_size": "3",
    "shutdown_when_done": "true",
    "audio_format": "flac",
    "model_path": "/opt/musicgen/models/musicgen-small",
    "availability_zone": "us-east-1b",
    "git_token_parameter": "/music/git-token",
}
TEST_AMI_NAME = "musicgen-batch-20260101-000000"


def var_args(settings: dict[str, str]) -> list[str]:
    return [arg for name, value in settings.items() for arg in ("-var", f"{name}={value}")]


class Workspace:
    """A copy of terraform/ initialised from the mirror; state and .terraform live in tmp."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.config = tf_support.copy_config(root / "config")
        self.state = root / "terraform.tfstate"

    def env(self, endpoint: str | None = None) -> dict[str, str]:
        return tf_support.terraform_env(self.root / "tf", endpoint)

    def run(
        self, *args: str, endpoint: str | None = None, timeout: float = 300
    ) -> subprocess.CompletedProcess[str]:
        return tf_support.run_terraform(list(args), self.config, self.env(endpoint), timeout)


@pytest.fixture(scope="session")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    """One `terraform init` per test session: the provider comes from the mirror only."""
    ws = Workspace(tmp_path_factory.mktemp("terraform"))
    ws.run("init", "-backend=false", "-input=false", "-no-color")
    return ws


def test_fmt_is_clean(tmp_path: Path) -> None:
    tf_support.run_terraform(
        ["fmt", "-check", "-recursive", "-diff", str(tf_support.TERRAFORM_DIR)],
        tmp_path,
        tf_support.terraform_env(tmp_path),
    )


def test_init_leaves_the_repository_clean(workspace: Workspace) -> None:
    assert (workspace.root / "tf" / ".terraform" / "providers").is_dir()
    assert not (tf_support.TERRAFORM_DIR / ".terraform").exists()
    assert not list(tf_support.TERRAFORM_DIR.glob("*.tfstate*"))


def test_validate(workspace: Workspace) -> None:
    result = workspace.run("validate", "-json", "-no-color")
    report = json.loads(result.stdout)
    assert report["valid"], report["diagnostics"]
    assert report["warning_count"] == 0, report["diagnostics"]


def test_bad_variables_fail_at_plan(workspace: Workspace, aws_env: str) -> None:
    """Terraform reports every failed validation of one plan, before touching AWS."""
    bad = {
        "max_price": ("0", "max_price must be greater than 0"),
        "instance_type": ("p3.2xlarge", "instance_type must be an NVIDIA GPU type"),
        "bucket_name": ("My_Songs", "bucket_name must be empty or a valid S3 bucket name"),
        "git_repo_url": ("git@github.com:me/songs.git", "git_repo_url must be an https:// URL"),
        "worker_count": ("1.5", "worker_count must be a whole number >= 0"),
        "root_volume_size_gb": ("50", "root_volume_size_gb must be a whole number >= 100"),
        "ami_id": ("ubuntu", "ami_id must be empty or an AMI id"),
        "git_token_parameter": ("my token", "git_token_parameter must be empty or an SSM"),
        "audio_format": ("mp3", "audio_format must be wav or flac"),
    }
    settings = {**SETTINGS, **{name: value for name, (value, _) in bad.items()}}
    with pytest.raises(AssertionError) as failure:
        workspace.run("plan", "-input=false", "-no-color", *var_args(settings), endpoint=aws_env)
    text = " ".join(str(failure.value).split())
    assert [m for _, m in bad.values() if m not in text] == []


def register_worker_ami(ec2) -> str:
    """An AMI named like the Packer build's, so the data.aws_ami lookup path is exercised."""
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


@pytest.fixture
def applied(workspace: Workspace, aws_env: str) -> Iterator[dict]:
    """`terraform apply` against moto; destroyed afterwards if the test did not get that far."""
    ami_id = register_worker_ami(boto3.client("ec2"))
    args = ["-input=false", "-no-color", f"-state={workspace.state}", *var_args(SETTINGS)]
    plan_file = workspace.root / "apply.tfplan"
    workspace.run("plan", f"-out={plan_file}", *args, endpoint=aws_env)
    plan = json.loads(workspace.run("show", "-json", "-no-color", str(plan_file)).stdout)
    workspace.run(
        "apply",
        "-input=false",
        "-no-color",
        f"-state={workspace.state}",
        str(plan_file),
        endpoint=aws_env,
    )
    outputs = json.loads(
        workspace.run("output", "-json", f"-state={workspace.state}", endpoint=aws_env).stdout
    )
    yield {
        "outputs": {k: v["value"] for k, v in outputs.items()},
        "planned": plan["planned_values"],
        "ami_id": ami_id,
    }
    if json.loads(workspace.state.read_text())["resources"]:
        workspace.run("destroy", "-auto-approve", *args, endpoint=aws_env)


def resources_of(values: dict, type_: str) -> list[dict]:
    found = []
    modules = [values["root_module"]]
    while modules:
        module = modules.pop()
        found += [r for r in module.get("resources", []) if r["type"] == type_]
        modules += module.get("child_modules", [])
    return found


def test_apply_then_destroy(workspace: Workspace, applied: dict, tmp_path: Path) -> None:
    """One apply (about a minute on moto) serves every check, then destroy must leave nothing."""
    outputs = applied["outputs"]
    assert set(outputs) >= {"bucket_name", "instance_ids", "region", "worker_tag"}
    assert outputs["region"] == "us-east-1"
    assert outputs["worker_tag"] == WORKER_TAG
    assert outputs["bucket_name"].startswith("musicgen-batch-")
    assert len(outputs["instance_ids"]) == 2

    ec2 = boto3.client("ec2")
    reservations = ec2.describe_instances(InstanceIds=outputs["instance_ids"])["Reservations"]
    instances = [i for r in reservations for i in r["Instances"]]
    assert len(instances) == 2
    for instance in instances:
        tags = {t["Key"]: t["Value"] for t in instance["Tags"]}
        assert tags["Role"] == "musicgen-batch-worker"
        assert tags["Project"] == "musicgen-batch"
        assert instance["InstanceLifecycle"] == "spot"
        assert instance["InstanceType"] == "g4dn.xlarge"
        assert instance["ImageId"] == applied["ami_id"]
        assert instance["Placement"]["AvailabilityZone"] == "us-east-1b"
        assert instance["MetadataOptions"]["HttpTokens"] == "required"
        assert instance["MetadataOptions"]["HttpPutResponseHopLimit"] in (1, 2)
        assert "/musicgen-batch-worker-" in instance["IamInstanceProfile"]["Arn"]
        user_data = ec2.describe_instance_attribute(
            InstanceId=instance["InstanceId"], Attribute="userData"
        )["UserData"]["Value"]
        check_user_data(base64.b64decode(user_data).decode(), outputs["bucket_name"], tmp_path)

    # moto does not echo the spot options back, so they are checked in the applied plan.
    for worker in resources_of(applied["planned"], "aws_instance"):
        market = worker["values"]["instance_market_options"][0]
        assert market["market_type"] == "spot"
        spot = market["spot_options"][0]
        assert float(spot["max_price"]) == 0.55
        assert spot["spot_instance_type"] == "one-time"
        assert spot["instance_interruption_behavior"] == "terminate"
        assert worker["values"]["instance_initiated_shutdown_behavior"] == "terminate"
        root = worker["values"]["root_block_device"][0]
        assert root["encrypted"] and root["volume_type"] == "gp3" and root["volume_size"] == 100
        assert root["tags"]["Role"] == "musicgen-batch-worker"

    (group,) = ec2.describe_security_groups(
        Filters=[{"Name": "group-name", "Values": ["musicgen-batch-worker-*"]}]
    )["SecurityGroups"]
    for instance in instances:
        # moto lists an instance's groups on its network interface only.
        (interface,) = instance["NetworkInterfaces"]
        assert [g["GroupId"] for g in interface["Groups"]] == [group["GroupId"]]
    assert group["IpPermissions"] == []
    egress = group["IpPermissionsEgress"]
    assert [(p["IpProtocol"], p["FromPort"], p["ToPort"]) for p in egress] == [("tcp", 443, 443)]

    check_bucket(outputs["bucket_name"])
    check_role(instances[0]["IamInstanceProfile"]["Arn"], outputs["bucket_name"])
    check_destroy(workspace, outputs)


def check_user_data(script: str, bucket: str, tmp_path: Path) -> None:
    for line in [
        "MUSICGEN_REPO_URL='https://git.example.com/music/songs.git'",
        "MUSICGEN_REPO_REF='release-7'",
        f"MUSICGEN_BUCKET='{bucket}'",
        f"MUSICGEN_OUTPUT='s3://{bucket}'",
        "MUSICGEN_MODEL='/opt/musicgen/models/musicgen-small'",
        "HOURLY_COST_USD='0.55'",
        "MUSICGEN_BATCH_SIZE='3'",
        "MUSICGEN_FORMAT='flac'",
        "MUSICGEN_SHUTDOWN_WHEN_DONE='1'",
        "MUSICGEN_IMDS_ENDPOINT='http://169.254.169.254'",
        "AWS_REGION='us-east-1'",
        "MUSICGEN_GIT_TOKEN_PARAMETER='/music/git-token'",
        "MUSICGEN_GIT_CREDENTIAL_HELPER='/usr/local/lib/musicgen-batch/git-credential-ssm.py'",
    ]:
        assert line in script.splitlines()
    assert "/etc/musicgen-batch/worker.env" in script
    assert "musicgen-worker.service" in script
    assert "Restart=no" in script and "After=network-online.target" in script
    assert 'exec /bin/bash "$checkout/worker/bootstrap.sh"' in script
    # The applied UserData is the one the unit tests render: the checkout and every GPU's worker
    # run sandboxed.
    units = systemd_units.worker_units(systemd_units.written_files(script))
    for name in ("musicgen-checkout.service", "musicgen-worker@.service"):
        assert systemd_units.values(units[name], "Service", "User") == ["musicgen"], name
    path = tmp_path / "user_data.sh"
    path.write_text(script)
    subprocess.run(["bash", "-n", str(path)], check=True)
    if shutil.which("shellcheck"):
        result = subprocess.run(
            ["shellcheck", str(path)], check=False, capture_output=True, text=True
        )
        assert result.returncode == 0, result.stdout


def check_bucket(bucket: str) -> None:
    s3 = boto3.client("s3")
    block = s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"]
    assert block == {
        "BlockPublicAcls": True,
        "IgnorePublicAcls": True,
        "BlockPublicPolicy": True,
        "RestrictPublicBuckets": True,
    }
    ownership = s3.get_bucket_ownership_controls(Bucket=bucket)["OwnershipControls"]
    assert ownership["Rules"] == [{"ObjectOwnership": "BucketOwnerEnforced"}]
    encryption = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]
    assert encryption["Rules"][0]["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"]

    policy = json.loads(s3.get_bucket_policy(Bucket=bucket)["Policy"])
    (deny,) = policy["Statement"]
    assert deny["Effect"] == "Deny"
    assert deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    assert sorted(deny["Resource"]) == [f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"]

    rules = s3.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]
    assert any(
        r["Status"] == "Enabled" and r["AbortIncompleteMultipartUpload"]["DaysAfterInitiation"] > 0
        for r in rules
    )


def check_role(profile_arn: str, bucket: str) -> None:
    iam = boto3.client("iam")
    profile = iam.get_instance_profile(InstanceProfileName=profile_arn.rsplit("/", 1)[1])
    (role,) = profile["InstanceProfile"]["Roles"]
    assert iam.list_attached_role_policies(RoleName=role["RoleName"])["AttachedPolicies"] == []
    allowed: set[tuple[str, str]] = set()
    for name in iam.list_role_policies(RoleName=role["RoleName"])["PolicyNames"]:
        document = iam.get_role_policy(RoleName=role["RoleName"], PolicyName=name)["PolicyDocument"]
        if isinstance(document, str):
            document = json.loads(document)
        for statement in document["Statement"]:
            assert statement["Effect"] == "Allow"
            actions = statement["Action"]
            resources = statement["Resource"]
            for action in [actions] if isinstance(actions, str) else actions:
                for resource in [resources] if isinstance(resources, str) else resources:
                    allowed.add((action, resource))
    arn = f"arn:aws:s3:::{bucket}"
    assert allowed == {
        ("s3:GetObject", f"{arn}/*"),
        ("s3:PutObject", f"{arn}/*"),
        ("s3:ListBucket", arn),
        ("s3:DeleteObject", f"{arn}/.checkpoints/*"),
        ("s3:DeleteObject", f"{arn}/.failures/*"),
        ("s3:DeleteObject", f"{arn}/.leases/*"),
        # moto's account; a parameter path has no double slash in its ARN.
        ("ssm:GetParameter", "arn:aws:ssm:us-east-1:123456789012:parameter/music/git-token"),
        ("s3:AbortMultipartUpload", f"{arn}/*"),
    }


def check_destroy(workspace: Workspace, outputs: dict) -> None:
    bucket = outputs["bucket_name"]
    ids = outputs["instance_ids"]
    args = ["-input=false", "-no-color", f"-state={workspace.state}", *var_args(SETTINGS)]
    workspace.run("destroy", "-auto-approve", *args, endpoint=os.environ["AWS_ENDPOINT_URL"])

    ec2 = boto3.client("ec2")
    reservations = ec2.describe_instances(InstanceIds=ids)["Reservations"]
    assert {i["State"]["Name"] for r in reservations for i in r["Instances"]} == {"terminated"}
    assert bucket not in [b["Name"] for b in boto3.client("s3").list_buckets()["Buckets"]]
    roles = boto3.client("iam").list_roles()["Roles"]
    assert not [r for r in roles if r["RoleName"].startswith("musicgen-batch-worker-")]
    groups = ec2.describe_security_groups()["SecurityGroups"]
    assert not [g for g in groups if g["GroupName"].startswith("musicgen-batch-worker-")]
    state = json.loads(workspace.state.read_text())
    assert state["resources"] == []
