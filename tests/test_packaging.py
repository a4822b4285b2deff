"""The project as pip installs it: a venv with only the [launcher] extra, as on a laptop without
torch, where the console script and `python launcher` run; and the entry points in a Python that
has not installed the project."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import boto3
import pytest

from launcher.cli import main as launcher_main
from tests.tf_support import REPO_ROOT

PYPROJECT = REPO_ROOT / "pyproject.toml"
# One venv per pyproject.toml and Python; the project is installed editable, so code changes need
# no new venv, a changed dependency or script does.
VENVS = REPO_ROOT / ".cache" / "launcher-venv"
WORKER_ONLY = ("torch", "transformers", "numpy", "soundfile", "pyloudnorm", "scipy")
NOT_INSTALLED = (
    "error: No module named '{package}' in {python}: install the {package} with "
    "`pip install -e '.[{package}]'` from the checkout (`make install` does)\n"
)


def venv_key() -> str:
    digest = hashlib.sha256(PYPROJECT.read_bytes())
    for part in (sys.version, sys.base_prefix, str(REPO_ROOT)):
        digest.update(part.encode())
    return digest.hexdigest()[:16]


@pytest.fixture(scope="session")
def launcher_venv() -> Path:
    """A venv of its own (no system site-packages) with the project installed from this checkout
    with the [launcher] extra, the README's laptop install. Only the first run builds it (about
    10 s where pip finds the packages locally). Its tests share one xdist_group: the venv lives in
    the checkout, where two workers' builds would collide."""
    venv = VENVS / venv_key()
    if not (venv / ".installed").exists():
        # Venvs of an older pyproject.toml, and one whose install was cut short.
        shutil.rmtree(VENVS, ignore_errors=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
        install = subprocess.run(
            [venv / "bin" / "python", "-m", "pip", "install", "--quiet", "-e", f"{REPO_ROOT}[launcher]"],
            capture_output=True, text=True, timeout=600, check=False,
        )
        assert install.returncode == 0, install.stdout + install.stderr
        (venv / ".installed").touch()
    return venv


def run(
    *argv: str | Path, cwd: Path = REPO_ROOT, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """A child process without this Python's PYTHONPATH: what it imports, it imports from where
    its own Python installed it."""
    env = {
        **{name: value for name, value in os.environ.items() if name != "PYTHONPATH"},
        **(env or {}),
    }
    env["COLUMNS"] = "100"
    return subprocess.run(
        [str(arg) for arg in argv], cwd=cwd, env=env, stdin=subprocess.DEVNULL,
        capture_output=True, text=True, timeout=120, check=False,
    )


def launcher_help(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> str:
    monkeypatch.setenv("COLUMNS", "100")
    assert launcher_main(["--help"]) == 0
    return capsys.readouterr().out


@pytest.mark.slow
@pytest.mark.xdist_group("launcher-venv")
def test_the_launcher_venv_has_no_torch(launcher_venv: Path) -> None:
    python = launcher_venv / "bin" / "python"
    probe = "import importlib.util as u, sys; print([m for m in sys.argv[1:] if u.find_spec(m)])"
    found = run(
        python, "-c", probe, *WORKER_ONLY, "boto3", "python_terraform", "contract", "launcher", "worker"
    )
    assert (found.returncode, found.stdout) == (
        0, "['boto3', 'python_terraform', 'contract', 'launcher', 'worker']\n"
    )
    imported = run(python, "-c", "import torch")
    assert imported.returncode == 1
    assert imported.stderr.endswith("ModuleNotFoundError: No module named 'torch'\n")


@pytest.mark.slow
@pytest.mark.xdist_group("launcher-venv")
def test_the_console_script_and_python_launcher_run_without_torch(
    launcher_venv: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    expected = launcher_help(monkeypatch, capsys)
    python = launcher_venv / "bin" / "python"
    for argv in (
        [launcher_venv / "bin" / "musicgen-launcher", "--help"],
        [python, "launcher", "--help"],
        [python, "-m", "launcher", "--help"],
    ):
        result = run(*argv)
        assert (result.returncode, result.stdout, result.stderr) == (0, expected, ""), argv
    # The installed script runs this checkout's code from anywhere.
    elsewhere = run(launcher_venv / "bin" / "musicgen-launcher", "--help", cwd=launcher_venv)
    assert (elsewhere.returncode, elsewhere.stdout) == (0, expected)


@pytest.mark.slow
@pytest.mark.xdist_group("launcher-venv")
def test_the_installed_script_finds_terraform_from_anywhere(launcher_venv: Path, tmp_path: Path) -> None:
    """Outside the checkout the script reads the configuration installed with it, or the one
    $MUSICGEN_TERRAFORM_DIR names; --var names the folder it checked against."""
    script = launcher_venv / "bin" / "musicgen-launcher"
    (tmp_path / "prompts.txt").write_text("calm piano;3;calm\n")
    argv = [script, "status", "--bucket", "songs", "--var", "nam=x"]

    installed = run(*argv, cwd=tmp_path)
    assert (installed.returncode, installed.stdout) == (2, "")
    assert installed.stderr == (
        f"error: --var nam: {REPO_ROOT / 'terraform'}/*.tf declares no variable 'nam'; "
        "did you mean name?\n"
    )

    elsewhere = tmp_path / "deployment"
    elsewhere.mkdir()
    (elsewhere / "variables.tf").write_text('variable "nom" {\n  type = string\n}\n')
    chosen = run(*argv, cwd=tmp_path, env={"MUSICGEN_TERRAFORM_DIR": str(elsewhere)})
    assert (chosen.returncode, chosen.stderr) == (
        2,
        "error: --var nam: deployment/*.tf declares no variable 'nam'; did you mean nom?\n",
    )


@pytest.mark.slow
@pytest.mark.xdist_group("launcher-venv")
def test_the_launcher_reports_a_batch_without_torch(
    launcher_venv: Path, aws_env: str, tmp_path: Path
) -> None:
    s3 = boto3.client("s3", endpoint_url=aws_env)
    s3.create_bucket(Bucket="songs")
    s3.put_object(Bucket="songs", Key="calm.wav", Body=b"RIFF")
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("calm piano;3;calm\nepic drums;2.5;epic\n")

    result = run(
        launcher_venv / "bin" / "musicgen-launcher", "status", "--prompts", prompts,
        "--bucket", "songs", "--terraform-dir", tmp_path,
    )

    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout == (
        "Workers in us-east-1: none pending or running\n"
        "Songs in s3://songs/: 1 of 2 done, 1 missing\n"
        "  done:\n"
        "    calm.wav\n"
        "  missing:\n"
        "    epic.wav  (line 2, 2.5 s)\n"
        "cost_report.csv: not written yet\n"
    )


@pytest.mark.slow
@pytest.mark.xdist_group("launcher-venv")
def test_the_worker_checks_prompts_without_torch_and_names_its_extra_to_generate(
    launcher_venv: Path, tmp_path: Path
) -> None:
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("calm piano;3;calm\n")
    worker = launcher_venv / "bin" / "musicgen-worker"

    checked = run(worker, "--prompts", prompts, "--check")
    assert (checked.returncode, checked.stdout) == (0, "line 1: calm.wav 3 s: calm piano\n1 songs, 0 errors\n")

    generated = run(worker, "--prompts", prompts, "--output", tmp_path / "out")
    assert generated.returncode == 2
    (last,) = generated.stderr.splitlines()
    assert last.startswith("error: No module named ")
    assert last.endswith(
        f" in {launcher_venv / 'bin' / 'python'}: install the worker with "
        "`pip install -e '.[worker]'` from the checkout (`make install` does)"
    )
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


@pytest.mark.parametrize("package", ["launcher", "worker"])
def test_without_the_project_installed_the_entry_point_says_how_to_install_it(package: str) -> None:
    """`-S` leaves site-packages, and so any install of the project, out of this Python."""
    result = run(sys.executable, "-S", package, "--help")
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == NOT_INSTALLED.format(package=package, python=sys.executable)
