"""How the worker and the launcher talk to AWS: the one place that creates boto3 clients, the
one reading of a ClientError's code and status, and the one retry of S3's 409
ConditionalRequestConflict.

Clients: endpoint from AWS_ENDPOINT_URL (boto3's own setting), region as given, else AWS_REGION
(which boto3 alone does not read for clients), else boto3's chain; retries in the standard mode.

Light on purpose (boto3 only): the launcher imports it on a laptop without torch."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any, TypeVar

import boto3
import botocore.loaders
import botocore.session
from botocore.config import Config
from botocore.exceptions import ClientError

T = TypeVar("T")

# "standard" retries throttling and transient errors with backoff (the legacy default gives up
# sooner; a paginated spot price history of a busy type can be throttled). Attempts default to
# 3 and follow AWS_MAX_ATTEMPTS like every other AWS tool.
RETRY_CONFIG = Config(retries={"mode": "standard"})
# Pauses between tries of a conditional write that met a 409; the last 409 is raised.
CONFLICT_RETRY_DELAYS_S = (0.2, 0.5, 1.0, 2.0, 4.0)


class _SearchPaths(list):
    """boto3 appends its own data folder to the loader's search paths on every session it makes."""

    def append(self, path: str) -> None:
        if path not in self:
            super().append(path)


def _shared_loader() -> botocore.loaders.Loader:
    # Botocore's parsed service models and endpoint tables, shared by every session: a fresh
    # session parses the JSON again (EC2's model is several MB: 0.1-0.2 s of CPU per client).
    # The loader only reads installed files and caches what it parsed, as one session's clients
    # already share it.
    paths = botocore.loaders.create_loader(os.environ.get("AWS_DATA_PATH")).search_paths
    return botocore.loaders.Loader(
        extra_search_paths=_SearchPaths(paths), include_default_search_paths=False
    )


_DATA_LOADER = _shared_loader()


def client(service: str, region: str | None = None) -> Any:
    # A session per client: boto3's shared default session is not safe across threads.
    region = region or os.environ.get("AWS_REGION") or None
    core = botocore.session.get_session()
    core.register_component("data_loader", _DATA_LOADER)
    session = boto3.session.Session(botocore_session=core, region_name=region)
    return session.client(service, config=RETRY_CONFIG)


def s3_client() -> Any:
    return client("s3")


def autoscaling_client() -> Any:
    return client("autoscaling")


def error_code(error: BaseException) -> str:
    """AWS's error code of a ClientError ("NoSuchKey", "404", "InvalidAMIID.NotFound"); "" for
    any other exception, or an answer without one (a HEAD's 404 has no body)."""
    if not isinstance(error, ClientError):
        return ""
    return str(error.response.get("Error", {}).get("Code", "") or "")


def error_status(error: BaseException) -> int:
    """The HTTP status of a ClientError's answer; 0 for any other exception."""
    if not isinstance(error, ClientError):
        return 0
    return int(error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)


def precondition_failed(error: ClientError) -> bool:
    """412: the condition was evaluated and failed (the key exists, or its ETag changed)."""
    return error_status(error) == 412 or error_code(error) == "PreconditionFailed"


def conflict(error: ClientError) -> bool:
    """409 ConditionalRequestConflict: another request on the key was in flight, so S3 decided
    nothing; AWS's answer to it is to retry, and it says nothing about who owns the key."""
    return error_status(error) == 409 or error_code(error) == "ConditionalRequestConflict"


def missing(error: ClientError) -> bool:
    return error_status(error) == 404 or error_code(error) in ("404", "NoSuchKey", "NoSuchBucket")


def retry_conflicts(call: Callable[[], T], sleep: Callable[[float], None] = time.sleep) -> T:
    """Run a conditional write, again after each 409 ConditionalRequestConflict. botocore's
    retry modes leave a 409 alone (it is no throttling or transient error to them), so this is
    the one loop for it; the last 409 is raised."""
    for delay in CONFLICT_RETRY_DELAYS_S:
        try:
            return call()
        except ClientError as error:
            if not conflict(error):
                raise
        sleep(delay)
    return call()
