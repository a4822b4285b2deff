"""Checks before launch: each one line, passed or failed, so that what fails is found before
anything is paid for. This module holds the result type, the EC2 checks (AMI, default VPC) and
the SSM token parameter's; the git checks are in launcher.gitremote. Lookups take their client
as a parameter; the decisions (`ami_check`, `network_check`) are pure."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from botocore.exceptions import ClientError

from contract.aws import error_code

# packer/musicgen.pkr.hcl names its AMIs musicgen-batch-<build time>; terraform's default AMI
# lookup (modules/worker) uses the same pattern.
PACKER_AMI_PATTERN = "musicgen-batch-*"


@dataclass(frozen=True)
class Check:
    ok: bool
    line: str
    # A warning passes (nothing is refused) but is printed on stderr for the user to weigh.
    warning: bool = False

    @classmethod
    def passed(cls, line: str) -> Check:
        return cls(True, line)

    @classmethod
    def failed(cls, line: str) -> Check:
        return cls(False, line)

    @classmethod
    def warned(cls, line: str) -> Check:
        return cls(True, line, warning=True)


@dataclass(frozen=True)
class Image:
    image_id: str
    name: str
    created: datetime


def _image(raw: dict) -> Image:
    created = datetime.fromisoformat(raw["CreationDate"])
    return Image(raw["ImageId"], raw.get("Name", ""), created)


def newest_packer_image(ec2: Any) -> Image | None:
    """The newest available AMI of this account named like packer/ names them."""
    images = ec2.describe_images(
        Owners=["self"],
        Filters=[
            {"Name": "name", "Values": [PACKER_AMI_PATTERN]},
            {"Name": "state", "Values": ["available"]},
        ],
    )["Images"]
    newest = max(images, key=lambda raw: raw["CreationDate"], default=None)
    return None if newest is None else _image(newest)


def image_by_id(ec2: Any, image_id: str) -> Image | None:
    """The AMI `image_id` when it exists in the client's region and is available."""
    try:
        images = ec2.describe_images(ImageIds=[image_id])["Images"]
    except ClientError as exc:
        if error_code(exc) in ("InvalidAMIID.NotFound", "InvalidAMIID.Malformed"):
            return None
        raise
    available = [raw for raw in images if raw.get("State") == "available"]
    return _image(available[0]) if available else None


def ami_check(image: Image | None, *, region: str, explicit_id: str | None, now: datetime) -> Check:
    if image is None:
        if explicit_id:
            return Check.failed(
                f"AMI: {explicit_id} (--var ami_id) is not an available AMI in {region}; "
                "AMIs are per region: copy it there, or build one with "
                f"`packer build -var region={region} packer/`"
            )
        return Check.failed(
            f"AMI: no available AMI named {PACKER_AMI_PATTERN} owned by this account in "
            f"{region}; build one with `packer build -var region={region} packer/`"
        )
    source = "--var ami_id" if explicit_id else "newest packer/ build"
    return Check.passed(
        f"AMI: {image.image_id} {image.name}, built {_age(now - image.created)} ago ({source})"
    )


@dataclass(frozen=True)
class Network:
    vpc_id: str | None
    default_subnet_zones: frozenset[str]


def default_network(ec2: Any) -> Network:
    vpcs = ec2.describe_vpcs(Filters=[{"Name": "is-default", "Values": ["true"]}])["Vpcs"]
    if not vpcs:
        return Network(None, frozenset())
    vpc_id = vpcs[0]["VpcId"]
    subnets = ec2.describe_subnets(
        Filters=[
            {"Name": "vpc-id", "Values": [vpc_id]},
            {"Name": "default-for-az", "Values": ["true"]},
        ]
    )["Subnets"]
    return Network(vpc_id, frozenset(s["AvailabilityZone"] for s in subnets))


def network_check(
    network: Network, *, region: str, priced_zones: Iterable[str], chosen_zone: str | None
) -> Check:
    """The workers launch into the default VPC's default subnet of their zone (terraform names
    no subnet): the chosen zone needs one, and without a chosen zone some priced zone does."""
    if network.vpc_id is None:
        return Check.failed(
            f"network: no default VPC in {region}; create one with "
            f"`aws ec2 create-default-vpc --region {region}`"
        )
    wanted = [chosen_zone] if chosen_zone else sorted(priced_zones)
    usable = sorted(zone for zone in wanted if zone in network.default_subnet_zones)
    if wanted and not usable:
        zone = wanted[0]
        return Check.failed(
            f"network: the default VPC {network.vpc_id} has no default subnet in "
            f"{' or '.join(wanted)}; create one with `aws ec2 create-default-subnet "
            f"--availability-zone {zone} --region {region}`"
        )
    if not wanted and not network.default_subnet_zones:
        return Check.failed(
            f"network: the default VPC {network.vpc_id} has no default subnet; create one with "
            f"`aws ec2 create-default-subnet --availability-zone ZONE --region {region}`"
        )
    zones = usable or sorted(network.default_subnet_zones)
    return Check.passed(
        f"network: default VPC {network.vpc_id}, default subnet in {', '.join(zones)}"
    )


def token_parameter_check(ssm: Any, name: str, *, region: str) -> Check:
    """The parameter exists in the launch region (the worker reads it there) and is a
    SecureString. Its value is not read here: the git check reads it through the helper."""
    try:
        parameter = ssm.get_parameter(Name=name, WithDecryption=False)["Parameter"]
    except ClientError as exc:
        code = error_code(exc)
        if code == "ParameterNotFound":
            return Check.failed(
                f"git token: no SSM parameter {name} in {region}; create it with `aws ssm "
                f"put-parameter --region {region} --type SecureString --name {name} "
                "--value TOKEN`"
            )
        return Check.failed(f"git token: cannot read SSM parameter {name} in {region} ({code})")
    if parameter.get("Type") != "SecureString":
        return Check.failed(
            f"git token: SSM parameter {name} is a {parameter.get('Type')}, not a SecureString; "
            "store the token encrypted (--type SecureString)"
        )
    return Check.passed(f"git token: SSM parameter {name} in {region} is a SecureString")


def _age(delta: timedelta) -> str:
    hours = max(delta.total_seconds(), 0) / 3600
    if hours < 1:
        return f"{int(hours * 60)} min"
    if hours < 48:
        return f"{int(hours)} h"
    return f"{int(hours // 24)} days"
