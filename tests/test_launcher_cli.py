"""`python launcher` and `.venv/bin/python launcher status` against the local moto server.

EC2 and S3 are real HTTP calls to moto; spot price histories come from the tests' own tables
(moto's are placeholders); terraform is the recorded stand-in of tests/support/fake_terraform.py. The worker's
repository (https://github.com/example/...) is a bare repository served by `git daemon` on
127.0.0.1, reached through a url rewrite in git's command-line config (GIT_CONFIG_COUNT).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from datetime import UTC, timedelta
from pathlib import Path

import boto3
import pytest

from contract.bucket import failure_key
from contract.prompts import prompt_hash
from contract.records import Failure
from launcher import aws
from launcher.prices import PricePoint
from tests.service_quotas import FakeServiceQuotas
from tests.support.autoscaling import GROUP, MOTO_AMI, make_group
from tests.support.fake_terraform import FakeTerraform
from tests.support.launcher import (
    GIT,
    NOW,
    PACKER_AMI_NAME,
    REPORT,
    Launcher,
    Result,
    WorkerSource,
    history,
    worker_code,
)

pytestmark = pytest.mark.filterwarnings("ignore:The 'warn' method is deprecated")

REPO_ROOT = Path(__file__).resolve().parent.parent
MOTO_AMI_NAME = "Windows_Server-2008-R2_SP1-English-64Bit-Base-2017.10.13"
PRICE_LINES = """\
Spot prices for g4dn.xlarge (Linux) in us-east-1, last 24 h, USD/h:
  zone         current       min    median       max  <= max $0.40
  us-east-1a    0.2201    0.2104    0.2201    0.2250  yes
  us-east-1b    0.4300    0.4100    0.4200    0.4300  no
  us-east-1c    0.1990    0.1990    0.1990    0.1990  yes
  us-east-1d         -         -         -         -  no price recorded
  us-east-1e         -         -         -         -  no price recorded
  us-east-1f         -         -         -         -  no price recorded
On-demand price for comparison: $0.526/h (AWS public price list, 2024; see launcher/prices.py)
Zones: us-east-1a, us-east-1c (a default subnet and a current price within the max $0.40/h; \
the group spreads the workers over them)

"""
BATCH_LINES = """\
Batch: 2 songs in prompts.txt, 7.0 min of audio requested
  1 invalid line is skipped, as the worker would skip it:
    line 4: duration 'abc' is not a number of seconds
"""
ESTIMATE_LINES = """\
Estimate (upper bound, at the max price): $0.16
  7.0 min of audio at 0.5 audio-s per second = 0.23 h of generation
  1 × NVIDIA T4 (16 GiB) per instance: 1 worker, up to 35 songs at once (its default batch)
  + 1 × 10 min boot and model load = 0.40 instance-h × $0.40/h
  about 0.4 h until the last song is in the bucket
"""
QUESTION = "Launch 1 × g4dn.xlarge spot in us-east-1 at max $0.40/h? [y/N] "


def start_instance(zone: str = "us-east-1b", tags: dict[str, str] | None = None) -> dict:
    ec2 = aws.ec2_client("us-east-1")
    tags = {"Role": "musicgen-batch-worker"} if tags is None else tags
    reservation = ec2.run_instances(
        ImageId=MOTO_AMI,
        InstanceType="g4dn.xlarge",
        MinCount=1,
        MaxCount=1,
        Placement={"AvailabilityZone": zone},
        TagSpecifications=[
            {"ResourceType": "instance", "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}
        ]
        if tags
        else [],
    )
    return reservation["Instances"][0]


def worker_lines(instance: dict, uptime: str, accrued: str) -> str:
    launched = instance["LaunchTime"].astimezone(UTC).strftime("%Y-%m-%d %H:%M")
    iid, zone = instance["InstanceId"], instance["Placement"]["AvailabilityZone"]
    return (
        f"  {'id':<{len(iid)}}  type         state    zone        launched (UTC)    uptime"
        "  accrued\n"
        f"  {iid}  g4dn.xlarge  running  {zone}  {launched}  {uptime}   {accrued}\n"
    )


def test_running_worker_is_listed_and_nothing_is_launched(
    launcher: Launcher, terraform: FakeTerraform
) -> None:
    worker = start_instance()
    start_instance(tags={"Role": "something-else"})
    start_instance(tags={})
    stopped = start_instance()
    aws.ec2_client("us-east-1").stop_instances(InstanceIds=[stopped["InstanceId"]])
    launcher.now = worker["LaunchTime"] + timedelta(hours=2, minutes=30, seconds=20)

    result = launcher()

    assert result == Result(
        0,
        "A worker is already running in us-east-1; not launching another:\n"
        + worker_lines(worker, "2h30m", "$1.00 at $0.40/h")
        + "  accrued so far (upper bound, at the max price): $1.00\n"
        # terraform/ holds no state: the worker belongs to another one, not to this folder.
        "Follow it with `.venv/bin/python launcher status`; it was not launched from terraform/ "
        "(no terraform state there): stop it with `terraform destroy` in the terraform folder "
        "that launched it, or terminate it in the EC2 console.\n",
        "",
    )
    assert terraform.argvs() == []
    assert launcher.price_requests == []


def test_a_running_worker_of_this_state_points_to_its_destroy(
    launcher: Launcher, terraform: FakeTerraform, workdir: Path
) -> None:
    worker = start_instance()
    launcher.now = worker["LaunchTime"] + timedelta(hours=1)
    (workdir / "terraform" / ".terraform").mkdir()
    terraform.set_outputs(bucket_name="songs", worker_tag={"Role": "musicgen-batch-worker"})

    result = launcher("--terraform-dir", "terraform")

    assert result.code == 0
    assert result.out.endswith(
        "Follow it with `.venv/bin/python launcher status`; stop it with "
        "`terraform -chdir=terraform destroy`.\n"
    )


@pytest.mark.parametrize("folder", ["missing", "prompts.txt"])
def test_a_terraform_folder_that_is_not_a_folder_is_refused_before_anything_runs(
    launcher: Launcher, terraform: FakeTerraform, workdir: Path, folder: str
) -> None:
    before = (workdir / "prompts.txt").read_bytes()

    result = launcher(*GIT, "--terraform-dir", folder, "--yes")

    assert result == Result(2, "", f"error: --terraform-dir {folder}: no such folder\n")
    assert terraform.argvs() == []
    assert launcher.price_requests == []
    assert not (workdir / folder).is_dir()
    assert (workdir / "prompts.txt").read_bytes() == before


def test_answer_no_prints_everything_and_changes_nothing(
    launcher: Launcher, terraform: FakeTerraform, workdir: Path, source: WorkerSource
) -> None:
    result = launcher(*GIT, stdin="n\n")

    assert result == Result(
        0,
        PRICE_LINES
        + source.check_lines()
        + BATCH_LINES
        + "Bucket: none yet (terraform creates one); every song will be generated\n"
        + ESTIMATE_LINES
        + source.code_line()
        + QUESTION
        + "Nothing launched.\n",
        "",
    )
    assert launcher.price_requests == [("g4dn.xlarge", NOW - timedelta(hours=24), NOW)]
    assert terraform.argvs() == []
    assert not (workdir / "terraform" / "launcher.auto.tfvars.json").exists()
    assert aws.ec2_client("us-east-1").describe_instances()["Reservations"] == []


@pytest.mark.parametrize("answer", ["", "\n", "N\n", "no\n", "yes please\n", "launch\n"])
def test_anything_but_yes_launches_nothing(
    launcher: Launcher, terraform: FakeTerraform, answer: str
) -> None:
    result = launcher(*GIT, stdin=answer)

    assert result.code == 0
    assert result.out.endswith(QUESTION + "Nothing launched.\n")
    assert terraform.argvs() == []


def test_dry_run_stops_before_the_question_without_a_terminal(
    launcher: Launcher, terraform: FakeTerraform, source: WorkerSource
) -> None:
    result = launcher(*GIT, "--dry-run", tty=False)

    assert result.code == 0
    assert result.out.endswith(
        ESTIMATE_LINES + source.code_line() + "Dry run: stopping before the question. Nothing launched.\n"
    )
    assert result.err == ""
    assert terraform.argvs() == []


def test_no_terminal_and_no_yes_is_refused(
    launcher: Launcher, terraform: FakeTerraform, source: WorkerSource
) -> None:
    result = launcher(*GIT, tty=False)

    assert result.code == 2
    assert result.out.endswith(ESTIMATE_LINES + source.code_line())
    assert result.err == "error: stdin is not a terminal, so the launcher cannot ask; pass --yes\n"
    assert terraform.argvs() == []


def test_yes_applies_with_the_variables_and_prints_next_steps(
    launcher: Launcher, terraform: FakeTerraform, workdir: Path, source: WorkerSource
) -> None:
    terraform.set_outputs(
        bucket_name="musicgen-batch-abc123",
        autoscaling_group_name="musicgen-batch-workers",
        region="us-east-1",
        worker_tag={"Role": "musicgen-batch-worker"},
    )

    result = launcher(
        *GIT,
        "--var",
        f"ami_id={MOTO_AMI}",
        "--var",
        "root_volume_size_gb=120",
        stdin="y\n",
        stdout_tty=True,
    )

    tfvars = workdir / "terraform" / "launcher.auto.tfvars.json"
    assert result == Result(
        0,
        PRICE_LINES
        + source.check_lines(f"{MOTO_AMI} {MOTO_AMI_NAME}, built 0 min ago (--var ami_id)")
        + BATCH_LINES
        + "Bucket: none yet (terraform creates one); every song will be generated\n"
        + ESTIMATE_LINES
        + source.code_line()
        + QUESTION
        + "Variables for terraform written to terraform/launcher.auto.tfvars.json\n"
        "\n"
        "Launched: Auto Scaling group musicgen-batch-workers, 1 × g4dn.xlarge spot; it starts "
        "the workers and replaces interrupted ones\n"
        "Bucket:   musicgen-batch-abc123\n"
        "Next steps:\n"
        "  follow progress:  .venv/bin/python launcher status\n"
        "  songs appear in:  s3://musicgen-batch-abc123/  (cost report: "
        "s3://musicgen-batch-abc123/cost_report.csv, run logs: s3://musicgen-batch-abc123/logs/)\n"
        "\033[1mEach instance costs money until its workers finish the batch (or after 12 h) and "
        "scale it in; the bucket and the group stay until you run: "
        "terraform -chdir=terraform destroy\033[0m\n",
        "",
    )
    # No .terraform yet, so init runs first; outputs are read back after the apply.
    assert terraform.argvs() == [
        ["init", "-no-color", "-input=false", "-reconfigure", "-backend=true"],
        ["apply", "-no-color", "-input=false", "-auto-approve=true"],
        ["output", "-json", "-no-color"],
    ]
    assert (
        terraform.calls()[1]["variables"]
        == json.loads(tfvars.read_text())
        == {
            "name": "musicgen-batch",
            "region": "us-east-1",
            "instance_types": ["g4dn.xlarge"],
            "max_price": 0.4,
            "worker_count": 1,
            "git_repo_url": "https://github.com/example/musicgen-batch.git",
            "git_ref": source.commit(),
            "availability_zones": ["us-east-1a", "us-east-1c"],
            "keep_alive": False,
            "max_hours": 12,
            "ami_id": MOTO_AMI,
            "root_volume_size_gb": "120",
        }
    )


def test_yes_force_with_every_zone_above_the_max_price_warns_and_goes_on(
    launcher: Launcher, terraform: FakeTerraform, workdir: Path, source: WorkerSource
) -> None:
    (workdir / "terraform" / ".terraform").mkdir()
    terraform.set_outputs(bucket_name="b", autoscaling_group_name="workers")
    launcher.prices = history(("us-east-1a", [0.52]), ("us-east-1b", [0.50, 0.51]))

    result = launcher(
        *GIT,
        "--yes",
        "--force",
        "--max-price",
        "0.35",
        "--worker-count",
        "2",
        "--instance-type",
        "g4dn.2xlarge",
        "--keep-alive",
        "--max-hours",
        "2.5",
        tty=False,
    )

    assert result.code == 0
    assert result.err == (
        "warning: the max price $0.35/h is under the current spot price in every zone; "
        "the spot request would wait unfulfilled until the price drops\n"
    )
    assert "Zones: every zone with a default subnet (no zone is within the max price)\n" in result.out
    assert "Launch 2 × g4dn.2xlarge spot in us-east-1 at max $0.35/h? [y/N] yes (--yes)\n" in (
        result.out
    )
    assert result.out.endswith(
        "Launched: Auto Scaling group workers, 2 × g4dn.2xlarge spot; it starts the workers and "
        "replaces interrupted ones\n"
        "Bucket:   b\n"
        "Next steps:\n"
        "  follow progress:  .venv/bin/python launcher status\n"
        "  songs appear in:  s3://b/  (cost report: s3://b/cost_report.csv, run logs: s3://b/logs/)\n"
        "The instances keep costing money after the batch (--keep-alive) until you run: "
        "terraform -chdir=terraform destroy\n"
    )
    # Already initialised: no init. No zone fits, so terraform's default (every zone with a
    # default subnet) stays.
    assert [argv[0] for argv in terraform.argvs()] == ["output", "apply", "output"]
    assert terraform.calls()[1]["variables"] == {
        "name": "musicgen-batch",
        "region": "us-east-1",
        "instance_types": ["g4dn.2xlarge"],
        "max_price": 0.35,
        "worker_count": 2,
        "git_repo_url": "https://github.com/example/musicgen-batch.git",
        "git_ref": source.commit(),
        "keep_alive": True,
        "max_hours": 2.5,
        "ami_id": source.ami_id,
    }


def test_apply_failure_exits_1_with_terraforms_error_streamed(
    launcher: Launcher, terraform: FakeTerraform, capfd: pytest.CaptureFixture[str]
) -> None:
    terraform.fail("apply", 1)

    result = launcher(*GIT, "--yes")

    assert result.code == 1
    assert result.err == (
        "error: terraform apply failed (exit 1); see terraform's error above. Anything it "
        "created is in its state: fix and rerun, or `terraform -chdir=terraform destroy`\n"
    )
    assert capfd.readouterr().err == "Error: apply failed in the stand-in\n"
    assert [argv[0] for argv in terraform.argvs()] == ["init", "apply"]


def test_init_failure_exits_1_before_apply(launcher: Launcher, terraform: FakeTerraform) -> None:
    terraform.fail("init", 1)

    result = launcher(*GIT, "--yes")

    assert (result.code, result.err) == (1, "error: terraform init failed (exit 1); see above\n")
    assert [argv[0] for argv in terraform.argvs()] == ["init"]


def test_songs_already_in_the_bucket_are_left_out_of_the_estimate(
    launcher: Launcher, terraform: FakeTerraform
) -> None:
    s3 = aws.s3_client("us-east-1")
    s3.create_bucket(Bucket="my-songs")
    s3.put_object(Bucket="my-songs", Key="synthwave.wav", Body=b"RIFF")

    result = launcher(*GIT, "--bucket", "my-songs", "--dry-run")

    assert result.code == 0
    assert (
        "Bucket my-songs: 1 song already there (skipped), 1 song to generate (4.0 min of audio)\n"
        "Estimate (upper bound, at the max price): $0.12\n"
        "  4.0 min of audio at 0.5 audio-s per second = 0.13 h of generation\n"
    ) in result.out


def test_bucket_from_terraform_outputs_and_nothing_left_to_do(
    launcher: Launcher, terraform: FakeTerraform, workdir: Path
) -> None:
    (workdir / "terraform" / ".terraform").mkdir()
    terraform.set_outputs(bucket_name="from-state")
    s3 = aws.s3_client("us-east-1")
    s3.create_bucket(Bucket="from-state")
    for key in ("synthwave.wav", "lofi_rain.wav"):
        s3.put_object(Bucket="from-state", Key=key, Body=b"RIFF")

    result = launcher(*GIT)

    assert result.code == 0
    assert result.out.endswith(
        "Bucket from-state: 2 songs already there (skipped), 0 songs to generate "
        "(0.0 min of audio)\n"
        "Nothing to generate: every song in prompts.txt is already in the bucket.\n"
        "Nothing launched.\n"
    )
    assert terraform.argvs() == [["output", "-json", "-no-color"]]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--max-price", "0"], "--max-price must be more than 0 and at most 1000 USD/h (got 0)"),
        (["--max-price", "-0.2"], "--max-price must be more than 0 and at most 1000 USD/h (got -0.2)"),
        (["--worker-count", "0"], "--worker-count must be at least 1 and at most 1000 (got 0)"),
        (
            ["--instance-type", "g4dn xlarge"],
            "--instance-type must be an EC2 instance type such as g4dn.xlarge (got 'g4dn xlarge')",
        ),
        (
            ["--instance-type", "\x1f"],
            "--instance-type must be an EC2 instance type such as g4dn.xlarge (got '\\x1f')",
        ),
        (["--realtime-factor", "0"], "--realtime-factor must be at least 0.01 and at most 100 audio-s per second (got 0)"),
        (["--prompts", "missing.txt"], "prompts file not found: missing.txt"),
        (["--var", "max_price=1"], "use --max-price instead of --var max_price=..."),
        (["--var", "git_repo_url=x"], "use --git-url instead of --var git_repo_url=..."),
        (["--var", "ami_id"], "--var expects KEY=VALUE (got 'ami_id')"),
        (
            ["--git-url", "git@github.com:me/musicgen-batch.git"],
            (
                "the workers clone over HTTPS only; --git-url must be https:// "
                "(got git@github.com:me/musicgen-batch.git)"
            ),
        ),
    ],
)
def test_one_line_errors(
    launcher: Launcher, terraform: FakeTerraform, args: list[str], message: str
) -> None:
    result = launcher(*GIT, *args)

    assert result == Result(2, "", f"error: {message}\n")
    assert terraform.argvs() == []


def test_prompts_without_a_valid_song(launcher: Launcher, workdir: Path) -> None:
    (workdir / "prompts.txt").write_text("# nothing yet\nhalf a line ; 30\n")

    result = launcher(*GIT)

    assert result == Result(
        2,
        "",
        "error: prompts.txt has no valid songs; "
        "line 2: expected 'PROMPT ; DURATION_S ; FILE_NAME'\n",
    )


def test_terraform_not_installed(
    launcher: Launcher, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))

    result = launcher(*GIT)

    assert result == Result(
        2,
        "",
        "error: terraform is not installed or not on PATH "
        "(https://developer.hashicorp.com/terraform/install)\n",
    )


def test_no_aws_credentials(
    launcher: Launcher, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    # boto3's default session keeps the credentials it found in earlier tests.
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)

    result = launcher(*GIT)

    assert result == Result(
        2,
        "",
        "error: no AWS credentials found; configure them with `aws configure`, "
        "AWS_PROFILE or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY\n",
    )


def test_status_lists_workers_and_progress(
    launcher: Launcher, terraform: FakeTerraform, workdir: Path
) -> None:
    worker = start_instance()
    launcher.now = worker["LaunchTime"] + timedelta(hours=26, minutes=10)
    (workdir / "terraform" / ".terraform").mkdir()
    terraform.set_outputs(bucket_name="musicgen-batch-abc123")
    s3 = aws.s3_client("us-east-1")
    s3.create_bucket(Bucket="musicgen-batch-abc123")
    s3.put_object(Bucket="musicgen-batch-abc123", Key="synthwave.wav", Body=b"RIFF")
    s3.put_object(Bucket="musicgen-batch-abc123", Key="cost_report.csv", Body=REPORT.encode())

    result = launcher("status", "--max-price", "0.3")

    assert (
        result
        == Result(
            0,
            "Workers in us-east-1:\n"
            # CALM_MARKET's last us-east-1b price, 0.43, held for the whole 26 h 10 min; this worker
            # is no spot instance, so --max-price is no bound on it.
            + status_worker_lines(worker, "1d02h", "$7.85 at $0.30/h", "$11.25")
            + "  accrued so far (upper bound, at the max price): $7.85\n"
            "  accrued so far at the actual spot price: $11.25\n"
            "  (compute only: EBS volumes and data transfer are billed on top, in neither figure)\n"
            "Songs in s3://musicgen-batch-abc123/: 1 of 2 done, 1 missing\n"
            "  done:\n"
            "    synthwave.wav\n"
            "  missing:\n"
            "    lofi_rain.wav  (line 3, 240 s)\n"
            # The report's 0.0335 as the listening page writes it, not rounded to $0.03.
            "cost_report.csv: 1 song, total estimated cost $0.0335\n",
            "",
        )
    )
    assert terraform.argvs() == [["output", "-json", "-no-color"]]


def test_status_before_any_launch(launcher: Launcher, terraform: FakeTerraform) -> None:
    result = launcher("status")

    assert result == Result(
        0,
        "Workers in us-east-1: none pending or running\n"
        "Bucket: unknown (no terraform outputs in terraform/; pass --bucket to name one)\n",
        "",
    )
    assert launcher("status", "--bucket", "gone") == Result(
        0, "Workers in us-east-1: none pending or running\nBucket gone: does not exist\n", ""
    )
    assert terraform.argvs() == []


def run_entry_point(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args],
        check=False,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_entry_points_from_the_repo_root(
    aws_env: str, workdir: Path, terraform: FakeTerraform, source: WorkerSource,
    project_on_pythonpath: None,
) -> None:
    prompts = str(workdir / "prompts.txt")

    as_script = run_entry_point("launcher", *GIT, "--prompts", prompts, cwd=REPO_ROOT)
    as_module = run_entry_point("-m", "launcher", "status", "--prompts", prompts, cwd=REPO_ROOT)

    # Without a terminal the question is refused; moto's placeholder prices are fine here.
    assert as_script.returncode == 2, as_script.stderr
    assert "Spot prices for g4dn.xlarge (Linux) in us-east-1, last 24 h, USD/h:" in as_script.stdout
    # moto answers GetServiceQuota for EC2 with NoSuchResourceException and does not implement
    # GetAWSDefaultServiceQuota (HTTP 500): the quota is a warning, not a failure.
    # Nor GetEbsDefaultKmsKeyId: the EBS key is a warning too.
    assert as_script.stderr == (
        "warning: EBS key: not checked: EC2 did not answer (Unable to parse response (syntax "
        "error: line 1, column 0), invalid XML received. Further retries may succeed:); a "
        "customer managed default key makes every launch of the group fail unless its policy "
        "lets AWSServiceRoleForAutoScaling use it\n"
        "warning: spot vCPU quota: All G and VT Spot Instance Requests (L-3819A6DF) not checked: "
        f"Service Quotas failed with HTTP 500; 1 × g4dn.xlarge needs 4 vCPUs, {R1}\n"
        "error: stdin is not a terminal, so the launcher cannot ask; pass --yes\n"
    )
    assert (as_module.returncode, as_module.stderr) == (0, "")
    assert as_module.stdout.startswith("Workers in us-east-1: none pending or running\n")
    assert terraform.argvs() == []


def test_git_defaults_missing(
    launcher: Launcher, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    not_a_checkout = tmp_path / "not-a-checkout"
    not_a_checkout.mkdir()
    monkeypatch.setattr("launcher.launch.REPO_ROOT", not_a_checkout)

    assert launcher() == Result(
        2, "", "error: no --git-url given and this checkout has no 'origin' remote\n"
    )
    assert launcher("--git-url", "https://github.com/me/m.git") == Result(
        2, "", "error: no --git-ref given and this checkout has no current branch or commit\n"
    )


def test_status_prices_a_spot_worker_at_its_own_max_price(launcher: Launcher) -> None:
    ec2 = aws.ec2_client("us-east-1")
    [request] = ec2.request_spot_instances(
        SpotPrice="0.55",
        LaunchSpecification={
            "ImageId": MOTO_AMI,
            "InstanceType": "g4dn.xlarge",
        },
    )["SpotInstanceRequests"]
    instance_id = ec2.describe_spot_instance_requests(
        SpotInstanceRequestIds=[request["SpotInstanceRequestId"]]
    )["SpotInstanceRequests"][0]["InstanceId"]
    ec2.create_tags(
        Resources=[instance_id], Tags=[{"Key": "Role", "Value": "musicgen-batch-worker"}]
    )
    [instance] = ec2.describe_instances(InstanceIds=[instance_id])["Reservations"][0]["Instances"]
    launcher.now = instance["LaunchTime"] + timedelta(hours=2, seconds=10)

    result = launcher("status", "--bucket", "none-yet")

    # The request's own max price, not --max-price (0.40 by default): launches may differ.
    # At the spot price: CALM_MARKET's last price in us-east-1a, 0.2201, for 2 h.
    assert result.out == (
        "Workers in us-east-1:\n"
        + status_worker_lines(instance, "2h00m", "$1.10 at $0.55/h", "$0.4408")
        + "  accrued so far (upper bound, at the max price): $1.10\n"
        "  accrued so far at the actual spot price: $0.4408\n"
        "  (compute only: EBS volumes and data transfer are billed on top, in neither figure)\n"
        "Bucket none-yet: does not exist\n"
    )


def test_a_four_gpu_type_runs_four_songs_at_a_time(launcher: Launcher, terraform: FakeTerraform) -> None:
    launcher.quotas = FakeServiceQuotas(applied={"L-3819A6DF": 96})
    result = launcher(*GIT, "--instance-type", "g4dn.12xlarge", "--max-price", "4", "--dry-run")

    assert result.code == 0, result.err
    assert (
        "Estimate (upper bound, at the max price): $1.13\n"
        "  7.0 min of audio at 0.5 audio-s per second per GPU = 0.23 GPU-h of generation,"
        " 0.12 h on 2 GPUs at once\n"
        "  4 × NVIDIA T4 (16 GiB) per instance: 4 workers, one per GPU, each up to 35 songs at once"
        " (its default batch)\n"
        "  + 1 × 10 min boot and model load = 0.28 instance-h × $4.00/h\n"
        "  about 0.3 h until the last song is in the bucket\n"
    ) in result.out


def test_an_instance_type_without_a_gpu_is_refused(launcher: Launcher, terraform: FakeTerraform) -> None:
    result = launcher(*GIT, "--instance-type", "m5.large", "--dry-run")

    assert (result.code, result.err) == (2, "error: --instance-type: instance type m5.large has no GPU\n")
    assert terraform.argvs() == []


def test_status_of_a_flac_batch_looks_for_flac_keys(launcher: Launcher, workdir: Path) -> None:
    (workdir / "prompts.txt").write_text("calm piano ; 10 ; one\nloud drums ; 20 ; two\n")
    s3 = aws.s3_client("us-east-1")
    s3.create_bucket(Bucket="songs")
    s3.put_object(Bucket="songs", Key="one.flac", Body=b"fLaC")
    s3.put_object(Bucket="songs", Key="two.wav", Body=b"RIFF")  # not what a flac batch makes

    result = launcher("status", "--bucket", "songs", "--var", "audio_format=flac")

    assert result == Result(
        0,
        "Workers in us-east-1: none pending or running\n"
        "Songs in s3://songs/: 1 of 2 done, 1 missing\n"
        "  done:\n"
        "    one.flac\n"
        "  missing:\n"
        "    two.flac  (line 2, 20 s)\n"
        "cost_report.csv: not written yet\n",
        "",
    )
    assert launcher("status", "--bucket", "songs", "--var", "audio_format=mp3") == Result(
        2, "", "error: --var audio_format='mp3': must be one of wav, flac\n"
    )


ABOVE_MAX_REFUSAL = (
    "error: prices: the current spot price is above the max price $0.35/h in every zone "
    "(cheapest: us-east-1b at $0.51/h), so the workers would wait unlaunched; raise "
    "--max-price, or pass --force to launch anyway\n"
    "error: 1 check failed; nothing launched\n"
)


@pytest.mark.parametrize("answer_flags", [["--yes"], []])
def test_every_zone_above_the_max_price_is_refused_before_anything_is_created(
    launcher: Launcher, terraform: FakeTerraform, source: WorkerSource, answer_flags: list[str]
) -> None:
    launcher.prices = history(("us-east-1a", [0.52]), ("us-east-1b", [0.50, 0.51]))

    result = launcher(*GIT, *answer_flags, "--max-price", "0.35", stdin="y\n")

    assert result.code == 2
    assert result.err == ABOVE_MAX_REFUSAL
    assert result.out == (
        "Spot prices for g4dn.xlarge (Linux) in us-east-1, last 24 h, USD/h:\n"
        "  zone         current       min    median       max  <= max $0.35\n"
        "  us-east-1a    0.5200    0.5200    0.5200    0.5200  no\n"
        "  us-east-1b    0.5100    0.5000    0.5050    0.5100  no\n"
        "  us-east-1c         -         -         -         -  no price recorded\n"
        "  us-east-1d         -         -         -         -  no price recorded\n"
        "  us-east-1e         -         -         -         -  no price recorded\n"
        "  us-east-1f         -         -         -         -  no price recorded\n"
        "On-demand price for comparison: $0.526/h (AWS public price list, 2024; see "
        "launcher/prices.py)\n"
        "Zones: every zone with a default subnet (no zone is within the max price)\n"
        "\n"
        "Checks before launch:\n"
        "  ok  region: us-east-1 (from AWS_DEFAULT_REGION)\n"
        f"  ok  AMI: {source.ami_id} {PACKER_AMI_NAME}, built 0 min ago (newest packer/ build)\n"
        f"  ok  network: default VPC {source.vpc_id}, default subnet in us-east-1a, "
        "us-east-1b\n"
        "  ok  EBS key: the root volumes are encrypted with the AWS managed key aws/ebs "
        "(encryption by default off), which Auto Scaling may use\n"
        "  FAILED  prices (the error is below)\n"
        "  ok  spot vCPU quota: All G and VT Spot Instance Requests is 64 vCPUs in "
        f"us-east-1; 1 × g4dn.xlarge needs 4 vCPUs, {R1}\n"
        "  ok  git: https://github.com/example/musicgen-batch.git can be read anonymously, "
        "as the worker reads it\n"
        f"  ok  prompts: prompts.txt is prompts.txt at main ({source.commit()[:12]}) on the "
        "remote\n"
        f"  ok  worker code: worker/ and contract/ at main ({source.commit()[:12]}) on the remote is this "
        f"checkout's ({len(worker_code())} files)\n"
        "\n"
        # The estimate still shows: what the batch would cost once the price allows.
        + BATCH_LINES
        + "Bucket: none yet (terraform creates one); every song will be generated\n"
        + ESTIMATE_LINES.replace("$0.40/h", "$0.35/h").replace("$0.16", "$0.14")
        + source.code_line()
    )
    assert terraform.argvs() == []


def test_force_still_asks_without_yes(launcher: Launcher, terraform: FakeTerraform) -> None:
    launcher.prices = history(("us-east-1a", [0.52]), ("us-east-1b", [0.50, 0.51]))

    result = launcher(*GIT, "--force", "--max-price", "0.35", stdin="n\n")

    assert result.code == 0
    assert result.err == (
        "warning: the max price $0.35/h is under the current spot price in every zone; "
        "the spot request would wait unfulfilled until the price drops\n"
    )
    assert result.out.endswith(
        "Launch 1 × g4dn.xlarge spot in us-east-1 at max $0.35/h? [y/N] Nothing launched.\n"
    )
    assert terraform.argvs() == []


def test_a_zone_without_a_default_subnet_is_left_out_of_the_table(
    launcher: Launcher, terraform: FakeTerraform, source: WorkerSource
) -> None:
    ec2 = aws.ec2_client("us-east-1")
    for zone in ("us-east-1c", "us-east-1e"):
        [subnet] = ec2.describe_subnets(
            Filters=[
                {"Name": "availability-zone", "Values": [zone]},
                {"Name": "default-for-az", "Values": ["true"]},
            ]
        )["Subnets"]
        ec2.delete_subnet(SubnetId=subnet["SubnetId"])

    result = launcher(*GIT, "--dry-run")

    # us-east-1c is the cheapest, but no worker could launch there.
    assert (result.code, result.err) == (0, "")
    assert result.out.startswith(
        "Spot prices for g4dn.xlarge (Linux) in us-east-1, last 24 h, USD/h:\n"
        "  zone         current       min    median       max  <= max $0.40\n"
        "  us-east-1a    0.2201    0.2104    0.2201    0.2250  yes\n"
        "  us-east-1b    0.4300    0.4100    0.4200    0.4300  no\n"
        "  us-east-1d         -         -         -         -  no price recorded\n"
        "  us-east-1f         -         -         -         -  no price recorded\n"
        f"  left out: us-east-1c (no default subnet in the default VPC {source.vpc_id}; the "
        "workers launch only into default subnets)\n"
        "On-demand price for comparison: $0.526/h (AWS public price list, 2024; see "
        "launcher/prices.py)\n"
        "Zones: us-east-1a (a default subnet and a current price within the max $0.40/h; the "
        "group spreads the workers over them)\n"
        "\n"
        "Checks before launch:\n"
        "  ok  region: us-east-1 (from AWS_DEFAULT_REGION)\n"
        f"  ok  AMI: {source.ami_id} {PACKER_AMI_NAME}, built 0 min ago (newest packer/ build)\n"
        f"  ok  network: default VPC {source.vpc_id}, default subnet in us-east-1a\n"
    )
    assert terraform.argvs() == []


QUOTA_URL = "https://us-east-1.console.aws.amazon.com/servicequotas/home/services/ec2/quotas/"
R1 = "4 more while capacity rebalancing replaces an instance: 8 in all"


@pytest.mark.parametrize(
    ("quotas", "argv", "code", "err", "ok_line"),
    [
        (
            FakeServiceQuotas(applied={"L-3819A6DF": 0}),
            [],
            2,
            (
                'error: spot vCPU quota: "All G and VT Spot Instance Requests" is 0 vCPUs in '
                "us-east-1, and 1 × g4dn.xlarge needs 4 vCPUs, 4 more while capacity rebalancing "
                f"replaces an instance: 8 in all; request an increase to at least 8 at "
                f"{QUOTA_URL}L-3819A6DF\n"
                "error: 1 check failed; nothing launched\n"
            ),
            None,
        ),
        (
            FakeServiceQuotas(applied={"L-3819A6DF": 64}),
            ["--worker-count", "17"],
            2,
            (
                'error: spot vCPU quota: "All G and VT Spot Instance Requests" is 64 vCPUs in '
                "us-east-1, and 17 × g4dn.xlarge needs 68 vCPUs, 8 more while capacity "
                "rebalancing replaces 2 instances: 76 in all; request an increase to at least 76 "
                f"at {QUOTA_URL}L-3819A6DF\n"
                "error: 1 check failed; nothing launched\n"
            ),
            None,
        ),
        (
            FakeServiceQuotas(applied={"L-3819A6DF": 64}),
            # Exactly enough: 14 workers and the 2 instances rebalancing may add for them.
            ["--worker-count", "14"],
            0,
            "",
            (
                "  ok  spot vCPU quota: All G and VT Spot Instance Requests is 64 vCPUs in "
                "us-east-1; 14 × g4dn.xlarge needs 56 vCPUs, 8 more while capacity rebalancing "
                "replaces 2 instances: 64 in all\n"
            ),
        ),
        (
            # No applied value: AWS's default is the account's quota.
            FakeServiceQuotas(defaults={"L-3819A6DF": 16}),
            ["--instance-type", "g4dn.2xlarge"],
            0,
            "",
            (
                "  ok  spot vCPU quota: All G and VT Spot Instance Requests is 16 vCPUs in "
                "us-east-1; 1 × g4dn.2xlarge needs 8 vCPUs, 8 more while capacity rebalancing "
                "replaces an instance: 16 in all\n"
            ),
        ),
        (
            FakeServiceQuotas(applied={"L-7212CCBC": 192}),
            ["--instance-type", "p4d.24xlarge"],
            0,
            "",
            (
                "  ok  spot vCPU quota: All P Spot Instance Requests is 192 vCPUs in "
                "us-east-1; 1 × p4d.24xlarge needs 96 vCPUs, 96 more while capacity rebalancing "
                "replaces an instance: 192 in all\n"
            ),
        ),
        (
            FakeServiceQuotas(applied={"L-7212CCBC": 96}),
            ["--instance-type", "p5.4xlarge"],
            0,
            (
                "warning: spot vCPU quota: not checked: the launcher knows the quotas of G, VT and "
                "P2 to P4 instances only (1 × p5.4xlarge needs 16 vCPUs, 16 more while capacity "
                "rebalancing replaces an instance: 32 in all)\n"
            ),
            None,
        ),
        (
            FakeServiceQuotas(fail_with="AccessDeniedException"),
            [],
            0,
            (
                "warning: spot vCPU quota: All G and VT Spot Instance Requests (L-3819A6DF) not "
                "checked: no permission to read it (servicequotas:GetServiceQuota and "
                "servicequotas:GetAWSDefaultServiceQuota); 1 × g4dn.xlarge needs 4 vCPUs, "
                f"{R1}\n"
            ),
            None,
        ),
        (
            FakeServiceQuotas(fail_with="ServiceException"),
            [],
            0,
            (
                "warning: spot vCPU quota: All G and VT Spot Instance Requests (L-3819A6DF) not "
                "checked: Service Quotas answered ServiceException; 1 × g4dn.xlarge needs 4 "
                f"vCPUs, {R1}\n"
            ),
            None,
        ),
        (
            FakeServiceQuotas(),
            ["--instance-type", "m5.xlarge"],
            2,
            # A type without a GPU is refused before any quota is looked up.
            "error: --instance-type: instance type m5.xlarge has no GPU\n",
            None,
        ),
        (
            FakeServiceQuotas(),
            ["--instance-type", "g4dn.huge"],
            2,
            # An unknown type is refused before any quota is looked up.
            "error: --instance-type: g4dn.huge is not an EC2 instance type offered in us-east-1\n",
            None,
        ),
    ],
)
def test_spot_vcpu_quota(
    launcher: Launcher,
    terraform: FakeTerraform,
    quotas: FakeServiceQuotas,
    argv: list[str],
    code: int,
    err: str,
    ok_line: str | None,
) -> None:
    launcher.quotas = quotas

    result = launcher(*GIT, "--dry-run", *argv, "--max-price", "5")

    assert (result.code, result.err) == (code, err)
    assert ("  ok  spot vCPU quota" in result.out) == (ok_line is not None)
    if ok_line is not None:
        assert ok_line in result.out
    if code == 0:
        assert result.out.endswith("Dry run: stopping before the question. Nothing launched.\n")
    assert terraform.argvs() == []
    assert all(service == "ec2" for _, service, _ in quotas.calls)


def status_worker_lines(instance: dict, uptime: str, accrued: str, spot: str) -> str:
    launched = instance["LaunchTime"].astimezone(UTC).strftime("%Y-%m-%d %H:%M")
    iid, zone = instance["InstanceId"], instance["Placement"]["AvailabilityZone"]
    accrued_width = max(len("accrued"), len(accrued))
    return (
        f"  {'id':<{len(iid)}}  type         state    zone        launched (UTC)    uptime"
        f"  {'accrued':<{accrued_width}}  at spot price\n"
        f"  {iid}  g4dn.xlarge  running  {zone}  {launched}  {uptime}   "
        f"{accrued:<{accrued_width}}  {spot}\n"
    )


def test_status_shows_the_cost_at_the_actual_spot_price(launcher: Launcher) -> None:
    worker = start_instance("us-east-1b")
    launched = worker["LaunchTime"]
    launcher.now = launched + timedelta(hours=2, minutes=30)
    launcher.prices = [
        # In effect at launch (AWS returns it with its older timestamp), then two changes.
        PricePoint("us-east-1b", 0.20, launched - timedelta(hours=5)),
        PricePoint("us-east-1b", 0.30, launched + timedelta(hours=1)),
        PricePoint("us-east-1b", 0.10, launched + timedelta(hours=2)),
        # Another zone's prices are not this worker's.
        PricePoint("us-east-1a", 9.00, launched),
    ]

    result = launcher("status", "--bucket", "none-yet")

    # 1 h × 0.20 + 1 h × 0.30 + 0.5 h × 0.10 = 0.55
    assert result == Result(
        0,
        "Workers in us-east-1:\n"
        + status_worker_lines(worker, "2h30m", "$1.00 at $0.40/h", "$0.55")
        + "  accrued so far (upper bound, at the max price): $1.00\n"
        "  accrued so far at the actual spot price: $0.55\n"
        "  (compute only: EBS volumes and data transfer are billed on top, in neither figure)\n"
        "Bucket none-yet: does not exist\n",
        "",
    )
    assert launcher.price_requests == [("g4dn.xlarge", launched, launcher.now)]


def test_status_spot_cost_without_a_record_before_launch_or_at_all(launcher: Launcher) -> None:
    first = start_instance("us-east-1b")
    second = start_instance("us-east-1d")
    launcher.now = first["LaunchTime"] + timedelta(hours=2)
    # The history starts an hour after the launch: that hour is charged at the first price.
    launcher.prices = [PricePoint("us-east-1b", 0.25, first["LaunchTime"] + timedelta(hours=1))]

    result = launcher("status", "--bucket", "none-yet")

    assert result.code == 0
    lines = result.out.splitlines()
    by_id = {line.split()[0]: line for line in lines[2:4]}
    assert by_id[first["InstanceId"]].endswith("  $0.50*")
    assert by_id[second["InstanceId"]].endswith("  no price recorded")
    assert lines[4:] == [
        (
            f"  accrued so far (upper bound, at the max price): "
            f"${0.4 * (4 - (second['LaunchTime'] - first['LaunchTime']).total_seconds() / 3600):.2f}"
        ),
        (
            "  accrued so far at the actual spot price: $0.50 (workers without a recorded price "
            "left out)"
        ),
        "  (compute only: EBS volumes and data transfer are billed on top, in neither figure)",
        "  * launched before the first recorded price; that first price is charged",
        "Bucket none-yet: does not exist",
    ]


# The group terraform creates: `python launcher` offers to raise it rather than apply again.
BUCKET = "musicgen-batch-abc123"
GROUP_OUTPUTS = {"bucket_name": BUCKET, "autoscaling_group_name": GROUP, "region": "us-east-1"}


def applied(workdir: Path, terraform: FakeTerraform) -> None:
    """terraform state as after the launcher's apply: initialised, with the group's outputs."""
    (workdir / "terraform" / ".terraform").mkdir(exist_ok=True)
    terraform.set_outputs(**GROUP_OUTPUTS)


def batch_bucket(*songs: str, failures: dict[str, int] | None = None) -> None:
    """The batch's bucket with `songs` written and failure counts (file name: attempts)."""
    s3 = aws.s3_client("us-east-1")
    s3.create_bucket(Bucket=BUCKET)
    for song in songs:
        s3.put_object(Bucket=BUCKET, Key=song, Body=b"RIFF")
    prompts = {"lofi_rain.wav": "calm lo-fi piano, rain in the background"}
    for name, attempts in (failures or {}).items():
        failure = Failure(
            file_name=name,
            prompt_hash=prompt_hash(prompts[name]),
            attempts=attempts,
            error="CUDA error: an illegal memory access was encountered",
            worker="ip-10-0-1-5-gpu0",
            failed_at="2026-11-29T04:10:00+00:00",
        )
        s3.put_object(Bucket=BUCKET, Key=failure_key(name), Body=failure.to_json())


def desired_capacity() -> int:
    autoscaling = aws.autoscaling_client("us-east-1")
    [found] = autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=[GROUP])[
        "AutoScalingGroups"
    ]
    return found["DesiredCapacity"]


RAISE_PROGRESS = (
    f"Group {GROUP} in us-east-1: desired 0, in service 0 (min 0, max 2)\n"
    f"Songs in s3://{BUCKET}/: 1 written, 1 missing, 0 failed for good (of 2 in prompts.txt)\n"
)


def test_a_group_with_songs_missing_is_raised_back_to_the_worker_count(
    launcher: Launcher, terraform: FakeTerraform, workdir: Path
) -> None:
    make_group(desired=0)
    applied(workdir, terraform)
    batch_bucket("synthwave.wav")

    result = launcher("--worker-count", "2", stdin="y\n")

    assert result == Result(
        0,
        RAISE_PROGRESS + "Raise the group from 0 to 2 workers? [y/N] "
        f"Desired capacity of {GROUP} set to 2: Auto Scaling launches the workers, which resume "
        "the missing songs. Follow them with `.venv/bin/python launcher status`.\n",
        "",
    )
    assert desired_capacity() == 2
    # No second apply: the outputs are read once.
    assert terraform.argvs() == [["output", "-json", "-no-color"]]
    assert launcher.price_requests == []


@pytest.mark.parametrize("answer", ["", "n\n", "yes please\n"])
def test_a_group_is_not_raised_without_a_yes(
    launcher: Launcher, terraform: FakeTerraform, workdir: Path, answer: str
) -> None:
    make_group(desired=0)
    applied(workdir, terraform)
    batch_bucket("synthwave.wav")

    result = launcher(stdin=answer)

    # Without --worker-count: back to the count the group was launched with, its maximum.
    assert result == Result(
        0, RAISE_PROGRESS + "Raise the group from 0 to 2 workers? [y/N] Nothing changed.\n", ""
    )
    assert desired_capacity() == 0


def test_yes_raises_a_group_without_a_terminal_and_dry_run_does_not(
    launcher: Launcher, terraform: FakeTerraform, workdir: Path
) -> None:
    make_group(desired=0)
    applied(workdir, terraform)
    batch_bucket("synthwave.wav")

    dry = launcher("--dry-run", tty=False)
    refused = launcher(tty=False)
    assert desired_capacity() == 0
    result = launcher("--yes", "--worker-count", "1", tty=False)

    assert dry == Result(
        0, RAISE_PROGRESS + "Dry run: stopping before the question. Nothing changed.\n", ""
    )
    assert refused == Result(
        2,
        RAISE_PROGRESS,
        "error: stdin is not a terminal, so the launcher cannot ask; pass --yes\n",
    )
    assert result.code == 0
    assert result.out.startswith(
        RAISE_PROGRESS + "Raise the group from 0 to 1 worker? [y/N] yes (--yes)\n"
    )
    assert desired_capacity() == 1
    assert [argv[0] for argv in terraform.argvs()] == ["output", "output", "output"]


def test_a_complete_batch_points_to_download_and_destroy(
    launcher: Launcher, terraform: FakeTerraform, workdir: Path
) -> None:
    make_group(desired=0)
    applied(workdir, terraform)
    batch_bucket("synthwave.wav", failures={"lofi_rain.wav": 2})

    result = launcher("--worker-count", "2", stdin="y\n")

    assert result == Result(
        0,
        f"Group {GROUP} in us-east-1: desired 0, in service 0 (min 0, max 2)\n"
        f"Songs in s3://{BUCKET}/: 1 written, 0 missing, 1 failed for good (of 2 in prompts.txt)\n"
        "  failed for good (the workers do not try them again):\n"
        "    lofi_rain.wav  (line 3, 2 attempts): CUDA error: an illegal memory access was "
        "encountered\n"
        "The batch is complete: every song is written or failed for good.\n"
        "  copy it:         .venv/bin/python launcher download\n"
        "  then stop all:   terraform -chdir=terraform destroy\n",
        "",
    )
    assert desired_capacity() == 0


def test_a_song_failed_once_is_still_missing(
    launcher: Launcher, terraform: FakeTerraform, workdir: Path
) -> None:
    make_group(desired=0)
    applied(workdir, terraform)
    batch_bucket("synthwave.wav", failures={"lofi_rain.wav": 1})

    result = launcher("--dry-run")

    assert result.out == RAISE_PROGRESS + "Dry run: stopping before the question. Nothing changed.\n"


def test_a_group_that_already_wants_its_workers_is_left_alone(
    launcher: Launcher, terraform: FakeTerraform, workdir: Path
) -> None:
    make_group(desired=2)
    applied(workdir, terraform)
    batch_bucket()

    result = launcher("--worker-count", "2")

    assert result == Result(
        0,
        f"Group {GROUP} in us-east-1: desired 2, in service 2 (min 0, max 2)\n"
        f"Songs in s3://{BUCKET}/: 0 written, 2 missing, 0 failed for good (of 2 in prompts.txt)\n"
        "The group already wants 2 workers and replaces interrupted ones by itself. Follow it "
        "with `.venv/bin/python launcher status`.\n",
        "",
    )


def test_more_workers_than_the_group_holds_is_refused(
    launcher: Launcher, terraform: FakeTerraform, workdir: Path
) -> None:
    make_group(desired=0)
    applied(workdir, terraform)
    batch_bucket("synthwave.wav")

    result = launcher("--worker-count", "3", "--yes")

    assert result == Result(
        2,
        RAISE_PROGRESS,
        "error: --worker-count 3 is above the group's maximum size 2; change it with "
        "`terraform -chdir=terraform apply -var worker_count=3`\n",
    )
    assert desired_capacity() == 0


def test_a_destroyed_group_launches_anew(
    launcher: Launcher, terraform: FakeTerraform, workdir: Path
) -> None:
    applied(workdir, terraform)  # outputs name a group that no longer exists

    result = launcher(*GIT, "--dry-run")

    assert result.code == 0
    assert result.out.startswith(PRICE_LINES)


def launched(instance: dict) -> list[str]:
    return instance["LaunchTime"].astimezone(UTC).strftime("%Y-%m-%d %H:%M").split()


def test_status_of_a_group(launcher: Launcher, terraform: FakeTerraform, workdir: Path) -> None:
    make_group(desired=2)
    applied(workdir, terraform)
    batch_bucket("synthwave.wav", failures={"lofi_rain.wav": 2})
    ec2 = aws.ec2_client("us-east-1")
    runs = sorted(
        (
            i
            for r in ec2.describe_instances(
                Filters=[{"Name": "tag:aws:autoscaling:groupName", "Values": [GROUP]}]
            )["Reservations"]
            for i in r["Instances"]
        ),
        key=lambda i: (i["LaunchTime"], i["InstanceId"]),
    )
    # EC2 reclaims the first one, as on a spot interruption. (moto's group does not notice, and
    # a scale-in there drops the group's tag from the instance, which EC2 keeps.)
    ec2.terminate_instances(InstanceIds=[runs[0]["InstanceId"]])
    launcher.now = runs[1]["LaunchTime"] + timedelta(hours=2)
    launcher.prices = [PricePoint(z, 0.25, NOW - timedelta(days=30)) for z in ("us-east-1a", "us-east-1b")]

    result = launcher("status", "--max-price", "0.3")

    assert result.code == 0, result.err
    lines = result.out.splitlines()
    assert lines[:3] == [
        # Real AWS would show 1 in service and a replacement pending; moto's group keeps both.
        f"Group {GROUP} in us-east-1: desired 2, in service 2 (min 0, max 2)",
        # moto records no scaling activities (real AWS does: see test_launcher_group).
        "  no scaling activities recorded",
        "  instances it ran:",
    ]
    # Both instances, the terminated one too, priced at the group's own max price ($0.40/h).
    # moto's group replaced the terminated instance when the launcher described it.
    [replacement] = [
        i
        for r in ec2.describe_instances(
            Filters=[{"Name": "tag:aws:autoscaling:groupName", "Values": [GROUP]}]
        )["Reservations"]
        for i in r["Instances"]
        if i["InstanceId"] not in {run["InstanceId"] for run in runs}
    ]
    rows = {line.split()[0]: line.split() for line in lines[4:7]}
    zone = runs[0]["Placement"]["AvailabilityZone"]
    # Both instances, the terminated one too, priced at the group's own max price ($0.40/h).
    # It ran for the second moto took to terminate it: a fraction of a cent at either price.
    terminated = rows[runs[0]["InstanceId"]][1:]
    assert terminated[:6] + terminated[7:9] == [
        "g4dn.xlarge", "terminated", zone, *launched(runs[0]), "0h00m", "at", "$0.40/h",
    ]
    assert all(re.fullmatch(r"\$0\.00\d*", amount) for amount in (terminated[6], terminated[9]))
    assert rows[runs[1]["InstanceId"]][1:] == [
        "g4dn.xlarge", "running", zone, *launched(runs[1]), "2h00m", "$0.80", "at", "$0.40/h",
        "$0.50",
    ]
    assert rows[replacement["InstanceId"]][1:3] == ["g4dn.xlarge", "running"]
    hours = (launcher.now - replacement["LaunchTime"]).total_seconds() / 3600
    assert lines[7:] == [
        f"    accrued so far (upper bound, at the max price): ${0.8 + 0.4 * hours:.2f}",
        f"    accrued so far at the actual spot price: ${0.5 + 0.25 * hours:.2f}",
        "    (compute only: EBS volumes and data transfer are billed on top, in neither figure)",
        f"Songs in s3://{BUCKET}/: 1 of 2 done, 0 missing, 1 failed for good",
        "  done:",
        "    synthwave.wav",
        "  failed for good (the workers do not try them again):",
        ("    lofi_rain.wav  (line 3, 2 attempts): CUDA error: an illegal memory access was "
        "encountered"),
        "cost_report.csv: not written yet",
    ]
    assert terraform.argvs() == [["output", "-json", "-no-color"]]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--max-hours", "0"], "--max-hours must be more than 0 and at most 720 (30 days) (got 0)"),
        (["--max-hours", "-1"], "--max-hours must be more than 0 and at most 720 (30 days) (got -1)"),
        (["--max-hours", "nan"], "--max-hours must be a finite number (got nan)"),
        (["--var", "max_hours=3"], "use --max-hours instead of --var max_hours=..."),
        (["--var", "keep_alive=true"], "use --keep-alive instead of --var keep_alive=..."),
        (["--var", "instance_types=x"], "use --instance-type instead of --var instance_types=..."),
        (
            ["--var", "shutdown_when_done=true"],
            ("--var shutdown_when_done: replaced by keep_alive; the workers scale in when the "
            "batch is done unless --keep-alive"),
        ),
        (
            ["--var", "instance_type=g5.xlarge"],
            "--var instance_type: replaced by instance_types; use --instance-type, repeatable",
        ),
        (
            ["--var", "availability_zone=us-east-1a"],
            ("--var availability_zone: replaced by availability_zones, which the launcher sets to "
            "the zones with a default subnet and a spot price within the max"),
        ),
        (
            ["--instance-type", "g4dn.xlarge", "--instance-type", "g5 xlarge"],
            "--instance-type must be an EC2 instance type such as g4dn.xlarge (got 'g5 xlarge')",
        ),
    ],
)
def test_fleet_option_errors(
    launcher: Launcher, terraform: FakeTerraform, args: list[str], message: str
) -> None:
    assert launcher(*GIT, *args) == Result(2, "", f"error: {message}\n")
    assert terraform.argvs() == []


def test_several_instance_types(launcher: Launcher, terraform: FakeTerraform, source: WorkerSource) -> None:
    launcher.quotas = FakeServiceQuotas(applied={"L-3819A6DF": 24})
    types = ["--instance-type", "g4dn.2xlarge", "--instance-type", "g4dn.xlarge"]

    result = launcher(*GIT, *types, "--instance-type", "g4dn.xlarge", "--worker-count", "2", "--yes")

    assert (result.code, result.err) == (0, "")
    table = PRICE_LINES.split("On-demand")[0]
    assert result.out.startswith(
        table.replace("g4dn.xlarge", "g4dn.2xlarge")
        + table
        + "On-demand price of g4dn.2xlarge for comparison: $0.752/h (AWS public price list, 2024; "
        "see launcher/prices.py)\n"
        "On-demand price of g4dn.xlarge for comparison: $0.526/h (AWS public price list, 2024; "
        "see launcher/prices.py)\n"
        "Zones: us-east-1a, us-east-1c (a default subnet and a current price within the max "
        "$0.40/h; the group spreads the workers over them)\n"
    )
    # The group may launch every worker as the larger type: its vCPUs count.
    assert (
        "  ok  spot vCPU quota: All G and VT Spot Instance Requests is 24 vCPUs in us-east-1; "
        "2 × g4dn.2xlarge needs 16 vCPUs, 8 more while capacity rebalancing replaces an "
        "instance: 24 in all\n"
    ) in result.out
    assert (
        "  1 × NVIDIA T4 (16 GiB) per instance: 1 worker, up to 35 songs at once (its default batch)\n"
        "  or 1 × NVIDIA T4 (16 GiB) per instance: 1 worker, up to 35 songs at once (its default batch)\n"
        "  (counted at g4dn.2xlarge, the fewest GPUs)\n"
    ) in result.out
    assert "Launch 2 × g4dn.2xlarge or g4dn.xlarge spot in us-east-1 at max $0.40/h? [y/N] yes (--yes)\n" in result.out
    assert launcher.price_requests == [
        ("g4dn.2xlarge", NOW - timedelta(hours=24), NOW),
        ("g4dn.xlarge", NOW - timedelta(hours=24), NOW),
    ]
    assert terraform.calls()[1]["variables"]["instance_types"] == ["g4dn.2xlarge", "g4dn.xlarge"]


def test_types_of_two_quota_families_are_checked_each(
    launcher: Launcher, terraform: FakeTerraform
) -> None:
    launcher.quotas = FakeServiceQuotas(applied={"L-3819A6DF": 96, "L-7212CCBC": 0})

    result = launcher(
        *GIT, "--instance-type", "g4dn.12xlarge", "--instance-type", "p4d.24xlarge", "--max-price", "40", "--dry-run"
    )

    assert result.code == 2
    assert (
        "  ok  spot vCPU quota: All G and VT Spot Instance Requests is 96 vCPUs in us-east-1; "
        "1 × g4dn.12xlarge needs 48 vCPUs, 48 more while capacity rebalancing replaces an "
        "instance: 96 in all\n"
        "  FAILED  spot vCPU quota (the error is below)\n"
    ) in result.out
    assert result.err == (
        'error: spot vCPU quota: "All P Spot Instance Requests" is 0 vCPUs in us-east-1, and '
        "1 × p4d.24xlarge needs 96 vCPUs, 96 more while capacity rebalancing replaces an "
        f"instance: 192 in all; request an increase to at least 192 at {QUOTA_URL}L-7212CCBC\n"
        "error: 1 check failed; nothing launched\n"
    )


def test_status_after_the_group_was_destroyed_lists_tagged_workers(
    launcher: Launcher, terraform: FakeTerraform, workdir: Path
) -> None:
    applied(workdir, terraform)  # the outputs still name the group; it is gone

    result = launcher("status")

    assert result == Result(
        0,
        "Workers in us-east-1: none pending or running\n"
        f"Bucket {BUCKET}: does not exist\n",
        "",
    )


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["status", "--yes"], "status does not take --yes"),
        (["status", "--dry-run", "--bucket", "songs"], "status does not take --dry-run"),
        (["status", "--worker-count=2"], "status does not take --worker-count"),
        (["download", "--prompts", "prompts.txt"], "download does not take --prompts"),
        (["--logs"], "launch does not take --logs"),
        (["status", "--bogus"], "unknown option --bogus (see musicgen-launcher status --help)"),
        (["--yes", "status"], "the command comes first: musicgen-launcher status [OPTIONS]"),
        (["status", "songs"], "unexpected argument 'songs' (only download takes a DIR)"),
    ],
)
def test_each_command_takes_only_its_own_options(
    launcher: Launcher, terraform: FakeTerraform, argv: list[str], message: str
) -> None:
    assert launcher(*argv) == Result(2, "", f"error: {message}\n")
    assert terraform.argvs() == []


def test_launch_is_the_command_when_none_is_named(launcher: Launcher) -> None:
    assert launcher("launch", *GIT, "--dry-run") == launcher(*GIT, "--dry-run")


def test_status_finds_the_workers_by_terraforms_worker_tag(
    launcher: Launcher, terraform: FakeTerraform, workdir: Path
) -> None:
    ours = start_instance(tags={"Role": "songs-worker"})
    start_instance(tags={"Role": "musicgen-batch-worker"})  # another deployment's
    launcher.now = ours["LaunchTime"] + timedelta(hours=1)
    (workdir / "terraform" / ".terraform").mkdir()
    terraform.set_outputs(worker_tag={"Role": "songs-worker"})

    result = launcher("status")

    assert result == Result(
        0,
        "Workers in us-east-1:\n"
        + status_worker_lines(ours, "1h00m", "$0.40 at $0.40/h", "$0.43")
        + "  accrued so far (upper bound, at the max price): $0.40\n"
        "  accrued so far at the actual spot price: $0.43\n"
        "  (compute only: EBS volumes and data transfer are billed on top, in neither figure)\n"
        "Bucket: unknown (no terraform outputs in terraform/; pass --bucket to name one)\n",
        "",
    )


def test_without_state_the_workers_tag_follows_the_name_variable(
    launcher: Launcher, terraform: FakeTerraform
) -> None:
    start_instance(tags={"Role": "musicgen-batch-worker"})  # another deployment's

    assert launcher("status", "--var", "name=songs").out == (
        "Workers in us-east-1: none pending or running\n"
        "Bucket: unknown (no terraform outputs in terraform/; pass --bucket to name one)\n"
    )
    result = launcher(*GIT, "--dry-run")
    assert result.out.startswith("A worker is already running in us-east-1; not launching")


def test_status_takes_the_audio_format_from_terraforms_outputs(
    launcher: Launcher, terraform: FakeTerraform, workdir: Path
) -> None:
    (workdir / "prompts.txt").write_text("calm piano ; 10 ; one\nloud drums ; 20 ; two\n")
    (workdir / "terraform" / ".terraform").mkdir()
    terraform.set_outputs(bucket_name="songs", audio_format="flac")
    s3 = aws.s3_client("us-east-1")
    s3.create_bucket(Bucket="songs")
    s3.put_object(Bucket="songs", Key="one.flac", Body=b"fLaC")
    s3.put_object(Bucket="songs", Key="two.wav", Body=b"RIFF")  # not what a flac batch makes

    result = launcher("status")

    assert result == Result(
        0,
        "Workers in us-east-1: none pending or running\n"
        "Songs in s3://songs/: 1 of 2 done, 1 missing\n"
        "  done:\n"
        "    one.flac\n"
        "  missing:\n"
        "    two.flac  (line 2, 20 s)\n"
        "cost_report.csv: not written yet\n",
        "",
    )


@pytest.mark.parametrize("command", ["status", "download", "launch"])
@pytest.mark.parametrize(
    ("bucket", "name"), [("s3://", "''"), ("s3://songs batch/x", "'songs batch'"), ("/x", "''")]
)
def test_an_invalid_bucket_is_refused_before_any_aws_call(
    launcher: Launcher, terraform: FakeTerraform, command: str, bucket: str, name: str
) -> None:
    result = launcher(command, "--bucket", bucket)

    assert result == Result(
        2,
        "",
        f"error: --bucket: {name} is not an S3 bucket name (lower-case letters, digits, '.' "
        "and '-')\n",
    )
    assert terraform.argvs() == []


def test_a_running_flac_groups_songs_are_found_by_their_flac_names(
    launcher: Launcher, terraform: FakeTerraform, workdir: Path
) -> None:
    (workdir / "prompts.txt").write_text("calm piano ; 10 ; one\nloud drums ; 20 ; two\n")
    make_group(desired=0)
    applied(workdir, terraform)
    terraform.set_outputs(**GROUP_OUTPUTS, audio_format="flac")
    batch_bucket("one.flac", "two.wav")  # the .wav is not what this group makes

    result = launcher("--dry-run")

    assert result == Result(
        0,
        f"Group {GROUP} in us-east-1: desired 0, in service 0 (min 0, max 2)\n"
        f"Songs in s3://{BUCKET}/: 1 written, 1 missing, 0 failed for good (of 2 in prompts.txt)\n"
        "Dry run: stopping before the question. Nothing changed.\n",
        "",
    )
