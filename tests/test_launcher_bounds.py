"""One bound, three places: the launcher's options, terraform's variable validation and the worker
(contract/defaults.py states each once). terraform itself judges values either side of each bound,
so a value the launcher lets through is never refused later by terraform, after the user said
yes, or by the worker on every instance. And a value out of bounds leaves nothing behind."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from contract.defaults import MAX_HOURS, MAX_PRICE_USD_PER_HOUR
from launcher.cli import parse_args
from launcher.options import UsageError
from tests import tf_support
from tests.support.fake_terraform import FakeTerraform
from tests.support.launcher import GIT, Launcher, Result
from worker import cli as worker_cli

# (terraform variable, launcher option, worker option, the bound): the worker's hourly cost is
# the max price terraform gives it (worker_hourly_rate then splits it between the GPUs).
BOUNDS = [
    ("max_hours", "--max-hours", "--max-hours", MAX_HOURS),
    ("max_price", "--max-price", "--hourly-cost", MAX_PRICE_USD_PER_HOUR),
]


def values_around(bound: float) -> list[float]:
    return [-1.0, 0.0, 0.001, bound, bound * (1 + 1e-6), bound * 10]


@pytest.fixture(scope="module")
def variables_root(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """A root module holding only the real terraform/variables.tf: `terraform plan` evaluates
    every variable's validation and nothing else (no provider, no AWS call)."""
    if tf_support.terraform_binary() is None:
        pytest.skip("BOUNDS NOT TIED TO TERRAFORM: no `terraform` binary on PATH")
    root = tmp_path_factory.mktemp("variables-only")
    shutil.copy(tf_support.TERRAFORM_DIR / "variables.tf", root / "variables.tf")
    env = tf_support.terraform_env(root / "data")
    tf_support.run_terraform(["init", "-input=false"], root, env)
    return root, env


def terraform_accepts(root: Path, env: dict[str, str], name: str, value: float) -> bool:
    result = subprocess.run(
        [
            "terraform", "plan", "-input=false", "-no-color", "-lock=false",
            "-var", "git_repo_url=https://example.com/songs.git", "-var", f"{name}={value!r}",
        ],
        cwd=root, env=env, capture_output=True, text=True, timeout=300, check=False,
    )
    if result.returncode != 0:
        assert "Invalid value for variable" in result.stderr, result.stderr
    return result.returncode == 0


def launcher_accepts(option: str, value: float) -> bool:
    try:
        parse_args([option, repr(value)])
    except UsageError:
        return False
    return True


def worker_accepts(option: str, value: float) -> bool:
    try:
        worker_cli.settings_from(worker_cli.parse_options([option, repr(value)]))
    except worker_cli.UsageError:
        return False
    return True


@pytest.mark.terraform
@pytest.mark.parametrize(("variable", "option", "worker_option", "bound"), BOUNDS)
def test_the_launcher_terraform_and_the_worker_agree_on_each_bound(
    variables_root: tuple[Path, dict[str, str]],
    variable: str,
    option: str,
    worker_option: str,
    bound: float,
) -> None:
    root, env = variables_root
    for value in values_around(bound):
        by_terraform = terraform_accepts(root, env, variable, value)
        assert launcher_accepts(option, value) == by_terraform, (option, value)
        if value > 0:
            # The worker takes a local run's hourly cost of 0; above 0 it agrees.
            assert worker_accepts(worker_option, value) == by_terraform, (worker_option, value)
    assert terraform_accepts(root, env, variable, bound)
    assert not terraform_accepts(root, env, variable, bound * (1 + 1e-6))


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["--max-hours", "1000"],
            "--max-hours must be more than 0 and at most 720 (30 days) (got 1000)",
        ),
        (
            ["--max-price", "1e9"],
            "--max-price must be more than 0 and at most 1000 USD/h (got 1e+09)",
        ),
        (
            ["--realtime-factor", "1e-300"],
            (
                "--realtime-factor must be at least 0.01 and at most 100 audio-s per second "
                "(got 1e-300)"
            ),
        ),
        (
            ["--boot-overhead-min", "1e300"],
            "--boot-overhead-min must be at least 0 and at most 1440 (got 1e+300)",
        ),
        (["--worker-count", "1000000"], "--worker-count must be at least 1 and at most 1000 (got 1000000)"),
    ],
)
def test_out_of_bounds_values_exit_2_and_leave_nothing_in_the_terraform_folder(
    launcher: Launcher, terraform: FakeTerraform, workdir: Path, argv: list[str], message: str
) -> None:
    before = sorted(p.name for p in (workdir / "terraform").iterdir())

    result = launcher(*GIT, *argv, "--yes")

    assert result == Result(2, "", f"error: {message}\n")
    assert sorted(p.name for p in (workdir / "terraform").iterdir()) == before
    assert terraform.argvs() == []


def test_the_largest_inputs_allowed_give_an_estimate_a_person_can_read(
    launcher: Launcher, terraform: FakeTerraform
) -> None:
    result = launcher(
        *GIT,
        "--dry-run",
        "--realtime-factor", "0.01",
        "--max-price", "1000",
        "--boot-overhead-min", "1440",
        "--worker-count", "1000",
    )

    # 1000 workers × 24 h boot + 0.1 h of songs at $1000/h: thousands separators, cents.
    estimate = next(line for line in result.out.splitlines() if line.startswith("Estimate"))
    assert estimate == "Estimate (upper bound, at the max price): $24,011,666.67"


def test_the_worker_refuses_what_terraform_would(refused) -> None:
    """The bound reaches the worker too: the time cap terraform gives it, MUSICGEN_MAX_HOURS."""
    assert "--max-hours/MUSICGEN_MAX_HOURS='720.5': must be <= 720" in refused(
        [], {"MUSICGEN_MAX_HOURS": "720.5"}
    )
