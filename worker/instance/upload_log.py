"""`python -m worker.instance.upload_log`: the boot script's two needs from AWS, with the worker's own
metadata and S3 code.

    python -m worker.instance.upload_log --instance-name      this instance's id, else the host name
    python -m worker.instance.upload_log FILE BUCKET KEY      upload a log file to s3://BUCKET/KEY

The instance id (IMDSv2, when MUSICGEN_IMDS_ENDPOINT is set) names the logs and the workers.
A failed upload is one line on stderr and exit 1; the boot script goes on without it.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
from collections.abc import Callable, Sequence

from boto3.exceptions import Boto3Error
from botocore.exceptions import BotoCoreError, ClientError

from contract import aws
from worker.instance.imds import Imds


def instance_name(endpoint: str | None, hostname: Callable[[], str] = socket.gethostname) -> str:
    """The instance id where the metadata service answers, else the host name."""
    if endpoint:
        try:
            found = Imds(endpoint).instance_id()
        except OSError:
            found = None
        if found:
            return found
    return hostname()


def main(argv: Sequence[str] | None = None, *, s3_client=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m worker.instance.upload_log", description=__doc__.split("\n\n")[0])
    parser.add_argument("--instance-name", action="store_true", help="print this instance's name and exit")
    parser.add_argument("file", nargs="?", help="the log file")
    parser.add_argument("bucket", nargs="?", help="the bucket")
    parser.add_argument("key", nargs="?", help="the object key")
    args = parser.parse_args(argv)
    if args.instance_name:
        print(instance_name(os.environ.get("MUSICGEN_IMDS_ENDPOINT", "").strip() or None))
        return 0
    if not (args.file and args.bucket and args.key):
        parser.print_usage(sys.stderr)
        print("error: give FILE BUCKET KEY, or --instance-name", file=sys.stderr)
        return 2
    try:
        (s3_client or aws.s3_client)().upload_file(args.file, args.bucket, args.key)
    except (Boto3Error, BotoCoreError, ClientError, OSError) as error:
        reason = " ".join(str(error).split())
        print(f"bootstrap: cannot upload {args.file} to s3://{args.bucket}/{args.key}: {reason}", file=sys.stderr)
        return 1
    print(f"bootstrap: log uploaded to s3://{args.bucket}/{args.key}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
