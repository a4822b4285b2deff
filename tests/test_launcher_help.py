"""Each command's --help, exactly: what `musicgen-launcher`, `python launcher` and
`python -m launcher` print (tests/test_packaging.py checks that the three agree)."""

from __future__ import annotations

import pytest

from launcher.cli import main

TOP_HELP = """\
Usage: musicgen-launcher [OPTIONS] COMMAND [ARGS]...

  Runs a batch of MusicGen songs on AWS spot GPUs. The same command runs from the checkout as
  `python launcher` or `python -m launcher`.

Options:
  -h, --help  Show this message and exit.

Commands:
  launch    (the default) check for a running group, spot prices and the batch's cost, ask, then
            terraform apply; with a running group, offer to raise it back to its worker count
  status    show the group (or the tagged workers), its cost and the batch's progress; never
            launches or changes anything
  download  copy the batch's songs, cost report and listening page into DIR, only what is new or
            changed

  Without a command, musicgen-launcher launches: `musicgen-launcher --dry-run` is `musicgen-
  launcher launch --dry-run`. `musicgen-launcher COMMAND --help` lists a command's options. Exit
  status: 0 done (launched, declined, nothing to do), 1 terraform or a copy failed, 2 a usage,
  check or AWS error.
"""

LAUNCH_HELP = """\
Usage: musicgen-launcher launch [OPTIONS]

  (the default) check for a running group, spot prices and the batch's cost, ask, then terraform
  apply; with a running group, offer to raise it back to its worker count

Options:
  --region REGION              AWS region for prices, workers and terraform (default: boto3's:
                               $AWS_DEFAULT_REGION, else the profile's region; else $AWS_REGION,
                               else us-east-1); the checks before launch show where it came from
  --terraform-dir PATH         terraform root configuration and its state (default:
                               $MUSICGEN_TERRAFORM_DIR, else the terraform/ folder installed with
                               the launcher: the checkout's own from a checkout or an editable
                               install)
  --var KEY=VALUE              extra terraform variable, repeatable, e.g. ami_id, bucket_name,
                               model_path, batch_size, audio_format, force_destroy,
                               root_volume_size_gb (docs/deploy.md lists them); refused: a name
                               terraform/variables.tf does not declare, variables with an option
                               of their own (such as max_price), availability_zones (the launcher
                               sets it) and the replaced instance_type, availability_zone and
                               shutdown_when_done
  --prompts FILE               prompts file, parsed exactly as the worker parses it (default:
                               prompts.txt)
  --max-price USD              spot max price in USD per hour per instance, above 0 and at most
                               1000 (the worker's bound); the estimate and the cost-so-far figures
                               use it as the hourly rate, except for a running spot worker, whose
                               own spot request price counts where AWS reports one (default: 0.40)
  --instance-type TYPE         GPU instance type of the workers; repeat it for several types of
                               one GPU class, a wider spot capacity pool, all at one max price;
                               terraform accepts the NVIDIA families g4dn, g5, g6, g6e, gr6, p4d,
                               p4de, p5, p5e and p5en (default: g4dn.xlarge)
  --worker-count N             instances, the group's size, 1 to 1000; they share the generation
                               time and each pays the boot overhead (default: 1; with a running
                               group, the count to raise it back to: its maximum size, which
                               terraform sets to the launch's worker count)
  --keep-alive                 keep each instance up, and billing, after its workers finished,
                               instead of scaling it in (terraform's keep_alive)
  --max-hours HOURS            hours after which a worker checkpoints and scales its instance in,
                               whatever the batch's state; above 0 and at most 720 (30 days);
                               terraform's max_hours (default: 12)
  --bucket BUCKET              bucket to look for finished songs in, left out of the estimate:
                               NAME, NAME/PREFIX or s3://NAME/PREFIX; read only, it does not
                               rename the bucket terraform creates (default: the bucket_name
                               terraform output, or --var bucket_name=...)
  --realtime-factor FACTOR     audio seconds generated per wall-clock second per GPU (one worker
                               runs per GPU), 0.01 to 100; an assumption, on the slow side for
                               musicgen-small on a T4 (g4dn.xlarge), as long songs re-generate
                               overlapping windows: measure yours as requested_duration_s /
                               generation_time_s in a finished cost_report.csv (default: 0.5)
  --boot-overhead-min MINUTES  minutes each instance is paid for before it generates anything
                               (boot, bootstrap, model load); an assumption, 0 to 1440 (default:
                               10)
  --price-window-hours HOURS   span of spot price history to summarise, above 0 and at most 2160,
                               as AWS keeps 90 days (default: 24)
  --git-url URL                repository the workers clone; https:// only, the workers get only
                               HTTPS out (default: `git remote get-url origin`)
  --git-ref REF                branch, tag or commit the workers run; push it first, they clone
                               from the remote. The launch pins the commit it names on the remote
                               then, so replacements run the same code (default: the current
                               branch, the commit when HEAD is detached)
  --git-token-parameter NAME   SSM Parameter Store SecureString holding a read-only token for a
                               private repository, e.g. /musicgen/git-token; see docs/launcher-
                               preflight.md (default: none, a public repository)
  --yes                        launch, or raise a running group, without asking, for automation;
                               warnings are still printed
  --force                      launch although every zone's current spot price is above the max
                               price (refused otherwise)
  --dry-run                    do everything up to the question (to launch, or to raise the
                               group), then stop; changes nothing and needs no terminal
  -h, --help                   Show this message and exit.
"""

STATUS_HELP = """\
Usage: musicgen-launcher status [OPTIONS]

  show the group (or the tagged workers), its cost and the batch's progress; never launches or
  changes anything

Options:
  --region REGION       AWS region for prices, workers and terraform (default: boto3's:
                        $AWS_DEFAULT_REGION, else the profile's region; else $AWS_REGION, else us-
                        east-1); the checks before launch show where it came from
  --terraform-dir PATH  terraform root configuration and its state (default:
                        $MUSICGEN_TERRAFORM_DIR, else the terraform/ folder installed with the
                        launcher: the checkout's own from a checkout or an editable install)
  --var KEY=VALUE       extra terraform variable, repeatable, e.g. ami_id, bucket_name,
                        model_path, batch_size, audio_format, force_destroy, root_volume_size_gb
                        (docs/deploy.md lists them); refused: a name terraform/variables.tf does
                        not declare, variables with an option of their own (such as max_price),
                        availability_zones (the launcher sets it) and the replaced instance_type,
                        availability_zone and shutdown_when_done
  --prompts FILE        prompts file, parsed exactly as the worker parses it (default:
                        prompts.txt)
  --max-price USD       spot max price in USD per hour per instance, above 0 and at most 1000 (the
                        worker's bound); the estimate and the cost-so-far figures use it as the
                        hourly rate, except for a running spot worker, whose own spot request
                        price counts where AWS reports one (default: 0.40)
  --bucket BUCKET       bucket whose progress to show: NAME, NAME/PREFIX or s3://NAME/PREFIX; read
                        only, it does not rename the bucket terraform creates (default: the
                        bucket_name terraform output, or --var bucket_name=...)
  -h, --help            Show this message and exit.
"""

DOWNLOAD_HELP = """\
Usage: musicgen-launcher download [OPTIONS] [DIR]

  copy the batch's songs, cost report and listening page into DIR, only what is new or changed

Positional arguments:
  [DIR]  the folder to copy into, created if missing (default: songs)

Options:
  --region REGION       AWS region for prices, workers and terraform (default: boto3's:
                        $AWS_DEFAULT_REGION, else the profile's region; else $AWS_REGION, else us-
                        east-1); the checks before launch show where it came from
  --terraform-dir PATH  terraform root configuration and its state (default:
                        $MUSICGEN_TERRAFORM_DIR, else the terraform/ folder installed with the
                        launcher: the checkout's own from a checkout or an editable install)
  --var KEY=VALUE       extra terraform variable, repeatable, e.g. ami_id, bucket_name,
                        model_path, batch_size, audio_format, force_destroy, root_volume_size_gb
                        (docs/deploy.md lists them); refused: a name terraform/variables.tf does
                        not declare, variables with an option of their own (such as max_price),
                        availability_zones (the launcher sets it) and the replaced instance_type,
                        availability_zone and shutdown_when_done
  --bucket BUCKET       bucket to copy from: NAME, NAME/PREFIX or s3://NAME/PREFIX; read only, it
                        does not rename the bucket terraform creates (default: the bucket_name
                        terraform output, or --var bucket_name=...)
  --prefix PREFIX       the batch's folder in the bucket, as in the worker's s3://BUCKET/PREFIX;
                        or give it in --bucket (default: the bucket's root)
  --logs                copy the workers' logs/ as well
  -h, --help            Show this message and exit.
"""


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (['--help'], TOP_HELP),
        (['launch', '--help'], LAUNCH_HELP),
        (['status', '--help'], STATUS_HELP),
        (['download', '--help'], DOWNLOAD_HELP),
        (["-h"], TOP_HELP),
    ],
)
def test_help(
    argv: list[str], expected: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "100")
    assert main(argv) == 0
    assert capsys.readouterr() == (expected, "")


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--max-hours", ""], "error: --max-hours must be a number (got '')\n"),
        (["status", "--max-price", "abc"], "error: --max-price must be a number (got 'abc')\n"),
        (["--worker-count", "1e3"], "error: --worker-count must be a whole number (got '1e3')\n"),
        (["download", "--bucket"], "error: Option '--bucket' requires an argument.\n"),
    ],
)
def test_values_the_launcher_cannot_read_are_one_line(
    argv: list[str], expected: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    assert capsys.readouterr() == ("", expected)
