"""What checkov cannot see in terraform/: module layout, variables, the TLS-only bucket policy,
the exact IAM actions and the spot settings, read with python-hcl2; and that checkov skips only
argued checks (checkov itself runs in `make lint`: lint/test_lint.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.hcl import blocks, load
from tests.tf_support import REPO_ROOT, TERRAFORM_DIR

MODULES = TERRAFORM_DIR / "modules"
MODULE_DIRS = sorted(p for p in MODULES.iterdir() if p.is_dir())
ALL_DIRS = [TERRAFORM_DIR, *MODULE_DIRS]
# The root variables' defaults besides those the contract's table states (contract.defaults.
# TERRAFORM_DEFAULTS, compared in tests/test_defaults.py).
LAUNCHER_VARIABLES = {
    "availability_zones": [],
    "keep_alive": False,
    "name": "musicgen-batch",
    "tags": {},
    "enable_ssm": False,
    "worker_count": 1,
    "ami_id": "",
    "git_ref": "main",
    "bucket_name": "",
    "git_token_parameter": "",
    "max_failed_boots": 3,
}


def tf_files() -> list[Path]:
    return sorted(TERRAFORM_DIR.rglob("*.tf"))


def test_modules_follow_the_standard_layout() -> None:
    assert {p.name for p in MODULE_DIRS} == {"storage", "iam", "worker"}
    for folder in ALL_DIRS:
        names = {p.name for p in folder.glob("*.tf")}
        assert names == {"main.tf", "variables.tf", "outputs.tf", "versions.tf"}, folder
    for folder in MODULE_DIRS:
        resources = blocks(folder / "main.tf", "resource")
        assert any(key.endswith(".this") for key in resources), folder


@pytest.mark.parametrize("folder", ALL_DIRS, ids=lambda p: p.name)
def test_every_variable_has_description_and_type(folder: Path) -> None:
    variables = blocks(folder / "variables.tf", "variable")
    assert variables
    for name, body in variables.items():
        assert body.get("description", "").strip(), f"{folder.name}: {name} has no description"
        assert "type" in body, f"{folder.name}: {name} has no type"
    for name, body in blocks(folder / "outputs.tf", "output").items():
        assert body.get("description", "").strip(), f"{folder.name}: output {name}"


def test_root_variables_are_the_launcher_interface() -> None:
    variables = blocks(TERRAFORM_DIR / "variables.tf", "variable")
    for name, default in LAUNCHER_VARIABLES.items():
        assert variables[name]["default"] == default, name
    assert "default" not in variables["git_repo_url"], "git_repo_url must be required"
    for name in ("availability_zone", "instance_type", "shutdown_when_done"):
        assert name not in variables, f"{name} was replaced"
    outputs = blocks(TERRAFORM_DIR / "outputs.tf", "output")
    assert set(outputs) == {
        "bucket_name", "region", "worker_tag", "autoscaling_group_name", "audio_format"
    }


def test_validations_guard_the_values_that_would_fail_late() -> None:
    variables = blocks(TERRAFORM_DIR / "variables.tf", "variable")
    for name in (
        "max_price",
        "instance_types",
        "availability_zones",
        "max_hours",
        "name",
        "tags",
        "bucket_name",
        "git_repo_url",
        "worker_count",
        "root_volume_size_gb",
        "max_failed_boots",
    ):
        assert variables[name].get("validation"), name
    assert "var.max_price > 0" in variables["max_price"]["validation"][0]["condition"]


def test_inputs_are_validated_once_at_the_root() -> None:
    """The root is the launcher's contract; a module takes plain typed inputs, so no check is
    copied (and none can drift from the root's)."""
    for folder in MODULE_DIRS:
        for name, body in blocks(folder / "variables.tf", "variable").items():
            assert "validation" not in body, f"{folder.name}: {name}"


def test_name_and_tags_reach_every_module_and_the_network_is_looked_up_at_the_root() -> None:
    modules = blocks(TERRAFORM_DIR / "main.tf", "module")
    assert set(modules) == {"storage", "iam", "worker"}
    for name, module in modules.items():
        assert module["name"] == "${var.name}", name
        assert module["tags"] == "${var.tags}", name
    for folder in MODULE_DIRS:
        assert not [k for k in blocks(folder / "main.tf", "data") if k.startswith(("aws_vpc", "aws_subnet"))]
    data = blocks(TERRAFORM_DIR / "main.tf", "data")
    assert data["aws_vpc.default"]["default"] is True
    subnets = data["aws_subnets.default"]
    filters = {f["name"]: f["values"] for f in subnets["filter"]}
    assert filters == {"vpc-id": ["${data.aws_vpc.default.id}"], "default-for-az": ["true"]}
    (zones,) = subnets["dynamic"]
    assert zones["filter"]["content"][0]["name"] == "availability-zone"
    assert "var.availability_zones" in zones["filter"]["for_each"]
    assert modules["worker"]["subnet_ids"] == "${data.aws_subnets.default.ids}"
    # The group name, known before the group: NAME-workers-BUCKET, the same for role and group.
    group = load(TERRAFORM_DIR / "main.tf")["locals"][0]["autoscaling_group_name"]
    assert group == "${var.name}-workers-${module.storage.bucket_name}"
    assert modules["iam"]["autoscaling_group_name"] == "${local.autoscaling_group_name}"
    assert modules["worker"]["autoscaling_group_name"] == "${local.autoscaling_group_name}"
    # Every tagged resource of the modules takes the caller's tags.
    for folder in MODULE_DIRS:
        for key, body in blocks(folder / "main.tf", "resource").items():
            if key.split(".")[0] in ("aws_s3_bucket", "aws_iam_role", "aws_iam_instance_profile",
                                     "aws_security_group", "aws_launch_template"):
                assert "var.tags" in str(body.get("tags", "")), key


def test_only_the_root_configures_the_provider() -> None:
    providers = {p: load(p).get("provider", []) for p in tf_files()}
    assert [p for p, found in providers.items() if found] == [TERRAFORM_DIR / "main.tf"]
    (aws,) = [entry["aws"] for entry in providers[TERRAFORM_DIR / "main.tf"]]
    assert aws["region"] == "${var.region}"
    assert aws["default_tags"][0]["tags"]["Project"] == "${var.name}"
    assert "endpoints" not in aws, "test endpoints come from AWS_ENDPOINT_URL, not the config"


def test_no_legacy_spot_requests_or_wildcard_iam() -> None:
    text = "\n".join(p.read_text() for p in tf_files())
    assert "aws_spot_instance_request" not in text
    assert '"s3:*"' not in (MODULES / "iam" / "main.tf").read_text()


def test_bucket_is_private_encrypted_and_tls_only() -> None:
    main = MODULES / "storage" / "main.tf"
    resources = blocks(main, "resource")
    block = resources["aws_s3_bucket_public_access_block.this"]
    for flag in ("block_public_acls", "block_public_policy", "ignore_public_acls"):
        assert block[flag] is True, flag
    assert block["restrict_public_buckets"] is True
    ownership = resources["aws_s3_bucket_ownership_controls.this"]["rule"][0]
    assert ownership["object_ownership"] == "BucketOwnerEnforced"
    sse = resources["aws_s3_bucket_server_side_encryption_configuration.this"]["rule"][0]
    assert sse["apply_server_side_encryption_by_default"][0]["sse_algorithm"]
    rule = resources["aws_s3_bucket_lifecycle_configuration.this"]["rule"][0]
    assert rule["status"] == "Enabled"
    assert rule["abort_incomplete_multipart_upload"][0]["days_after_initiation"] > 0

    policy = blocks(main, "data")["aws_iam_policy_document.bucket"]
    (statement,) = [s for s in policy["statement"] if s["sid"] == "DenyInsecureTransport"]
    assert statement["effect"] == "Deny"
    assert statement["actions"] == ["s3:*"]
    assert statement["principals"][0]["identifiers"] == ["*"]
    condition = statement["condition"][0]
    assert (condition["test"], condition["variable"], condition["values"]) == (
        "Bool",
        "aws:SecureTransport",
        ["false"],
    )
    assert sorted(statement["resources"]) == [
        "${aws_s3_bucket.this.arn}",
        "${aws_s3_bucket.this.arn}/*",
    ]
    assert "aws_iam_policy_document.bucket.json" in resources["aws_s3_bucket_policy.this"]["policy"]
    # The other statement keeps songs from being overwritten: tests/test_terraform.py evaluates
    # the applied policy.


def test_worker_role_allows_exactly_the_bucket_actions() -> None:
    main = MODULES / "iam" / "main.tf"
    document = blocks(main, "data")["aws_iam_policy_document.bucket_access"]
    allowed = set()
    for statement in document["statement"]:
        assert statement.get("effect", "Allow") == "Allow"
        for action in statement["actions"]:
            allowed |= {(action, resource) for resource in statement["resources"]}
    bucket = "${var.bucket_arn}"
    assert allowed == {
        ("s3:GetObject", f"{bucket}/*"),
        ("s3:PutObject", f"{bucket}/*"),
        ("s3:ListBucket", bucket),
        ("s3:DeleteObject", f"{bucket}/.checkpoints/*"),
        ("s3:DeleteObject", f"{bucket}/.failures/*"),
        ("s3:DeleteObject", f"{bucket}/.leases/*"),
        ("s3:AbortMultipartUpload", f"{bucket}/*"),
        ("autoscaling:TerminateInstanceInAutoScalingGroup", "${local.autoscaling_group_arn}"),
        ("autoscaling:SetDesiredCapacity", "${local.autoscaling_group_arn}"),
        ("autoscaling:DescribeAutoScalingInstances", "*"),
    }
    # No statement has a condition that could widen or narrow it unseen.
    assert not [s for s in document["statement"] if "condition" in s]
    # The git token: ssm:GetParameter on exactly the one parameter, only when one is named.
    (token,) = document["dynamic"][0]["statement"]["content"]
    assert (token["sid"], token["actions"]) == ("ReadGitToken", ["ssm:GetParameter"])
    assert token["resources"] == ["${statement.value}"]
    assert document["dynamic"][0]["statement"]["for_each"] == "${local.git_token_parameter_arns}"
    arns = load(main)["locals"][0]["git_token_parameter_arns"]
    assert "compact([var.git_token_parameter])" in arns
    assert ':parameter/${trimprefix(name, "/")}' in arns
    resources = blocks(main, "resource")
    assert set(resources) == {
        "aws_iam_role.this",
        "aws_iam_role_policy.this",
        "aws_iam_instance_profile.this",
        "aws_iam_role_policy_attachment.ssm",
    }
    assume = blocks(main, "data")["aws_iam_policy_document.assume_role"]["statement"][0]
    assert assume["principals"][0]["identifiers"] == ["ec2.amazonaws.com"]


def test_worker_role_may_terminate_only_instances_of_its_own_group() -> None:
    """Scale-in: TerminateInstanceInAutoScalingGroup on exactly one group ARN, by name (its id is
    AWS's); DescribeAutoScalingInstances, which has no resource type, on "*"; no other
    autoscaling or ec2 action, and no wildcard action."""
    main = MODULES / "iam" / "main.tf"
    document = blocks(main, "data")["aws_iam_policy_document.bucket_access"]
    statements = [*document["statement"], *document["dynamic"][0]["statement"]["content"]]
    actions = [a for s in statements for a in s["actions"]]
    assert not [a for a in actions if "*" in a]
    assert not [a for a in actions if a.startswith("ec2:")]
    assert sorted(a for a in actions if a.startswith("autoscaling:")) == [
        "autoscaling:DescribeAutoScalingInstances",
        "autoscaling:SetDesiredCapacity",
        "autoscaling:TerminateInstanceInAutoScalingGroup",
    ]
    (terminate,) = [s for s in statements if "autoscaling:TerminateInstanceInAutoScalingGroup" in s["actions"]]
    assert terminate["actions"] == ["autoscaling:TerminateInstanceInAutoScalingGroup"]
    assert terminate["resources"] == ["${local.autoscaling_group_arn}"]
    (stop,) = [s for s in statements if "autoscaling:SetDesiredCapacity" in s["actions"]]
    assert (stop["actions"], stop["resources"]) == (["autoscaling:SetDesiredCapacity"], ["${local.autoscaling_group_arn}"])
    (describe,) = [s for s in statements if "autoscaling:DescribeAutoScalingInstances" in s["actions"]]
    assert describe["actions"] == ["autoscaling:DescribeAutoScalingInstances"]
    # "*" only where AWS requires it: the describe action, nothing else.
    assert [s["actions"] for s in statements if "*" in s["resources"]] == [
        ["autoscaling:DescribeAutoScalingInstances"]
    ]
    arn = load(main)["locals"][0]["autoscaling_group_arn"]
    # The group id (a UUID AWS assigns) is the one wildcard; the name is the exact variable.
    assert arn.endswith(":autoScalingGroup:*:autoScalingGroupName/${var.autoscaling_group_name}")
    assert arn.startswith("${local.arn_prefix}:autoscaling:${local.account}")
    assert arn.count("*") == 1
    # enable_ssm: the AWS managed Session Manager policy, only when asked for.
    ssm = blocks(main, "resource")["aws_iam_role_policy_attachment.ssm"]
    assert ssm["count"] == "${var.enable_ssm ? 1 : 0}"
    assert ssm["policy_arn"].endswith(":iam::aws:policy/AmazonSSMManagedInstanceCore")


def test_no_instance_launches_before_its_role_has_its_permissions() -> None:
    """IAM is eventually consistent, and an instance launched before the role's policy is
    attached starts with a role that may do nothing: the instance profile the launch template
    names is only output once the policy exists. (Structural: moto shows no ordering.)"""
    outputs = blocks(MODULES / "iam" / "outputs.tf", "output")
    assert "aws_iam_role_policy.this" in outputs["instance_profile_name"]["depends_on"][0]
    assert blocks(TERRAFORM_DIR / "main.tf", "module")["worker"]["instance_profile_name"] == (
        "${module.iam.instance_profile_name}"
    )


def test_worker_role_can_abort_its_multipart_uploads() -> None:
    # The worker aborts a failed multipart upload; without the action S3 answers AccessDenied,
    # which hides the real error and leaves the parts billed.
    document = blocks(MODULES / "iam" / "main.tf", "data")["aws_iam_policy_document.bucket_access"]
    [statement] = [s for s in document["statement"] if "s3:AbortMultipartUpload" in s["actions"]]
    assert statement["resources"] == ["${var.bucket_arn}/*"]


def test_workers_are_an_all_spot_group_wired_to_the_variables() -> None:
    resources = blocks(MODULES / "worker" / "main.tf", "resource")
    assert "aws_instance.this" not in resources
    group = resources["aws_autoscaling_group.this"]
    assert group["name"] == "${var.autoscaling_group_name}"
    assert (group["min_size"], group["max_size"], group["desired_capacity"]) == (
        0,
        "${var.worker_count}",
        "${var.worker_count}",
    )
    # The workers lower the desired capacity themselves: a later apply must not raise it.
    assert group["lifecycle"][0]["ignore_changes"] == ["desired_capacity"]
    # apply does not wait for spot capacity.
    assert group["wait_for_capacity_timeout"] in ("0", 0)
    assert group["vpc_zone_identifier"] == "${var.subnet_ids}"
    assert group["capacity_rebalance"] is True
    # Destroy drains the group (its instances terminated) before deleting it.
    assert group["force_delete"] is False
    policy = group["mixed_instances_policy"][0]
    distribution = policy["instances_distribution"][0]
    assert distribution == {
        "on_demand_base_capacity": 0,
        "on_demand_percentage_above_base_capacity": 0,
        "spot_allocation_strategy": "price-capacity-optimized",
        "spot_max_price": "${var.max_price}",
    }
    template = policy["launch_template"][0]
    assert template["launch_template_specification"][0]["launch_template_id"] == (
        "${aws_launch_template.this.id}"
    )
    (override,) = template["dynamic"]
    assert override["override"]["for_each"] == "${var.instance_types}"
    assert override["override"]["content"][0]["instance_type"] == "${override.value}"
    (tag,) = group["dynamic"]
    assert tag["tag"]["content"][0]["propagate_at_launch"] is True
    assert "local.worker_tag" in tag["tag"]["for_each"] and "var.tags" in tag["tag"]["for_each"]

    launch = resources["aws_launch_template.this"]
    assert "instance_market_options" not in launch and "instance_type" not in launch
    metadata = launch["metadata_options"][0]
    assert metadata["http_tokens"] == "required"
    assert metadata["http_put_response_hop_limit"] in (1, 2)
    assert launch.get("instance_initiated_shutdown_behavior", "terminate") == "terminate"
    root = launch["block_device_mappings"][0]
    assert root["device_name"] == "${data.aws_ami.this.root_device_name}"
    ebs = root["ebs"][0]
    assert (ebs["volume_type"], ebs["encrypted"]) == ("gp3", True)
    assert ebs["volume_size"] == "${var.root_volume_size_gb}"
    assert launch["iam_instance_profile"][0]["name"] == "${var.instance_profile_name}"
    assert launch["vpc_security_group_ids"] == ["${aws_security_group.this.id}"]
    specs = {s["resource_type"]: s["tags"] for s in launch["tag_specifications"]}
    assert specs == {"instance": "${local.instance_tags}", "volume": "${local.instance_tags}"}
    instance_tags = load(MODULES / "worker" / "main.tf")["locals"][0]["instance_tags"]
    assert "local.worker_tag" in instance_tags and "var.tags" in instance_tags
    assert "hourly_cost_usd = var.max_price" in launch["user_data"]
    assert 'keep_alive = var.keep_alive ? "1" : "0"' in launch["user_data"]
    assert "runtime_max_sec = ceil(var.max_hours * 3600) + 900" in launch["user_data"]

    root_module = blocks(TERRAFORM_DIR / "main.tf", "module")["worker"]
    assert root_module["max_price"] == "${var.max_price}"
    assert root_module["instance_types"] == "${var.instance_types}"
    assert root_module["worker_count"] == "${var.worker_count}"


def test_security_group_has_no_ingress() -> None:
    group = blocks(MODULES / "worker" / "main.tf", "resource")["aws_security_group.this"]
    assert "ingress" not in group
    assert [(e["from_port"], e["to_port"], e["protocol"]) for e in group["egress"]] == [
        (443, 443, "tcp")
    ]
    text = (MODULES / "worker" / "main.tf").read_text()
    assert "aws_vpc_security_group_ingress_rule" not in text


def test_checkov_skips_only_the_argued_checks() -> None:
    lines = (REPO_ROOT / ".checkov.yaml").read_text().splitlines()
    skipped = {line.strip()[2:] for line in lines if line.strip().startswith("- CKV")}
    # Monitoring, access logs, replication, KMS CMK, event notifications, versioning.
    fair = {"CKV_AWS_126", "CKV_AWS_18", "CKV_AWS_144", "CKV_AWS_145", "CKV2_AWS_62", "CKV_AWS_21"}
    assert skipped <= fair, skipped - fair
