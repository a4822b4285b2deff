"""One client factory for the launcher and the worker: one retry policy, one place that reads
the region."""

from __future__ import annotations

import pytest

from contract import aws as worker_aws
from launcher import aws as launcher_aws


@pytest.mark.parametrize(
    "make",
    [
        lambda: launcher_aws.ec2_client("eu-west-3"),
        lambda: launcher_aws.s3_client("eu-west-3"),
        lambda: launcher_aws.ssm_client("eu-west-3"),
        lambda: launcher_aws.service_quotas_client("eu-west-3"),
        lambda: launcher_aws.autoscaling_client("eu-west-3"),
        lambda: worker_aws.s3_client(),
        lambda: worker_aws.autoscaling_client(),
    ],
)
def test_every_client_retries_in_the_standard_mode(make, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_REGION", "eu-west-3")
    client = make()
    assert client.meta.config.retries == {"mode": "standard"}
    assert client.meta.region_name == "eu-west-3"


def test_the_launchers_region_wins_over_aws_region(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_REGION", "eu-west-3")
    assert launcher_aws.ec2_client("ap-south-1").meta.region_name == "ap-south-1"
    assert worker_aws.client("ec2").meta.region_name == "eu-west-3"


def test_without_aws_region_boto3s_chain_decides(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_REGION", raising=False)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "ca-central-1")
    assert worker_aws.client("s3").meta.region_name == "ca-central-1"


def test_clients_share_the_parsed_service_model_and_keep_one_search_path_each(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Each client has a session of its own, but botocore parses EC2's model once per process;
    boto3 adding its data folder per session must not grow the loader's search paths."""
    monkeypatch.setenv("AWS_REGION", "eu-west-3")
    first, second = launcher_aws.ec2_client("eu-west-3"), launcher_aws.ec2_client("us-east-1")
    assert first.meta.service_model is not second.meta.service_model
    parsed = first.meta.service_model._service_description
    assert parsed is second.meta.service_model._service_description
    worker_aws.s3_client()
    paths = worker_aws._DATA_LOADER.search_paths
    assert len(paths) == len(set(paths))
