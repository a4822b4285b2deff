"""The static checks `make lint` runs beside ruff: `terraform fmt`, `packer fmt` and checkov over
terraform/. They read only the files, so `make test` leaves them to `make lint` (.ci/run runs
both); a finding fails `make lint`."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests import tf_support
from tests.tf_support import REPO_ROOT

PACKER_DIR = REPO_ROOT / "packer"


def test_terraform_fmt_is_clean(tmp_path: Path) -> None:
    tf_support.run_terraform(
        ["fmt", "-check", "-recursive", "-diff", str(tf_support.TERRAFORM_DIR)],
        tmp_path,
        tf_support.terraform_env(tmp_path),
    )


def test_template_is_packer_formatted() -> None:
    if shutil.which("packer") is None:
        pytest.skip("PACKER FMT NOT RUN: no `packer` on PATH (apt-get install packer)")
    result = subprocess.run(
        ["packer", "fmt", "-check", "-diff", str(PACKER_DIR)],
        check=False,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def checkov_binary() -> str | None:
    return os.environ.get("CHECKOV") or shutil.which("checkov")


@pytest.mark.skipif(
    checkov_binary() is None, reason="CHECKOV NOT RUN: set CHECKOV or put checkov on PATH"
)
def test_checkov_passes_with_only_the_listed_skips() -> None:
    result = subprocess.run(
        [
            str(checkov_binary()),
            "--skip-download",
            "--framework",
            "terraform",
            "--config-file",
            ".checkov.yaml",
            "-d",
            "terraform",
            "-o",
            "json",
        ],
        cwd=REPO_ROOT,
        check=False,
        capture_output=True,
        text=True,
        env={**os.environ, "BC_SKIP_MAPPING": "TRUE", "CKV_NO_GUIDE": "1"},
        timeout=300,
    )
    report = json.loads(result.stdout)
    summary = report["summary"]
    failed = [(c["check_id"], c["resource"]) for c in report["results"]["failed_checks"]]
    assert failed == [] and summary["failed"] == 0
    assert summary["parsing_errors"] == 0
    assert summary["passed"] > 0
    assert result.returncode == 0, result.stderr
    passed = {c["check_id"] for c in report["results"]["passed_checks"]}
    # The checks this product must pass, never skip: IMDSv2 and a hop limit of 1 on the launch
    # template, no secret in its user data, a group that launches from it with tags, the bucket's
    # public access block and lifecycle rule. (CKV_AWS_8, EBS encryption, covers instances and
    # launch configurations, not launch templates: the structural test in
    # tests/test_terraform_structure.py checks it.)
    assert {
        "CKV_AWS_79",
        "CKV_AWS_341",
        "CKV_AWS_46",
        "CKV_AWS_315",
        "CKV_AWS_153",
        "CKV2_AWS_6",
        "CKV_AWS_300",
    } <= passed
