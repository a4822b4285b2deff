"""launcher/tf.py: the variables file it writes and the terraform commands python-terraform runs.

A recorded stand-in `terraform` (first on PATH) logs every argv, so the call arguments are
checked on any machine; one test also feeds the written tfvars to the real binary.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from launcher.tf import VARIABLES_FILE, TerraformError, TerraformRoot
from tests.support.fake_terraform import FakeTerraform

# python-terraform 0.10.1 logs failures with the deprecated Logger.warn.
pytestmark = pytest.mark.filterwarnings("ignore:The 'warn' method is deprecated")


@pytest.fixture
def fake_terraform(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeTerraform:
    return FakeTerraform.install(tmp_path, monkeypatch)


@pytest.fixture
def root(tmp_path: Path) -> TerraformRoot:
    working_dir = tmp_path / "terraform"
    working_dir.mkdir()
    return TerraformRoot(working_dir)


def test_written_variables_read_back_by_real_terraform(tmp_path: Path) -> None:
    if shutil.which("terraform") is None:
        pytest.skip("terraform is not on PATH: the tfvars round trip needs the real binary")
    values = {
        "text": 'quote " backslash \\ ${x} %{y} café\nnew line',
        "price": 0.4,
        "workers": 2,
        "flag": True,
        "types": ["g4dn.xlarge", 'g5."x"${y}'],
        "zones": [],
    }
    # The lists as the root configuration declares them (instance_types, availability_zones).
    types = {"types": " { type = list(string) }", "zones": " { type = list(string) }"}
    (tmp_path / "main.tf").write_text(
        "".join(
            f'variable "{name}"{types.get(name, " {}")}\noutput "{name}" {{ value = var.{name} }}\n'
            for name in values
        )
    )
    TerraformRoot(tmp_path).write_variables(values)

    subprocess.run(
        ["terraform", "apply", "-auto-approve", "-input=false", "-no-color"],
        cwd=tmp_path,
        check=True,
        capture_output=True,
    )
    read_back = subprocess.run(
        ["terraform", "output", "-json"], cwd=tmp_path, check=True, capture_output=True, text=True
    )

    assert {k: v["value"] for k, v in json.loads(read_back.stdout).items()} == values


def test_write_variables(root: TerraformRoot) -> None:
    path = root.write_variables({"region": "us-east-1", "max_price": 0.4, "worker_count": 1})

    assert path == root.working_dir / "launcher.auto.tfvars.json" == root.working_dir / VARIABLES_FILE
    assert json.loads(path.read_text()) == {"region": "us-east-1", "max_price": 0.4, "worker_count": 1}


def test_init_apply_output_arguments(
    root: TerraformRoot, fake_terraform: FakeTerraform, capfd: pytest.CaptureFixture[str]
) -> None:
    fake_terraform.set_outputs(bucket_name="musicgen-batch-abc", autoscaling_group_name="musicgen-batch-workers")
    root.write_variables({"region": "us-east-1"})

    assert not root.is_initialized()
    assert root.outputs() == {}  # nothing to read before init, and no terraform call
    assert root.init() == 0
    assert root.is_initialized()
    assert root.apply() == 0
    assert root.outputs() == {"bucket_name": "musicgen-batch-abc", "autoscaling_group_name": "musicgen-batch-workers"}

    assert fake_terraform.argvs() == [
        ["init", "-no-color", "-input=false", "-reconfigure", "-backend=true"],
        ["apply", "-no-color", "-input=false", "-auto-approve=true"],
        ["output", "-json", "-no-color"],
    ]
    assert {call["cwd"] for call in fake_terraform.calls()} == {str(root.working_dir)}
    assert fake_terraform.calls()[1]["variables"] == {"region": "us-east-1"}
    # init and apply stream to the user; output is captured and parsed.
    streamed = capfd.readouterr().out
    assert "Terraform has been successfully initialized!" in streamed
    assert "Apply complete! Resources: 9 added, 0 changed, 0 destroyed." in streamed
    assert "musicgen-batch-abc" not in streamed


def test_apply_failure_is_its_exit_code(
    root: TerraformRoot, fake_terraform: FakeTerraform, capfd: pytest.CaptureFixture[str]
) -> None:
    fake_terraform.fail("apply", 1)

    assert root.apply() == 1
    assert capfd.readouterr().err == "Error: apply failed in the stand-in\n"


def test_output_failure_raises_with_terraforms_first_line(
    root: TerraformRoot, fake_terraform: FakeTerraform
) -> None:
    (root.working_dir / ".terraform").mkdir()
    fake_terraform.fail("output", 1)

    with pytest.raises(TerraformError) as caught:
        root.outputs()

    assert str(caught.value) == "terraform output failed: Error: output failed in the stand-in"
