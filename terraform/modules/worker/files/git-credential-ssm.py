"""A git credential helper that answers with a read-only token kept in SSM Parameter Store.

    git -c credential.helper='!/opt/musicgen/venv/bin/python /path/to/git-credential-ssm.py' ...

git runs it with the operation as its argument and the request on stdin; for `get` it prints
`username=...` and `password=TOKEN` on stdout, a pipe to git. So the token is never in a URL, a
command line (the process list), the environment or a log, and never on disk. The parameter
name comes from MUSICGEN_GIT_TOKEN_PARAMETER, the region and credentials from boto3's usual
chain (the instance role on a worker, the user's own for the launcher's check).

The instance's UserData installs this file (it is needed for the very first clone, before any
checkout exists) and worker/instance/bootstrap.sh uses it on every boot; the launcher runs the same file
for its access check. It needs only the standard library, boto3 and aws_retry.py beside it: on a
new instance a refusal is tried again while IAM may still be settling (MUSICGEN_IAM_GRACE_S).
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

sys.path.insert(0, str(Path(__file__).resolve().parent))
import aws_retry  # the module beside this file, wherever it is installed

PARAMETER_ENV = "MUSICGEN_GIT_TOKEN_PARAMETER"
# GitHub, GitLab and Gitea accept any user name with a token as the password; GitHub's own docs
# use this one for tokens.
USERNAME = "x-access-token"


def read_token(ssm: Any, name: str) -> str:
    """The decrypted value of the SecureString parameter `name`."""
    return ssm.get_parameter(Name=name, WithDecryption=True)["Parameter"]["Value"].strip()


def credential_response(token: str) -> str:
    """git's credential protocol: key=value lines; a value cannot hold a newline."""
    if not token or "\n" in token or "\0" in token:
        raise ValueError("the token is empty or spans several lines")
    return f"username={USERNAME}\npassword={token}\n"


def main(
    argv: list[str],
    stdin: TextIO,
    stdout: TextIO,
    ssm: Any | None = None,
    uptime: Callable[[], float] = aws_retry.uptime_s,
    sleep: Callable[[float], None] = time.sleep,
) -> int:
    # git also calls `store` and `erase`; this helper keeps nothing, so those are no-ops.
    if argv[1:2] != ["get"]:
        return 0
    stdin.read()
    name = os.environ.get(PARAMETER_ENV)
    if not name:
        print(f"git-credential-ssm: {PARAMETER_ENV} is not set", file=sys.stderr)
        return 1
    if ssm is None:
        import boto3

        ssm = boto3.client("ssm")

    def say(line: str) -> None:
        print(f"git-credential-ssm: {name}: {line}", file=sys.stderr)

    try:
        token = aws_retry.retry(
            lambda: read_token(ssm, name),
            aws_retry.refused_while_iam_settles(os.environ, uptime),
            aws_retry.iam_grace_left_s(os.environ, uptime),
            say=say,
            sleep=sleep,
        )
        stdout.write(credential_response(token))
    except Exception as exc:  # noqa: BLE001 - git shows this line; the value never appears in it
        print(
            f"git-credential-ssm: cannot read SSM parameter {name}: "
            f"{aws_retry.error_code(exc) or type(exc).__name__}",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv, sys.stdin, sys.stdout))
