"""The one place that creates boto3 clients: endpoint from AWS_ENDPOINT_URL (boto3's own
setting), region from AWS_REGION (which boto3 alone does not read for clients) or boto3's chain,
retries in the standard mode."""

from __future__ import annotations

import os

import boto3
from botocore.config import Config

# Attempts default to 3 and follow AWS_MAX_ATTEMPTS like every other AWS tool.
RETRY_CONFIG = Config(retries={"mode": "standard"})


def client(service: str):
    region = os.environ.get("AWS_REGION") or None
    return boto3.session.Session(region_name=region).client(service, config=RETRY_CONFIG)


def s3_client():
    return client("s3")


def autoscaling_client():
    return client("autoscaling")
