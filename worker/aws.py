"""The one place that creates boto3 clients, for the worker and the launcher alike: endpoint from
AWS_ENDPOINT_URL (boto3's own setting), region as given, else AWS_REGION (which boto3 alone does
not read for clients), else boto3's chain; retries in the standard mode.

Light on purpose (boto3 only): the launcher imports it on a laptop without torch."""

from __future__ import annotations

import os
from typing import Any

import boto3
from botocore.config import Config

# "standard" retries throttling and transient errors with backoff (the legacy default gives up
# sooner; a paginated spot price history of a busy type can be throttled). Attempts default to
# 3 and follow AWS_MAX_ATTEMPTS like every other AWS tool.
RETRY_CONFIG = Config(retries={"mode": "standard"})


def client(service: str, region: str | None = None) -> Any:
    # A session per client: boto3's shared default session is not safe across threads.
    region = region or os.environ.get("AWS_REGION") or None
    return boto3.session.Session(region_name=region).client(service, config=RETRY_CONFIG)


def s3_client() -> Any:
    return client("s3")


def autoscaling_client() -> Any:
    return client("autoscaling")
