"""The one place that creates boto3 clients.

boto3's default credential chain and AWS_ENDPOINT_URL apply unchanged, which is how the tests
point everything at a local moto server.
"""

from __future__ import annotations

from typing import Any

import boto3
from botocore.config import Config

# "standard" retries throttling and transient errors with backoff; the legacy default gives up
# sooner, and a paginated price history of a busy instance type can be throttled.
_CONFIG = Config(retries={"mode": "standard", "max_attempts": 5})


def ec2_client(region: str) -> Any:
    return boto3.client("ec2", region_name=region, config=_CONFIG)


def s3_client(region: str) -> Any:
    return boto3.client("s3", region_name=region, config=_CONFIG)


def ssm_client(region: str) -> Any:
    return boto3.client("ssm", region_name=region, config=_CONFIG)


def service_quotas_client(region: str) -> Any:
    return boto3.client("service-quotas", region_name=region, config=_CONFIG)


def autoscaling_client(region: str) -> Any:
    return boto3.client("autoscaling", region_name=region, config=_CONFIG)
