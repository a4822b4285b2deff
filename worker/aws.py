"""The one place that creates boto3 clients: endpoint and region come from boto3's own settings
(AWS_ENDPOINT_URL, AWS_REGION), retries use the standard mode."""

from __future__ import annotations

import boto3
from botocore.config import Config

# Attempts default to 3 and follow AWS_MAX_ATTEMPTS like every other AWS tool.
RETRY_CONFIG = Config(retries={"mode": "standard"})


def s3_client():
    return boto3.session.Session().client("s3", config=RETRY_CONFIG)
