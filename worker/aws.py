"""The one place that creates boto3 clients: endpoint and region come from boto3's own settings
(AWS_ENDPOINT_URL, AWS_REGION), retries use the standard mode."""

from __future__ import annotations

import boto3
from botocore.config import Config

RETRY_CONFIG = Config(retries={"mode": "standard", "max_attempts": 5})


def s3_client():
    return boto3.session.Session().client("s3", config=RETRY_CONFIG)
