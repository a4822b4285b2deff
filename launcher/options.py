"""What the launcher's options are bounded by and default to, and the one exception every
refusal becomes. The options themselves are declared with click in launcher/commands/."""

from __future__ import annotations

import re
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
PROG = "musicgen-launcher"
COMMANDS = ("launch", "status", "download")
TERRAFORM_DIR_VARIABLE = "MUSICGEN_TERRAFORM_DIR"
DEFAULT_DOWNLOAD_DIR = "songs"
# AWS keeps 90 days of spot price history.
MAX_PRICE_WINDOW_HOURS = 90 * 24
# Bounds of the estimate's inputs: past them a value is a typo (1e-300 for 0.3), and the estimate
# would print hundreds of digits. 0.01 audio-s per second is 100 s of work per second of song.
MIN_REALTIME_FACTOR, MAX_REALTIME_FACTOR = 0.01, 100.0
MAX_BOOT_OVERHEAD_MIN = 24 * 60
# Far above the spot vCPU quota of most accounts; the quota check tells the real limit.
MAX_WORKER_COUNT = 1000

# Variables the launcher sets from its own options; a --var for one of them would make the
# question ("at max $0.40/h?") describe something other than what terraform applies.
OPTION_FOR_VARIABLE = {
    "region": "--region",
    "instance_types": "--instance-type",
    "max_price": "--max-price",
    "worker_count": "--worker-count",
    "keep_alive": "--keep-alive",
    "max_hours": "--max-hours",
    "git_repo_url": "--git-url",
    "git_ref": "--git-ref",
    "git_token_parameter": "--git-token-parameter",
}
# The shape of AWS region names (us-east-1, ap-southeast-2, us-gov-west-1); whether AWS serves
# the region is for AWS to say.
REGION_NAME = re.compile(r"^[a-z]+(-[a-z0-9]+){1,4}$")
# SSM Parameter Store names: letters, digits, _.- and / for a hierarchy.
# EC2 instance type names: family, a dot, size (g4dn.xlarge, p6-b200.48xlarge, u-6tb1.metal).
INSTANCE_TYPE_NAME = re.compile(r"^[a-z0-9-]+\.[a-z0-9-]+$")
SSM_PARAMETER_NAME = re.compile(r"^[A-Za-z0-9_.\-/]{1,2048}$")
# Variables the worker group replaced, and why a --var for them is refused.
REPLACED_VARIABLES = {
    "instance_type": "replaced by instance_types; use --instance-type, repeatable",
    "availability_zone": (
        "replaced by availability_zones, which the launcher sets to the zones with a default "
        "subnet and a spot price within the max"
    ),
    "availability_zones": (
        "the launcher sets it to the zones with a default subnet and a spot price within the max"
    ),
    "shutdown_when_done": (
        "replaced by keep_alive; the workers scale in when the batch is done unless --keep-alive"
    ),
}


class UsageError(Exception):
    """A problem the user can fix; printed as one line on stderr, exit status 2."""


def default_terraform_dir() -> Path:
    """The terraform/ configuration installed with the launcher: the checkout's own in a checkout
    or an editable install, else the copy packaged as launcher.terraform (pyproject.toml)."""
    checkout = REPO_ROOT / "terraform"
    if (checkout / "variables.tf").is_file():
        return checkout
    from importlib.resources import files

    return Path(str(files("launcher.terraform")))

