"""The real terraform binary on the real root configuration: init, validate, variable
validation, then checks (through boto3) of the tier's ONE apply, the launcher's real launch
(tests/support/terraform_launch.py, shared with tests/test_launcher_terraform.py), its scale-in
and destroy (run after every other test of the session), and plans that show how
availability_zones limits the subnets. `terraform fmt` is checked by `make lint`
(lint/test_lint.py)."""

from __future__ import annotations

import base64
import fnmatch
import gzip
import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import boto3
import pytest

from tests import systemd_units, tf_support
from tests.support import terraform_launch
from tests.support.iam_policy import explicitly_denied
from tests.support.terraform_launch import Root, TerraformLaunch

pytestmark = [
    pytest.mark.terraform,
    pytest.mark.slow,
    pytest.mark.xdist_group("terraform"),
    pytest.mark.skipif(tf_support.skip_reason() is not None, reason=str(tf_support.skip_reason())),
]

WORKER_TAG = {"Role": "musicgen-batch-worker"}
# The shared launch's settings (tests/support/terraform_launch.py), for plans of their own.
SETTINGS = {
    "git_repo_url": "https://github.com/example/musicgen-batch.git",
    "git_ref": "main",
    "max_price": terraform_launch.MAX_PRICE,
    "worker_count": terraform_launch.WORKER_COUNT,
    "batch_size": "3",
    "keep_alive": "false",
    "max_hours": terraform_launch.MAX_HOURS,
    "instance_types": json.dumps(terraform_launch.INSTANCE_TYPES),
    "tags": '{Team = "music"}',
    "audio_format": "wav",
    "model_path": "/opt/musicgen/models/musicgen-small",
    "git_token_parameter": terraform_launch.GIT_TOKEN_PARAMETER,
    "max_failed_boots": "2",
}
# The zones the launcher chose: those of CALM_MARKET within the max price.
LAUNCH_ZONES = ["us-east-1a", "us-east-1c"]


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


def test_init_leaves_the_repository_clean(workspace: Workspace) -> None:
    assert (workspace.root / "tf" / ".terraform" / "providers").is_dir()
    assert not (tf_support.TERRAFORM_DIR / ".terraform").exists()
    assert not list(tf_support.TERRAFORM_DIR.glob("*.tfstate*"))


def test_validate(workspace: Workspace) -> None:
    result = workspace.run("validate", "-json", "-no-color")
    report = json.loads(result.stdout)
    assert report["valid"], report["diagnostics"]
    assert report["warning_count"] == 0, report["diagnostics"]


def test_bad_variables_fail_at_plan(workspace: Workspace, moto_server: str) -> None:
    """Terraform reports every failed validation of one plan, before touching AWS."""
    bad = {
        "max_price": ("0", "max_price must be greater than 0"),
        "instance_types": ('["g4dn.xlarge", "p3.2xlarge"]', "instance_types must be a non-empty list"),
        "availability_zones": ('["us-east-1"]', "availability_zones must be zone names"),
        "max_hours": ("0", "max_hours must be greater than 0"),
        "name": ("Songs_1", "name must be 1-24 lowercase letters"),
        "tags": ('{"aws:owner" = "me"}', "tags must have keys of 1-128 characters"),
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
        workspace.run(
            "plan", "-input=false", "-no-color", *var_args(settings), endpoint=moto_server
        )
    text = " ".join(str(failure.value).split())
    assert [m for _, m in bad.values() if m not in text] == []


@dataclass
class Deployment:
    workspace: Root
    endpoint: str
    outputs: dict
    # The applied resources (`terraform show -json` of the state).
    planned: dict
    ami_id: str
    # The commit the launcher pinned (git_ref in launcher.auto.tfvars.json).
    git_ref: str

    def args(self) -> list[str]:
        """No -var: the launcher's launcher.auto.tfvars.json (and the user's own tfvars beside it)
        carry every variable, as for the `terraform -chdir=terraform destroy` it prints."""
        return ["-input=false", "-no-color"]


@pytest.fixture(scope="module")
def deployment(shared_terraform_launch: TerraformLaunch) -> Iterator[Deployment]:
    """The tier's one apply (tests/support/terraform_launch.py), with boto3 pointed at its moto
    server for this module's tests; test_destroy_... destroys it (and the session's end does,
    when a test failed before)."""
    launch = shared_terraform_launch
    assert launch.result.code == 0, launch.result.err
    git_ref = json.loads((launch.terraform_dir / "launcher.auto.tfvars.json").read_text())["git_ref"]
    assert re.fullmatch(r"[0-9a-f]{40}", git_ref)
    with pytest.MonkeyPatch.context() as patch:
        for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN"):
            patch.delenv(name, raising=False)
        for name, value in launch.env.items():
            if name.startswith("AWS_"):
                patch.setenv(name, value)
        state = json.loads(launch.workspace.run("show", "-json", "-no-color").stdout)
        yield Deployment(
            launch.workspace,
            launch.endpoint,
            launch.outputs(),
            state["values"],
            launch.ami_id,
            git_ref,
        )


def resources_of(values: dict, type_: str) -> list[dict]:
    found = []
    modules = [values["root_module"]]
    while modules:
        module = modules.pop()
        found += [r for r in module.get("resources", []) if r["type"] == type_]
        modules += module.get("child_modules", [])
    return found


def default_subnets(ec2) -> dict[str, str]:
    """Zone -> default subnet of the default VPC."""
    (vpc,) = ec2.describe_vpcs(Filters=[{"Name": "is-default", "Values": ["true"]}])["Vpcs"]
    subnets = ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [vpc["VpcId"]]}])
    return {s["AvailabilityZone"]: s["SubnetId"] for s in subnets["Subnets"] if s["DefaultForAz"]}


def the_group(deployment: Deployment) -> dict:
    name = deployment.outputs["autoscaling_group_name"]
    (group,) = boto3.client("autoscaling").describe_auto_scaling_groups(
        AutoScalingGroupNames=[name]
    )["AutoScalingGroups"]
    return group


def group_instances(deployment: Deployment) -> list[dict]:
    ids = [i["InstanceId"] for i in the_group(deployment)["Instances"]]
    reservations = boto3.client("ec2").describe_instances(InstanceIds=ids)["Reservations"]
    return [i for r in reservations for i in r["Instances"]]


def test_outputs_name_the_bucket_the_group_and_the_tag(deployment: Deployment) -> None:
    outputs = deployment.outputs
    assert set(outputs) == {
        "bucket_name", "region", "worker_tag", "autoscaling_group_name", "audio_format"
    }
    assert outputs["region"] == "us-east-1"
    assert outputs["worker_tag"] == WORKER_TAG
    # The launch's (the launcher tests' prompts name .wav files); flac is in a plan below.
    assert outputs["audio_format"] == "wav"
    assert outputs["bucket_name"].startswith("musicgen-batch-")
    # Known before the group exists (the role names it): NAME-workers-BUCKET.
    assert outputs["autoscaling_group_name"] == f"musicgen-batch-workers-{outputs['bucket_name']}"


def test_the_group_is_all_spot_over_every_default_subnet(deployment: Deployment) -> None:
    group = the_group(deployment)
    assert (group["MinSize"], group["MaxSize"], group["DesiredCapacity"]) == (0, 2, 2)
    assert group["CapacityRebalance"] is True
    # A worker's own scale-in must not set off a rebalance that ends busy workers in other zones;
    # capacity rebalancing is another process and stays on.
    assert [p["ProcessName"] for p in group["SuspendedProcesses"]] == ["AZRebalance"]
    assert group["HealthCheckType"] == "EC2"
    policy = group["MixedInstancesPolicy"]
    distribution = policy["InstancesDistribution"]
    assert distribution["OnDemandBaseCapacity"] == 0
    assert distribution["OnDemandPercentageAboveBaseCapacity"] == 0
    assert distribution["SpotAllocationStrategy"] == "price-capacity-optimized"
    assert float(distribution["SpotMaxPrice"]) == 0.35
    assert [o["InstanceType"] for o in policy["LaunchTemplate"]["Overrides"]] == [
        "g4dn.xlarge",
        "g4dn.2xlarge",
    ]
    (template,) = boto3.client("ec2").describe_launch_templates()["LaunchTemplates"]
    spec = policy["LaunchTemplate"]["LaunchTemplateSpecification"]
    assert spec["LaunchTemplateId"] == template["LaunchTemplateId"]
    # One subnet in each zone the launcher chose (test_availability_zones_... shows that no
    # availability_zones means every zone with a default subnet), and nothing else.
    subnets = default_subnets(boto3.client("ec2"))
    assert len(subnets) >= 2
    assert sorted(group["VPCZoneIdentifier"].split(",")) == sorted(
        subnets[zone] for zone in LAUNCH_ZONES
    )
    tags = {t["Key"]: (t["Value"], t["PropagateAtLaunch"]) for t in group["Tags"]}
    assert tags["Role"] == ("musicgen-batch-worker", True)
    assert tags["Project"] == ("musicgen-batch", True)
    assert tags["Team"] == ("music", True)


def test_the_launch_template_holds_the_instance_settings(deployment: Deployment) -> None:
    """moto does not copy the template's metadata options, profile or market onto the
    instances it launches for a group, so they are checked where AWS reads them."""
    ec2 = boto3.client("ec2")
    (template,) = ec2.describe_launch_templates()["LaunchTemplates"]
    assert template["LaunchTemplateName"].startswith("musicgen-batch-worker-")
    (version,) = ec2.describe_launch_template_versions(
        LaunchTemplateId=template["LaunchTemplateId"], Versions=["$Latest"]
    )["LaunchTemplateVersions"]
    data = version["LaunchTemplateData"]
    assert data["ImageId"] == deployment.ami_id
    assert data["MetadataOptions"]["HttpTokens"] == "required"
    assert data["MetadataOptions"]["HttpPutResponseHopLimit"] in (1, 2)
    assert data["IamInstanceProfile"]["Name"].startswith("musicgen-batch-worker-")
    # One-time spot (the group's): an OS power-off terminates; the template does not say "stop".
    assert data.get("InstanceInitiatedShutdownBehavior", "terminate") == "terminate"
    # A mixed instances policy owns the market and the types: the template names neither.
    assert "InstanceMarketOptions" not in data and "InstanceType" not in data
    (root,) = data["BlockDeviceMappings"]
    assert root["DeviceName"] == "/dev/sda1"
    assert root["Ebs"] == {
        "Encrypted": True,
        "DeleteOnTermination": True,
        "VolumeSize": 100,
        "VolumeType": "gp3",
    }
    specs = {s["ResourceType"]: {t["Key"]: t["Value"] for t in s["Tags"]} for s in data["TagSpecifications"]}
    for kind in ("instance", "volume"):
        assert specs[kind]["Role"] == "musicgen-batch-worker", kind
        assert specs[kind]["Project"] == "musicgen-batch", kind
        assert specs[kind]["Team"] == "music", kind


def test_the_group_launched_tagged_workers(deployment: Deployment, tmp_path: Path) -> None:
    ec2 = boto3.client("ec2")
    instances = group_instances(deployment)
    assert len(instances) == 2
    zones = set(default_subnets(ec2))
    for instance in instances:
        assert instance["State"]["Name"] in ("pending", "running")
        tags = {t["Key"]: t["Value"] for t in instance["Tags"]}
        assert tags["Role"] == "musicgen-batch-worker"
        assert tags["Project"] == "musicgen-batch"
        assert tags["Team"] == "music"
        assert tags["aws:autoscaling:groupName"] == deployment.outputs["autoscaling_group_name"]
        assert instance["ImageId"] == deployment.ami_id
        assert instance["Placement"]["AvailabilityZone"] in zones
        (root,) = instance["BlockDeviceMappings"]
        (volume,) = ec2.describe_volumes(VolumeIds=[root["Ebs"]["VolumeId"]])["Volumes"]
        assert (volume["Encrypted"], volume["VolumeType"], volume["Size"]) == (True, "gp3", 100)
        user_data = ec2.describe_instance_attribute(
            InstanceId=instance["InstanceId"], Attribute="userData"
        )["UserData"]["Value"]
        # What EC2 holds is gzip, which cloud-init uncompresses before it runs it.
        check_user_data(
            gzip.decompress(base64.b64decode(user_data)).decode(),
            deployment.outputs["bucket_name"],
            deployment.git_ref,
            tmp_path,
        )
    # The launcher finds the workers by their tag.
    tagged = ec2.describe_instances(
        Filters=[{"Name": "tag:Role", "Values": ["musicgen-batch-worker"]}]
    )["Reservations"]
    assert sorted(i["InstanceId"] for r in tagged for i in r["Instances"]) == sorted(
        i["InstanceId"] for i in instances
    )


def test_workers_have_an_egress_only_security_group(deployment: Deployment) -> None:
    ec2 = boto3.client("ec2")
    (group,) = ec2.describe_security_groups(
        Filters=[{"Name": "group-name", "Values": ["musicgen-batch-worker-*"]}]
    )["SecurityGroups"]
    for instance in group_instances(deployment):
        # moto lists an instance's groups on its network interface only.
        (interface,) = instance["NetworkInterfaces"]
        assert [g["GroupId"] for g in interface["Groups"]] == [group["GroupId"]]
    assert group["IpPermissions"] == []
    egress = group["IpPermissionsEgress"]
    assert [(p["IpProtocol"], p["FromPort"], p["ToPort"]) for p in egress] == [("tcp", 443, 443)]


def test_the_bucket_is_private_encrypted_and_tls_only(deployment: Deployment) -> None:
    check_bucket(deployment.outputs["bucket_name"])


def test_the_workers_cannot_overwrite_a_song(deployment: Deployment) -> None:
    """The applied bucket policy, evaluated as IAM evaluates a Deny (tests/support/iam_policy.py):
    the worker role's PutObject of a song without If-None-Match or If-Match is refused; with one
    of them, a bookkeeping key, or a multipart part (s3:ObjectCreationOperation false) it is not;
    nobody else is affected."""
    bucket = deployment.outputs["bucket_name"]
    policy = json.loads(boto3.client("s3").get_bucket_policy(Bucket=bucket)["Policy"])
    ec2 = boto3.client("ec2")
    (version,) = ec2.describe_launch_template_versions(
        LaunchTemplateId=ec2.describe_launch_templates()["LaunchTemplates"][0]["LaunchTemplateId"],
        Versions=["$Latest"],
    )["LaunchTemplateVersions"]
    profile = boto3.client("iam").get_instance_profile(
        InstanceProfileName=version["LaunchTemplateData"]["IamInstanceProfile"]["Name"]
    )
    (role,) = profile["InstanceProfile"]["Roles"]

    def denied(key: str, who: str = role["Arn"], creating: str = "true", **headers: str) -> bool:
        context = {
            "aws:SecureTransport": "true",
            "s3:ObjectCreationOperation": creating,
            "s3:if-none-match": headers.get("if_none_match"),
            "s3:if-match": headers.get("if_match"),
        }
        return explicitly_denied(policy, who, "s3:PutObject", f"arn:aws:s3:::{bucket}/{key}", context)

    for song in ("calm.wav", "epic.flac", "a/b/c.wav", ".leases.wav", "logs.wav"):
        assert denied(song), song
        assert not denied(song, if_none_match="*"), song
        assert not denied(song, if_match='"0123abcd"'), song
        assert not denied(song, creating="false"), song  # CreateMultipartUpload, UploadPart
        assert not denied(song, who="arn:aws:iam::123456789012:user/operator"), song
    for bookkeeping in (
        ".leases/calm.wav.json", ".checkpoints/calm.wav/3.npz", ".failures/calm.wav.json",
        ".records/calm.wav.json", ".boot-failures/i-0123.json", ".damaged/calm.wav.20261204T160000Z",
        "logs/i-0123-gpu0-20261204T160000Z.log", "cost_report.csv", "index.html",
    ):
        assert not denied(bookkeeping), bookkeeping


def test_the_role_allows_the_bucket_and_scale_in_of_its_own_group(
    deployment: Deployment,
) -> None:
    ec2 = boto3.client("ec2")
    (version,) = ec2.describe_launch_template_versions(
        LaunchTemplateId=ec2.describe_launch_templates()["LaunchTemplates"][0]["LaunchTemplateId"],
        Versions=["$Latest"],
    )["LaunchTemplateVersions"]
    check_role(
        version["LaunchTemplateData"]["IamInstanceProfile"]["Name"],
        deployment.outputs["bucket_name"],
        deployment.outputs["autoscaling_group_name"],
    )


@pytest.mark.changes_shared_launch(step=2)
def test_scale_in_of_a_worker_lowers_the_desired_capacity(deployment: Deployment) -> None:
    """The call a finished worker makes: its instance goes, and the group does not replace it.
    (Last before destroy: it changes the group.)"""
    autoscaling = boto3.client("autoscaling")
    first, second = group_instances(deployment)
    autoscaling.terminate_instance_in_auto_scaling_group(
        InstanceId=first["InstanceId"], ShouldDecrementDesiredCapacity=True
    )
    group = the_group(deployment)
    assert group["DesiredCapacity"] == 1
    assert [i["InstanceId"] for i in group["Instances"]] == [second["InstanceId"]]
    # A later apply keeps the lowered capacity: the workers own it, not terraform. (moto echoes
    # the template's own tags as a third tag specification, which real AWS does not, so the plan
    # is not empty here; what matters is the capacity it would set.)
    plan_file = deployment.workspace.root / "after-scale-in.tfplan"
    deployment.workspace.run(
        "plan", f"-out={plan_file}", *deployment.args(), endpoint=deployment.endpoint
    )
    plan = json.loads(
        deployment.workspace.run("show", "-json", "-no-color", str(plan_file)).stdout
    )
    (change,) = [c for c in plan["resource_changes"] if c["type"] == "aws_autoscaling_group"]
    assert change["change"]["after"]["desired_capacity"] == 1
    assert change["change"]["after"]["max_size"] == 2
    assert "delete" not in change["change"]["actions"]


@pytest.mark.changes_shared_launch(step=3)
def test_destroy_leaves_no_instance_group_template_or_spot_request(
    deployment: Deployment,
) -> None:
    outputs = deployment.outputs
    ec2 = boto3.client("ec2")
    workers = [
        i
        for r in ec2.describe_instances(
            Filters=[{"Name": "tag:Role", "Values": [WORKER_TAG["Role"]]}]
        )["Reservations"]
        for i in r["Instances"]
    ]
    launched = [i["InstanceId"] for i in workers]
    # The group's remaining worker still runs: destroy must end it.
    assert [i for i in workers if i["State"]["Name"] in ("pending", "running")]
    deployment.workspace.run(
        "destroy", "-auto-approve", *deployment.args(), endpoint=deployment.endpoint, timeout=600
    )

    reservations = ec2.describe_instances(InstanceIds=launched)["Reservations"]
    assert {i["State"]["Name"] for r in reservations for i in r["Instances"]} == {"terminated"}
    running = ec2.describe_instances(
        Filters=[{"Name": "instance-state-name", "Values": ["pending", "running", "stopping", "stopped"]}]
    )["Reservations"]
    assert running == []
    assert boto3.client("autoscaling").describe_auto_scaling_groups()["AutoScalingGroups"] == []
    assert ec2.describe_launch_templates()["LaunchTemplates"] == []
    requests = ec2.describe_spot_instance_requests()["SpotInstanceRequests"]
    assert [r for r in requests if r["State"] in ("open", "active")] == []
    assert outputs["bucket_name"] not in [
        b["Name"] for b in boto3.client("s3").list_buckets()["Buckets"]
    ]
    roles = boto3.client("iam").list_roles()["Roles"]
    assert not [r for r in roles if r["RoleName"].startswith("musicgen-batch-worker-")]
    groups = ec2.describe_security_groups()["SecurityGroups"]
    assert not [g for g in groups if g["GroupName"].startswith("musicgen-batch-worker-")]
    state = json.loads(deployment.workspace.state.read_text())
    assert state["resources"] == []


def plan_values(
    workspace: Workspace | Root,
    endpoint: str,
    tmp_path: Path,
    state: Path | None = None,
    **extra: str,
) -> dict:
    """`terraform plan` into an empty state (or `state`), as JSON (nothing is created or
    changed)."""
    plan_file = tmp_path / "zones.tfplan"
    workspace.run(
        "plan",
        "-input=false",
        "-no-color",
        f"-state={state or tmp_path / 'empty.tfstate'}",
        f"-out={plan_file}",
        *var_args({**SETTINGS, **extra}),
        endpoint=endpoint,
    )
    return json.loads(workspace.run("show", "-json", "-no-color", str(plan_file)).stdout)


def test_availability_zones_limit_the_subnets_and_enable_ssm_adds_session_manager(
    deployment: Deployment, tmp_path: Path
) -> None:
    subnets = default_subnets(boto3.client("ec2"))
    plan = plan_values(
        deployment.workspace,
        deployment.endpoint,
        tmp_path,
        # The deployment's state: the bucket and the profile exist, so the UserData is known.
        deployment.workspace.state,
        availability_zones='["us-east-1b", "us-east-1d"]',
        enable_ssm="true",
        audio_format="flac",
    )
    # The format reaches the output and the workers' UserData.
    assert plan["planned_values"]["outputs"]["audio_format"]["value"] == "flac"
    (template,) = resources_of(plan["planned_values"], "aws_launch_template")
    script = gzip.decompress(base64.b64decode(template["values"]["user_data"])).decode()
    assert "MUSICGEN_FORMAT='flac'" in script.splitlines()
    (group,) = resources_of(plan["planned_values"], "aws_autoscaling_group")
    assert sorted(group["values"]["vpc_zone_identifier"]) == sorted(
        [subnets["us-east-1b"], subnets["us-east-1d"]]
    )
    (ssm,) = resources_of(plan["planned_values"], "aws_iam_role_policy_attachment")
    assert ssm["values"]["policy_arn"] == "arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore"
    # The applied deployment (enable_ssm off) has none.
    assert resources_of(deployment.planned, "aws_iam_role_policy_attachment") == []
    # No availability_zones: one subnet in each zone that has a default subnet, and nothing else.
    assert len(subnets) >= 2
    everywhere = plan_values(
        deployment.workspace, deployment.endpoint, tmp_path, availability_zones="[]"
    )
    (group,) = resources_of(everywhere["planned_values"], "aws_autoscaling_group")
    assert sorted(group["values"]["vpc_zone_identifier"]) == sorted(subnets.values())
    # A zone with no default subnet (or of another region) stops the plan with one line.
    with pytest.raises(AssertionError) as failure:
        plan_values(
            deployment.workspace,
            deployment.endpoint,
            tmp_path,
            availability_zones='["us-west-2a"]',
        )
    assert "No default subnet in the default VPC in availability_zones us-west-2a" in " ".join(
        str(failure.value).split()
    )


def check_user_data(script: str, bucket: str, git_ref: str, tmp_path: Path) -> None:
    for line in [
        "MUSICGEN_REPO_URL='https://github.com/example/musicgen-batch.git'",
        f"MUSICGEN_REPO_REF='{git_ref}'",
        f"MUSICGEN_BUCKET='{bucket}'",
        f"MUSICGEN_OUTPUT='s3://{bucket}'",
        "MUSICGEN_MODEL='/opt/musicgen/models/musicgen-small'",
        "HOURLY_COST_USD='0.35'",
        "MUSICGEN_BATCH_SIZE='3'",
        "MUSICGEN_FORMAT='wav'",
        "MUSICGEN_KEEP_ALIVE='0'",
        "MUSICGEN_MAX_HOURS='6'",
        "MUSICGEN_IMDS_ENDPOINT='http://169.254.169.254'",
        "AWS_REGION='us-east-1'",
        "MUSICGEN_GIT_TOKEN_PARAMETER='/music/git-token'",
        "MUSICGEN_GIT_CREDENTIAL_HELPER='/usr/local/lib/musicgen-batch/git-credential-ssm.py'",
        "MUSICGEN_MAX_FAILED_BOOTS='2'",
    ]:
        assert line in script.splitlines()
    assert "/etc/musicgen-batch/worker.env" in script
    assert "musicgen-worker.service" in script
    assert "Restart=no" in script and "After=network-online.target" in script
    assert 'exec /bin/bash "$checkout/worker/instance/bootstrap.sh"' in script
    # The applied UserData is the one the unit tests render: the checkout and every GPU's worker
    # run sandboxed.
    units = systemd_units.worker_units(systemd_units.written_files(script))
    for name in ("musicgen-checkout.service", "musicgen-worker@.service", "musicgen-scale-in.service"):
        assert systemd_units.values(units[name], "Service", "User") == ["musicgen"], name
    # max_hours=6: systemd stops a hung worker 15 minutes after the worker's own cap.
    worker = units["musicgen-worker@.service"]
    assert systemd_units.values(worker, "Service", "RuntimeMaxSec") == [str(6 * 3600 + 900)]
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
    (deny,) = [s for s in policy["Statement"] if s.get("Sid") == "DenyInsecureTransport"]
    assert deny["Effect"] == "Deny"
    assert deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    assert sorted(deny["Resource"]) == [f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"]

    rules = s3.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]
    assert any(
        r["Status"] == "Enabled" and r["AbortIncompleteMultipartUpload"]["DaysAfterInitiation"] > 0
        for r in rules
    )


def check_role(profile_name: str, bucket: str, group_name: str) -> None:
    iam = boto3.client("iam")
    profile = iam.get_instance_profile(InstanceProfileName=profile_name)
    (role,) = profile["InstanceProfile"]["Roles"]
    # enable_ssm is off by default: no managed policy at all.
    assert iam.list_attached_role_policies(RoleName=role["RoleName"])["AttachedPolicies"] == []
    allowed: set[tuple[str, str]] = set()
    for name in iam.list_role_policies(RoleName=role["RoleName"])["PolicyNames"]:
        document = iam.get_role_policy(RoleName=role["RoleName"], PolicyName=name)["PolicyDocument"]
        if isinstance(document, str):
            document = json.loads(document)
        for statement in document["Statement"]:
            assert statement["Effect"] == "Allow"
            assert "Condition" not in statement
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
        # Scale-in: only instances of this one group (any group id, this exact name).
        (
            "autoscaling:TerminateInstanceInAutoScalingGroup",
            f"arn:aws:autoscaling:us-east-1:123456789012:autoScalingGroup:*:autoScalingGroupName/{group_name}",
        ),
        # After max_failed_boots boots that ran nothing: this group to 0, no other.
        (
            "autoscaling:SetDesiredCapacity",
            f"arn:aws:autoscaling:us-east-1:123456789012:autoScalingGroup:*:autoScalingGroupName/{group_name}",
        ),
        # AWS defines no resource type for this read-only List action: "*" is required.
        ("autoscaling:DescribeAutoScalingInstances", "*"),
    }
    # The one wildcard ARN segment is the group id; the group the real ARN names matches it.
    (real_arn,) = [
        g["AutoScalingGroupARN"]
        for g in boto3.client("autoscaling").describe_auto_scaling_groups(
            AutoScalingGroupNames=[group_name]
        )["AutoScalingGroups"]
    ]
    for pattern in [r for a, r in allowed if a.startswith(("autoscaling:Terminate", "autoscaling:Set"))]:
        assert fnmatch.fnmatchcase(real_arn, pattern)
        assert not fnmatch.fnmatchcase(real_arn + "-other", pattern)
