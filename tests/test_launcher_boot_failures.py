"""Failed boots in `launcher status` and before a raise: the records an instance's end program
writes to `.boot-failures/<instance-id>.json` (CONTRACT "Failed boots": once, with
If-None-Match: *), put in moto's S3 exactly so, read back by the launcher; and the command the
user is told to run next, as the user started the launcher."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from launcher import aws
from launcher.boot_failures import BootFailure, parse_record
from launcher.invocation import command
from tests.imds_stub import ImdsStub
from tests.support.autoscaling import GROUP, group, make_group, run_scale_in
from tests.support.fake_terraform import FakeTerraform
from tests.support.launcher import Launcher, Result

REPO_ROOT = Path(__file__).resolve().parent.parent
BUCKET = "musicgen-batch-abc123"
CHECKOUT_FAILED = "checkout: fatal: unable to access 'https://github.com/example/songs.git/': Could not resolve host"


def record(instance_id: str, minute: int, reason: str, **fields: object) -> dict:
    return {
        "instance_id": instance_id,
        "time": f"2026-12-04T16:{minute:02}:00Z",
        "reason": reason,
        "nothing_ran": True,
        "failed_boots": 1,
        "group_set_to_zero": False,
        **fields,
    }


def put_records(*records: dict, bucket: str = BUCKET) -> None:
    """As the end program writes them: one object per instance, never overwritten."""
    s3 = aws.s3_client("us-east-1")
    for item in records:
        s3.put_object(
            Bucket=bucket,
            Key=f".boot-failures/{item['instance_id']}.json",
            Body=json.dumps(item).encode(),
            IfNoneMatch="*",
            ContentType="application/json",
        )


@pytest.fixture
def deployed(launcher: Launcher, terraform: FakeTerraform, workdir: Path) -> None:
    """The group terraform made, set to 0 by the third failed boot, and its bucket."""
    make_group(desired=0)
    (workdir / "terraform" / ".terraform").mkdir()
    terraform.set_outputs(bucket_name=BUCKET, autoscaling_group_name=GROUP, region="us-east-1")
    aws.s3_client("us-east-1").create_bucket(Bucket=BUCKET)
    put_records(
        record("i-0000000000000001", 1, CHECKOUT_FAILED),
        record("i-0000000000000002", 5, CHECKOUT_FAILED, failed_boots=2),
        record(
            "i-0000000000000003", 9, CHECKOUT_FAILED, failed_boots=3, group_set_to_zero=True
        ),
    )


def test_status_lists_the_failed_boots_newest_first_and_why_the_group_is_at_0(
    launcher: Launcher, deployed: None
) -> None:
    result = launcher("status")

    assert result.code == 0, result.err
    block = result.out[result.out.index("Failed boots") : result.out.index("Songs in")]
    assert block == (
        f"Failed boots recorded in s3://{BUCKET}/.boot-failures/ (UTC, newest first): 3\n"
        f"  2026-12-04 16:09  i-0000000000000003  nothing ran: {CHECKOUT_FAILED}\n"
        f"  2026-12-04 16:05  i-0000000000000002  nothing ran: {CHECKOUT_FAILED}\n"
        f"  2026-12-04 16:01  i-0000000000000001  nothing ran: {CHECKOUT_FAILED}\n"
        "  The group was set to 0 by i-0000000000000003 at 2026-12-04 16:09 after 3 failed "
        "boots in which nothing ran, so no replacement would boot the same way.\n"
        "  What to do: fix the cause above (push the fix to the git remote, or build and name "
        "another AMI), then run `.venv/bin/python launcher`: it offers to raise the group back "
        "to its worker count.\n"
    )
    assert result.out.startswith(f"Group {GROUP} in us-east-1: desired 0, in service 0")


def test_a_screenful_of_failed_boots_at_most(launcher: Launcher, deployed: None) -> None:
    put_records(
        *(
            record(f"i-1{n:015}", 10 + n, f"GPU {n % 4} unusable: CUDA error", nothing_ran=False)
            for n in range(12)
        ),
        {"instance_id": 7},  # not a record the end program writes
    )

    lines = launcher("status").out.splitlines()

    start = lines.index(
        f"Failed boots recorded in s3://{BUCKET}/.boot-failures/ (UTC, newest first): 15"
    )
    assert lines[start + 1] == "  2026-12-04 16:21  i-1000000000000011  GPU 3 unusable: CUDA error"
    assert lines[start + 10] == "  … and 6 older"
    assert lines[start + 11] == "  1 other object(s) there are not boot failure records"
    assert lines[start + 12].startswith("  The group was set to 0 by i-0000000000000003")


def test_a_raise_after_failed_boots_warns_with_the_cause(
    launcher: Launcher, deployed: None
) -> None:
    result = launcher("--dry-run")

    assert result == Result(
        0,
        f"Group {GROUP} in us-east-1: desired 0, in service 0 (min 0, max 2)\n"
        f"Songs in s3://{BUCKET}/: 0 written, 2 missing, 0 failed for good (of 2 in prompts.txt)\n"
        "Dry run: stopping before the question. Nothing changed.\n",
        "warning: the group was set to 0 after failed boots (i-0000000000000003: "
        f"{CHECKOUT_FAILED}); raise it once the cause is fixed (`.venv/bin/python launcher "
        "status` lists them)\n",
    )


def test_a_raised_group_says_so_and_a_bucket_without_records_says_nothing(
    launcher: Launcher, terraform: FakeTerraform, workdir: Path
) -> None:
    make_group(desired=1)
    (workdir / "terraform" / ".terraform").mkdir()
    terraform.set_outputs(bucket_name=BUCKET, autoscaling_group_name=GROUP)
    aws.s3_client("us-east-1").create_bucket(Bucket=BUCKET)
    assert "Failed boots" not in launcher("status").out

    put_records(record("i-0000000000000003", 9, CHECKOUT_FAILED, group_set_to_zero=True))
    out = launcher("status").out
    assert "so no replacement would boot the same way; it has been raised since (desired 1).\n" in out


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            json.dumps(record("i-1", 0, "x\n  y", failed_boots=2)).encode(),
            BootFailure(
                "i-1", datetime(2026, 12, 4, 16, 0, tzinfo=UTC), "x y", True, 2, False
            ),
        ),
        (b'{"instance_id": "i-2", "time": "soon", "failed_boots": true}', BootFailure(
            "i-2", None, "no reason recorded", False, None, False
        )),
        (b"not json", None),
        (b"[1, 2]", None),
        (b'{"reason": "no instance"}', None),
    ],
)
def test_parse_record(body: bytes, expected: BootFailure | None) -> None:
    assert parse_record(body) == expected


@pytest.mark.parametrize(
    ("argv0", "orig", "on_path", "expected"),
    [
        ("launcher", ["py", "launcher"], None, ".venv/bin/python launcher"),
        ("/w/launcher/__main__.py", ["py", "-m", "launcher"], None, ".venv/bin/python -m launcher"),
        ("/w/.venv/bin/musicgen-launcher", ["py", "x"], None, ".venv/bin/musicgen-launcher"),
        ("/elsewhere/launcher", ["py", "/elsewhere/launcher"], None, ".venv/bin/python /elsewhere/launcher"),
    ],
)
def test_the_command_as_the_user_typed_it(
    argv0: str, orig: list[str], on_path: str | None, expected: str
) -> None:
    assert command(argv0, "/w/.venv/bin/python", orig, Path("/w"), which=lambda name: on_path) == expected


@pytest.mark.parametrize(
    ("argv", "path_has_venv", "expected"),
    [
        ([".venv/bin/python", "launcher"], False, ".venv/bin/python launcher"),
        ([".venv/bin/python", "-m", "launcher"], False, ".venv/bin/python -m launcher"),
        ([".venv/bin/musicgen-launcher"], False, ".venv/bin/musicgen-launcher"),
        # An activated venv: PATH finds the very script, so its bare name works.
        (["musicgen-launcher"], True, "musicgen-launcher"),
    ],
)
def test_status_tells_the_next_command_as_it_was_started(
    aws_env: str,
    tmp_path: Path,
    project_on_pythonpath: None,
    argv: list[str],
    path_has_venv: bool,
    expected: str,
) -> None:
    """A real process, started each way the README shows, prints its own way in the advice."""
    aws.s3_client("us-east-1").create_bucket(Bucket=BUCKET)
    put_records(record("i-0000000000000009", 30, CHECKOUT_FAILED))
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("calm piano ; 60 ; calm\n")
    venv_bin = str(Path(sys.executable).parent)
    system_path = os.pathsep.join(
        p for p in os.environ["PATH"].split(os.pathsep) if p and Path(p) != Path(venv_bin)
    )
    env = {
        **os.environ,
        "PATH": f"{venv_bin}{os.pathsep}{system_path}" if path_has_venv else system_path,
        "MUSICGEN_TERRAFORM_DIR": str(tmp_path / "no-terraform-state"),
    }

    result = subprocess.run(
        [*argv, "status", "--bucket", BUCKET, "--prompts", str(prompts)],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120, check=False,
    )

    assert result.returncode == 0, result.stderr
    assert f"then run `{expected}`: it offers to raise the group" in result.stdout


class DeniesTheReport:
    """The real client, except that S3 refuses the cost report's GET as it answers a read the
    policy does not allow: 403 AccessDenied."""

    def __init__(self, client: object) -> None:
        self.client = client

    def __getattr__(self, name: str) -> object:
        return getattr(self.client, name)

    def get_object(self, **kwargs: object) -> dict:
        if kwargs["Key"] == "cost_report.csv":
            raise ClientError(
                {"Error": {"Code": "AccessDenied", "Message": "Access Denied"}}, "GetObject"
            )
        return self.client.get_object(**kwargs)  # type: ignore[attr-defined]


def test_a_refused_read_names_the_bucket_and_the_key(launcher: Launcher, deployed: None) -> None:
    launcher.s3_client = lambda region: DeniesTheReport(aws.s3_client(region))

    result = launcher("status")

    assert result.code == 2
    assert result.err == (
        f"error: S3 refused to let this AWS identity read s3://{BUCKET}/cost_report.csv "
        "(AccessDenied); it needs s3:ListBucket on the bucket and s3:GetObject on its objects\n"
    )


def test_a_group_whose_bucket_is_gone_is_still_offered_a_raise(
    launcher: Launcher, terraform: FakeTerraform, workdir: Path
) -> None:
    """No bucket, so no failed boots to read: the raise is offered as before, without an error."""
    make_group(desired=0)
    (workdir / "terraform" / ".terraform").mkdir()
    terraform.set_outputs(bucket_name=BUCKET, autoscaling_group_name=GROUP)

    result = launcher("--dry-run")

    assert result == Result(
        0,
        f"Group {GROUP} in us-east-1: desired 0, in service 0 (min 0, max 2)\n"
        f"Songs in s3://{BUCKET}/: 0 written, 2 missing, 0 failed for good (of 2 in prompts.txt)\n"
        "Dry run: stopping before the question. Nothing changed.\n",
        "",
    )


def test_a_raise_clears_the_records_so_the_next_failed_boot_counts_afresh(
    launcher: Launcher, deployed: None, tmp_path: Path
) -> None:
    """Once the cause is fixed, the raise clears the three records that set the group to 0; the
    next failed boot (the real end program, as the scale-in unit runs it) then counts 1 of 3 and
    leaves the group up instead of setting it to 0 again at once."""
    result = launcher("--yes")

    assert result.code == 0, result.err
    assert (
        f"Cleared 3 failed-boot records from s3://{BUCKET}/.boot-failures/: the count toward "
        "max_failed_boots starts again (each boot's log stays in logs/).\n"
    ) in result.out
    s3 = aws.s3_client("us-east-1")
    assert not s3.list_objects_v2(Bucket=BUCKET, Prefix=".boot-failures/").get("Contents")
    raised = group()
    assert raised["DesiredCapacity"] == 2
    instance = raised["Instances"][0]["InstanceId"]
    failure = tmp_path / "failure"
    failure.write_text(f"nothing_ran=1\nreason={CHECKOUT_FAILED}\n")
    with ImdsStub(instance_id=instance) as imds:
        ended = run_scale_in(
            imds.url, MUSICGEN_BUCKET=BUCKET, MUSICGEN_MAX_FAILED_BOOTS="3",
            MUSICGEN_BOOT_FAILURE_FILE=str(failure), MUSICGEN_RUN_DIR=str(tmp_path / "run"),
        )
    assert ended.returncode == 0, ended.stdout + ended.stderr
    written = json.loads(
        s3.get_object(Bucket=BUCKET, Key=f".boot-failures/{instance}.json")["Body"].read()
    )
    assert (written["failed_boots"], written["group_set_to_zero"]) == (1, False)
    assert group()["DesiredCapacity"] == 1
