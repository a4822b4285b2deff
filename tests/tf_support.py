"""Run the real terraform binary offline, against a local AWS endpoint (moto's server).

The AWS provider comes from a filesystem mirror, never from the registry:

- ``mirror_path()``: the mirror folder, from env ``TF_PLUGIN_MIRROR`` (default ``/opt/tf-plugins``).
- ``skip_reason()``: why terraform tests cannot run here (no binary, no mirror), else ``None``.
- ``terraform_env(tmp_path, endpoint)``: an environment for ``subprocess`` that uses a CLI config
  pointing at the mirror, keeps ``.terraform`` under ``tmp_path`` and sends every AWS call to
  ``endpoint`` with test credentials.
- ``copy_config(dest)``: a copy of ``terraform/`` to run in, so the repository stays clean.
- ``run_terraform(args, cwd, env)``: run one command, raising with its output when it fails.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
TERRAFORM_DIR = REPO_ROOT / "terraform"
DEFAULT_MIRROR = "/opt/tf-plugins"
PROVIDER_DIR = "registry.terraform.io/hashicorp/aws"


def mirror_path() -> Path:
    """The provider mirror folder (holds ``registry.terraform.io/hashicorp/aws/<version>/...``)."""
    return Path(os.environ.get("TF_PLUGIN_MIRROR") or DEFAULT_MIRROR)


def terraform_binary() -> str | None:
    """Path of ``terraform`` on PATH, or ``None``."""
    return shutil.which("terraform")


def skip_reason() -> str | None:
    """A loud reason to skip terraform tests, or ``None`` when terraform and the mirror exist."""
    if terraform_binary() is None:
        return "TERRAFORM TESTS NOT RUN: no `terraform` binary on PATH"
    provider = mirror_path() / PROVIDER_DIR
    if not provider.is_dir() or not any(provider.iterdir()):
        return (
            f"TERRAFORM TESTS NOT RUN: no hashicorp/aws provider in the mirror {provider} "
            "(set TF_PLUGIN_MIRROR to the folder holding registry.terraform.io/)"
        )
    return None


def write_cli_config(path: Path) -> Path:
    """Write a terraform CLI config that installs providers from the mirror only."""
    path.write_text(
        "provider_installation {\n"
        "  filesystem_mirror {\n"
        f'    path    = "{mirror_path()}"\n'
        '    include = ["registry.terraform.io/*/*"]\n'
        "  }\n"
        "  direct {\n"
        '    exclude = ["registry.terraform.io/*/*"]\n'
        "  }\n"
        "}\n"
    )
    return path


def terraform_env(tmp_path: Path, endpoint: str | None = None) -> dict[str, str]:
    """Environment for terraform: mirror-only CLI config and data dir under ``tmp_path``.

    With ``endpoint`` every AWS API call goes there (provider 5.x reads ``AWS_ENDPOINT_URL``) with
    fixed test credentials in us-east-1; without it only offline commands (fmt, init, validate)
    make sense.
    """
    tmp_path.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    env.update(
        TF_CLI_CONFIG_FILE=str(write_cli_config(tmp_path / "terraform.rc")),
        TF_DATA_DIR=str(tmp_path / ".terraform"),
        TF_IN_AUTOMATION="1",
        TF_INPUT="0",
        CHECKPOINT_DISABLE="1",
    )
    for name in ("TF_PLUGIN_CACHE_DIR", "TF_LOG", "AWS_PROFILE", "AWS_SESSION_TOKEN"):
        env.pop(name, None)
    if endpoint is not None:
        env.update(
            AWS_ENDPOINT_URL=endpoint,
            AWS_ACCESS_KEY_ID="testing",
            AWS_SECRET_ACCESS_KEY="testing",
            AWS_REGION="us-east-1",
            AWS_DEFAULT_REGION="us-east-1",
            AWS_EC2_METADATA_DISABLED="true",
        )
    return env


def copy_config(dest: Path) -> Path:
    """Copy ``terraform/`` (without state or ``.terraform``) to ``dest`` and return ``dest``."""
    shutil.copytree(
        TERRAFORM_DIR,
        dest,
        ignore=shutil.ignore_patterns(
            ".terraform", ".terraform.lock.hcl", "*.tfstate*", "*.tfvars", "*.tfvars.json"
        ),
    )
    return dest


def run_terraform(
    args: list[str], cwd: Path, env: dict[str, str], timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    """Run ``terraform <args>`` in ``cwd``; raise ``AssertionError`` with its output on failure."""
    binary = terraform_binary()
    if binary is None:
        raise RuntimeError(skip_reason())
    result = subprocess.run(
        [binary, *args],
        check=False,
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if result.returncode != 0:
        raise AssertionError(
            f"terraform {' '.join(args)} exited {result.returncode}\n"
            f"--- stdout ---\n{result.stdout}\n--- stderr ---\n{result.stderr}"
        )
    return result
