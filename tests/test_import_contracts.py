"""Who may import whom, as pyproject.toml's [tool.importlinter] contracts say: the launcher
imports the contract and never the worker (nor torch), the contract imports neither, the
worker's layers (cli -> runner -> scheduler -> engine) never reach back up, and no contract or
worker module imports itself back. `lint-imports` checks them; these tests run it."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import grimp

REPO_ROOT = Path(__file__).resolve().parent.parent
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"
PACKAGES = ("contract", "worker", "launcher")


def lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    # The packages are found on sys.path, so the checked tree must come first on it.
    return subprocess.run(
        [LINT_IMPORTS, "--no-cache", str(root / "pyproject.toml")],
        check=False, cwd=root, capture_output=True, text=True, timeout=120,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(root)},
    )


def copy_of_the_project(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    root.mkdir()
    shutil.copy(REPO_ROOT / "pyproject.toml", root)
    for package in PACKAGES:
        shutil.copytree(REPO_ROOT / package, root / package, ignore=shutil.ignore_patterns("__pycache__"))
    return root


def test_every_import_contract_is_kept():
    checked = lint_imports(REPO_ROOT)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "0 broken" in checked.stdout


def test_a_launcher_module_importing_the_worker_breaks_a_contract(tmp_path):
    root = copy_of_the_project(tmp_path)
    with (root / "launcher" / "download.py").open("a") as module:
        module.write("\nfrom worker.output.page import render_page  # noqa: E402,F401\n")
    checked = lint_imports(root)
    assert checked.returncode == 1
    assert "launcher is not allowed to import worker" in checked.stdout
    assert "launcher.download -> worker.output.page" in checked.stdout


def test_a_lower_worker_layer_reaching_a_higher_one_breaks_a_contract(tmp_path):
    root = copy_of_the_project(tmp_path)
    with (root / "worker" / "run" / "scheduler.py").open("a") as module:
        module.write("\n\ndef _late():\n    from worker.run import runner  # noqa: F401\n")
    checked = lint_imports(root)
    assert checked.returncode == 1
    assert "worker.run.scheduler -> worker.run.runner" in checked.stdout


def test_the_layers_are_connected_as_drawn():
    graph = grimp.build_graph("worker", "contract", cache_dir=None)
    assert graph.chain_exists(importer="worker.cli", imported="worker.run.runner")
    assert graph.direct_import_exists(importer="worker.run.runner", imported="worker.run.scheduler")
    # The worker reads the bucket's layout and its records from the contract.
    assert graph.chain_exists(importer="worker.run.runner", imported="contract.bucket")
