"""The key that will encrypt the workers' root volumes, and whether Auto Scaling may use it.

The launch template asks for an encrypted gp3 root volume without naming a key, so EBS uses the
region's default key for EBS encryption (GetEbsDefaultKmsKeyId): the AWS managed key aws/ebs
unless the account changed it (ModifyEbsDefaultKmsKeyId), whether or not encryption by default
is on. Auto Scaling launches through its service-linked role, which may use AWS managed keys but
not a customer managed key whose key policy (or a grant) does not name it: every launch of the
group then fails, each instance terminating at launch with "Client.InternalError: Client error on
launch" ("Required AWS KMS key policy for use with encrypted volumes", EC2 Auto Scaling user
guide). The lookups take their clients; `key_check` decides, purely.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from botocore.parsers import ResponseParserError

from contract.aws import error_code
from launcher.checks import Check

# The role Auto Scaling launches instances with unless a group names another (terraform's group
# names none).
SERVICE_LINKED_ROLE = "AWSServiceRoleForAutoScaling"
AWS_MANAGED_ALIAS = "alias/aws/ebs"
POLICY_DOC = (
    "https://docs.aws.amazon.com/autoscaling/ec2/userguide/key-policy-requirements-EBS-encryption.html"
)


@dataclass(frozen=True)
class DefaultKey:
    key_id: str
    encryption_by_default: bool
    # From kms:DescribeKey: "AWS" or "CUSTOMER"; None for the aws/ebs alias (no lookup needed).
    manager: str | None = None
    state: str = "Enabled"
    # Whether the key policy or a grant names the service-linked role; None when unreadable.
    role_allowed: bool | None = None


@dataclass(frozen=True)
class Unreadable:
    reason: str


def default_key(ec2: Any, kms: Any) -> DefaultKey | Unreadable:
    """The region's default EBS key, and for a customer managed key whether Auto Scaling's role
    may use it. A question AWS does not answer is an Unreadable with the reason."""
    try:
        by_default = bool(ec2.get_ebs_encryption_by_default()["EbsEncryptionByDefault"])
        key_id = ec2.get_ebs_default_kms_key_id()["KmsKeyId"]
    except ClientError as exc:
        return Unreadable(
            f"EC2 answered {_code(exc)} (the launcher's user needs ec2:GetEbsEncryptionByDefault "
            "and ec2:GetEbsDefaultKmsKeyId)"
        )
    except (BotoCoreError, ResponseParserError) as exc:
        # An endpoint without the call (moto answers it with an HTML error page) included.
        return Unreadable(f"EC2 did not answer ({str(exc).splitlines()[0]})")
    if key_id.endswith(AWS_MANAGED_ALIAS):
        return DefaultKey(key_id, by_default)
    try:
        metadata = kms.describe_key(KeyId=key_id)["KeyMetadata"]
    except (ClientError, BotoCoreError) as exc:
        return Unreadable(f"kms:DescribeKey of {key_id} failed ({_code(exc)})")
    manager, state = metadata.get("KeyManager", "CUSTOMER"), metadata.get("KeyState", "Enabled")
    if manager == "AWS":
        return DefaultKey(metadata.get("Arn", key_id), by_default, manager, state)
    return DefaultKey(
        metadata.get("Arn", key_id), by_default, manager, state, _role_allowed(kms, key_id)
    )


def _role_allowed(kms: Any, key_id: str) -> bool | None:
    """Whether the key policy names the service-linked role, or a grant is made to it."""
    try:
        policy = json.loads(kms.get_key_policy(KeyId=key_id, PolicyName="default")["Policy"])
        grants = [
            grant
            for page in kms.get_paginator("list_grants").paginate(KeyId=key_id)
            for grant in page.get("Grants", [])
        ]
    except (ClientError, BotoCoreError, ValueError):
        return None
    principals = [
        str(statement.get("Principal", ""))
        for statement in policy.get("Statement", [])
        if statement.get("Effect") == "Allow"
    ]
    grantees = [str(grant.get("GranteePrincipal", "")) for grant in grants]
    return any(SERVICE_LINKED_ROLE in text for text in [*principals, *grantees])


def key_check(key: DefaultKey | Unreadable, *, region: str) -> Check:
    by_default = ""
    if isinstance(key, DefaultKey):
        by_default = f"encryption by default {'on' if key.encryption_by_default else 'off'}"
    if isinstance(key, Unreadable):
        return Check.warned(
            f"EBS key: not checked: {key.reason}; a customer managed default key makes every "
            f"launch of the group fail unless its policy lets {SERVICE_LINKED_ROLE} use it"
        )
    if key.manager != "CUSTOMER":
        return Check.passed(
            f"EBS key: the root volumes are encrypted with the AWS managed key aws/ebs "
            f"({by_default}), which Auto Scaling may use"
        )
    if key.state != "Enabled":
        return Check.failed(
            f"EBS key: the default EBS key in {region}, {key.key_id}, is {key.state}, so no "
            "instance can launch; enable it, or go back to the AWS managed key with "
            f"`aws ec2 reset-ebs-default-kms-key-id --region {region}`"
        )
    fix = (
        f"add the two key policy statements of {POLICY_DOC} for the role "
        f"{SERVICE_LINKED_ROLE}, or go back to the AWS managed key with "
        f"`aws ec2 reset-ebs-default-kms-key-id --region {region}`"
    )
    if key.role_allowed is None:
        return Check.warned(
            f"EBS key: the default EBS key in {region} is the customer managed key {key.key_id}, "
            f"and its key policy could not be read; unless it lets {SERVICE_LINKED_ROLE} use the "
            f"key, every launch of the group fails: {fix}"
        )
    if not key.role_allowed:
        return Check.failed(
            f"EBS key: the default EBS key in {region} is the customer managed key {key.key_id}, "
            f"whose key policy and grants do not let Auto Scaling's {SERVICE_LINKED_ROLE} use it, "
            f"so every launch of the group would fail: {fix}"
        )
    return Check.passed(
        f"EBS key: the root volumes are encrypted with the customer managed key {key.key_id} "
        f"({by_default}), whose policy lets {SERVICE_LINKED_ROLE} use it"
    )


def _code(exc: Exception) -> str:
    return error_code(exc) or str(exc)
