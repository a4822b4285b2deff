"""The launcher's boto3 clients, one per service and region, from the contract's client factory:
one retry policy and one place that reads the endpoint and region for both."""

from __future__ import annotations

from functools import partial

from contract.aws import client

ec2_client = partial(client, "ec2")
s3_client = partial(client, "s3")
ssm_client = partial(client, "ssm")
service_quotas_client = partial(client, "service-quotas")
autoscaling_client = partial(client, "autoscaling")
kms_client = partial(client, "kms")
