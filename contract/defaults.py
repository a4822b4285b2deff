"""Every default and bound the launcher, the worker, terraform and Packer share, each stated once.

The launcher and the worker import them. terraform/variables.tf and packer/musicgen.pkr.hcl
repeat some of them as their variables' defaults and validation bounds (HCL cannot import
Python): `TERRAFORM_DEFAULTS` and `PACKER_DEFAULTS` name which, and tests/test_defaults.py reads
the HCL to show that it agrees; tests/test_launcher_bounds.py runs terraform itself on values
either side of each bound. A value one of them accepts is then never refused by another after
the user said yes (terraform) or on every instance (the worker).

Also how an amount of money is written, on the listening page and in the launcher alike.
"""

from __future__ import annotations

# The model the AMI bakes in, and where; a worker without --model uses the hub id.
DEFAULT_MODEL = "facebook/musicgen-small"
DEFAULT_MODEL_DIR = "/opt/musicgen/models/musicgen-small"
# The audio format a song is written in (its extension comes with it, contract.prompts.SUFFIXES).
DEFAULT_AUDIO_FORMAT = "wav"
DEFAULT_REGION = "us-east-1"
DEFAULT_INSTANCE_TYPE = "g4dn.xlarge"
# The spot max price, USD per instance-hour: what terraform bids and what a song's cost is
# estimated with (the worker's --hourly-cost).
DEFAULT_MAX_PRICE = 0.40
# The workers' hard cap (terraform's max_hours): a hung model or a bug never bills for days.
DEFAULT_MAX_HOURS = 12.0
DEFAULT_ROOT_VOLUME_SIZE_GB = 100
# How long a song's lease lasts unless renewed (the worker's --lease-s).
DEFAULT_LEASE_S = 120.0
# Failed attempts, across workers, after which a song is given up (the worker's --max-attempts,
# and what the launcher's failure listing assumes).
DEFAULT_MAX_ATTEMPTS = 2
# The AMIs packer/ builds on: AWS's Deep Learning Base AMI with the NVIDIA driver.
DLAMI_NAME_PATTERN = "Deep Learning Base OSS Nvidia Driver GPU AMI (Ubuntu 22.04) *"
DLAMI_OWNER = "amazon"

# Songs a worker generates together; 0: as many as its free GPU memory holds.
DEFAULT_BATCH_SIZE = 0
# The largest --batch-size a user may give: beyond it a value is a typo, or would overflow
# tensor sizes.
MAX_USER_BATCH_SIZE = 1024
# The most songs the automatic sizing (--batch-size 0) picks from free GPU memory.
MAX_AUTO_BATCH_SIZE = 64

# The highest spot max price, in USD per instance-hour: the worker's hourly cost (terraform gives
# it the max price) and terraform's max_price. No GPU instance costs this much; more is a typo.
MAX_PRICE_USD_PER_HOUR = 1000.0
# The longest time cap, in hours (30 days): terraform's max_hours, the launcher's --max-hours and
# the worker's --max-hours. systemd's RuntimeMaxSec on the worker units is derived from it.
MAX_HOURS = 720.0

# terraform/variables.tf's defaults that restate one of the above.
TERRAFORM_DEFAULTS = {
    "region": DEFAULT_REGION,
    "instance_types": [DEFAULT_INSTANCE_TYPE],
    "max_price": DEFAULT_MAX_PRICE,
    "model_path": DEFAULT_MODEL_DIR,
    "batch_size": DEFAULT_BATCH_SIZE,
    "audio_format": DEFAULT_AUDIO_FORMAT,
    "max_hours": DEFAULT_MAX_HOURS,
    "root_volume_size_gb": DEFAULT_ROOT_VOLUME_SIZE_GB,
}
# packer/musicgen.pkr.hcl's variable defaults that restate one of the above.
PACKER_DEFAULTS = {
    "region": DEFAULT_REGION,
    "instance_type": DEFAULT_INSTANCE_TYPE,
    "root_volume_size_gb": DEFAULT_ROOT_VOLUME_SIZE_GB,
    "model_id": DEFAULT_MODEL,
    "model_dir": DEFAULT_MODEL_DIR,
}


def usd_amount(value: float) -> str:
    """An amount of money (an estimate, a cost so far, a song's cost): "$0.0524", "$0.55",
    "$0.005", "$0.00", "$12.35", "$1,234,567.89".

    A short song costs a fraction of a cent, so cents alone would show it as $0.00: below a
    dollar up to four decimals show it, below a cent up to six (the cost report's precision),
    without trailing zeros past the cents. From a dollar up, cents, with thousands separators so
    that a large estimate stays readable."""
    if value >= 1:
        return f"${value:,.2f}"
    text = f"{value:.{4 if value >= 0.01 else 6}f}".rstrip("0")
    whole, _, fraction = text.partition(".")
    return f"${whole}.{fraction:0<2}"


def usd(rate: float) -> str:
    """A price such as a max price or spot price, with the digits the user or AWS gave:
    "$0.40", "$0.385", "$0.00001"."""
    text = f"{rate:.5f}".rstrip("0")
    whole, _, fraction = text.partition(".")
    return f"${whole}.{fraction:0<2}"
