"""The default EBS key check: the workers' root volumes are encrypted without a named key, so the
region's default EBS key encrypts them, and Auto Scaling's service-linked role must be allowed to
use it ("Required AWS KMS key policy for use with encrypted volumes", EC2 Auto Scaling user
guide). moto has KMS key policies and grants and GetEbsEncryptionByDefault, but no
GetEbsDefaultKmsKeyId: tests/support/launcher.py's EbsDefaults answers that one call."""

from __future__ import annotations

import json

import pytest

from launcher import aws
from launcher.checks import Check
from launcher.ebs import DefaultKey, Unreadable, default_key, key_check
from tests.support.fake_terraform import FakeTerraform
from tests.support.launcher import AWS_MANAGED_EBS_KEY, GIT, EbsDefaults, Launcher

ACCOUNT = "123456789012"
ROLE = f"arn:aws:iam::{ACCOUNT}:role/aws-service-role/autoscaling.amazonaws.com/AWSServiceRoleForAutoScaling"
CMK = f"arn:aws:kms:us-east-1:{ACCOUNT}:key/1234abcd-12ab-34cd-56ef-1234567890ab"
FIX = (
    "add the two key policy statements of https://docs.aws.amazon.com/autoscaling/ec2/userguide/"
    "key-policy-requirements-EBS-encryption.html for the role AWSServiceRoleForAutoScaling, or go "
    "back to the AWS managed key with `aws ec2 reset-ebs-default-kms-key-id --region us-east-1`"
)


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        (
            DefaultKey(AWS_MANAGED_EBS_KEY, False),
            Check.passed(
                "EBS key: the root volumes are encrypted with the AWS managed key aws/ebs "
                "(encryption by default off), which Auto Scaling may use"
            ),
        ),
        (
            # The aws/ebs key named by its key ARN: DescribeKey says AWS manages it.
            DefaultKey(CMK, True, "AWS"),
            Check.passed(
                "EBS key: the root volumes are encrypted with the AWS managed key aws/ebs "
                "(encryption by default on), which Auto Scaling may use"
            ),
        ),
        (
            DefaultKey(CMK, True, "CUSTOMER", role_allowed=True),
            Check.passed(
                f"EBS key: the root volumes are encrypted with the customer managed key {CMK} "
                "(encryption by default on), whose policy lets AWSServiceRoleForAutoScaling use it"
            ),
        ),
        (
            DefaultKey(CMK, True, "CUSTOMER", role_allowed=False),
            Check.failed(
                f"EBS key: the default EBS key in us-east-1 is the customer managed key {CMK}, "
                "whose key policy and grants do not let Auto Scaling's AWSServiceRoleForAutoScaling "
                f"use it, so every launch of the group would fail: {FIX}"
            ),
        ),
        (
            DefaultKey(CMK, False, "CUSTOMER", role_allowed=None),
            Check.warned(
                f"EBS key: the default EBS key in us-east-1 is the customer managed key {CMK}, and "
                "its key policy could not be read; unless it lets AWSServiceRoleForAutoScaling use "
                f"the key, every launch of the group fails: {FIX}"
            ),
        ),
        (
            DefaultKey(CMK, True, "CUSTOMER", state="Disabled", role_allowed=True),
            Check.failed(
                f"EBS key: the default EBS key in us-east-1, {CMK}, is Disabled, so no instance "
                "can launch; enable it, or go back to the AWS managed key with "
                "`aws ec2 reset-ebs-default-kms-key-id --region us-east-1`"
            ),
        ),
        (
            Unreadable("EC2 answered UnauthorizedOperation"),
            Check.warned(
                "EBS key: not checked: EC2 answered UnauthorizedOperation; a customer managed "
                "default key makes every launch of the group fail unless its policy lets "
                "AWSServiceRoleForAutoScaling use it"
            ),
        ),
    ],
)
def test_key_check(key: DefaultKey | Unreadable, expected: Check) -> None:
    assert key_check(key, region="us-east-1") == expected


def test_a_customer_managed_key_in_kms(aws_env: str) -> None:
    """Against moto's KMS: a new key's default policy names only the account, not the role; the
    statement AWS's guide adds, or a grant to the role, lets Auto Scaling use it."""
    ec2, kms = aws.ec2_client("us-east-1"), aws.kms_client("us-east-1")
    ec2.enable_ebs_encryption_by_default()
    arn = kms.create_key(Description="ebs default")["KeyMetadata"]["Arn"]
    stand_in = EbsDefaults(ec2, arn)

    assert default_key(stand_in, kms) == DefaultKey(arn, True, "CUSTOMER", "Enabled", False)

    policy = json.loads(kms.get_key_policy(KeyId=arn, PolicyName="default")["Policy"])
    policy["Statement"].append(
        {
            "Sid": "Allow service-linked role use of the customer managed key",
            "Effect": "Allow",
            "Principal": {"AWS": [ROLE]},
            "Action": ["kms:Encrypt", "kms:Decrypt", "kms:ReEncrypt*", "kms:GenerateDataKey*",
                       "kms:DescribeKey"],
            "Resource": "*",
        }
    )
    kms.put_key_policy(KeyId=arn, PolicyName="default", Policy=json.dumps(policy))
    assert default_key(stand_in, kms).role_allowed is True

    other = kms.create_key()["KeyMetadata"]["Arn"]
    kms.create_grant(KeyId=other, GranteePrincipal=ROLE, Operations=["Decrypt", "GenerateDataKeyWithoutPlaintext"])
    assert default_key(EbsDefaults(ec2, other), kms).role_allowed is True

    assert default_key(EbsDefaults(ec2, AWS_MANAGED_EBS_KEY), kms) == DefaultKey(
        AWS_MANAGED_EBS_KEY, True
    )


def test_a_launch_into_a_customer_managed_default_key_is_refused_after_the_estimate(
    launcher: Launcher, terraform: FakeTerraform
) -> None:
    arn = aws.kms_client("us-east-1").create_key()["KeyMetadata"]["Arn"]
    launcher.ebs_key = arn

    result = launcher(*GIT, "--yes")

    assert result.code == 2
    assert "  FAILED  EBS key (the error is below)\n" in result.out
    assert "Estimate (upper bound, at the max price)" in result.out
    assert result.err == (
        f"error: EBS key: the default EBS key in us-east-1 is the customer managed key {arn}, "
        "whose key policy and grants do not let Auto Scaling's AWSServiceRoleForAutoScaling use "
        f"it, so every launch of the group would fail: {FIX}\n"
        "error: 1 check failed; nothing launched\n"
    )
    assert terraform.argvs() == []
