"""--var: a name the terraform configuration does not declare is refused before anything runs
(terraform would only warn, among hundreds of lines, and apply without it), and enumerated values
are case-insensitive, written to terraform in lower case (CONTRACT "Case")."""

from __future__ import annotations

from pathlib import Path

import hcl2
import pytest

from launcher.tf import declared_variables
from tests import tf_support
from tests.support.fake_terraform import FakeTerraform
from tests.support.launcher import GIT, Launcher, Result


def test_a_misspelt_variable_is_refused_before_anything_runs(
    launcher: Launcher, terraform: FakeTerraform, workdir: Path
) -> None:
    result = launcher(*GIT, "--var", "audioformat=flac", "--yes")

    assert result == Result(
        2,
        "",
        "error: --var audioformat: terraform/variables.tf declares no variable 'audioformat'; "
        "did you mean audio_format?\n",
    )
    assert terraform.argvs() == []
    assert launcher.price_requests == []
    assert list((workdir / "terraform").iterdir()) == []


@pytest.mark.parametrize("command", ["status", "download"])
def test_every_command_refuses_an_undeclared_variable(
    launcher: Launcher, terraform: FakeTerraform, command: str
) -> None:
    result = launcher(command, "--var", "bucket=songs")

    assert result.code == 2
    assert result.err.startswith("error: --var bucket: terraform/variables.tf declares no variable")


def test_the_variables_come_from_the_terraform_folder_that_will_apply(
    launcher: Launcher, terraform: FakeTerraform, workdir: Path
) -> None:
    """A terraform folder with a configuration of its own: its declarations count."""
    (workdir / "terraform" / "variables.tf").write_text(
        'variable "git_repo_url" {\n  type = string\n}\n\nvariable "spot_note" {\n'
        '  type    = string\n  default = ""\n}\n'
    )

    refused = launcher(*GIT, "--var", "audio_format=flac", "--dry-run")
    accepted = launcher(*GIT, "--var", "spot_note=weekend", "--dry-run")

    assert refused == Result(
        2, "", "error: --var audio_format: terraform/*.tf declares no variable 'audio_format'\n"
    )
    assert (accepted.code, accepted.err) == (0, "")


def test_declared_variables_are_those_terraform_parses() -> None:
    """The launcher's reading of variables.tf against python-hcl2's parse of the same file."""
    with open(tf_support.TERRAFORM_DIR / "variables.tf") as handle:
        parsed = hcl2.load(handle)
    expected = {
        name.strip('"'): str(body.get("type", "any")).removeprefix("${").split("(")[0]
        for block in parsed["variable"]
        for name, body in block.items()
    }

    assert declared_variables(tf_support.TERRAFORM_DIR) == expected


def test_enumerated_values_are_written_in_lower_case(
    launcher: Launcher, terraform: FakeTerraform, workdir: Path
) -> None:
    result = launcher(
        *GIT,
        "--region", "US-EAST-1",
        "--instance-type", "G4DN.XLARGE",
        "--var", "audio_format=FLAC",
        "--var", "force_destroy=TRUE",
        "--yes",
    )

    assert (result.code, result.err) == (0, "")
    variables = next(call["variables"] for call in terraform.calls() if call["argv"][0] == "apply")
    assert variables["region"] == "us-east-1"
    assert variables["instance_types"] == ["g4dn.xlarge"]
    assert variables["audio_format"] == "flac"
    assert variables["force_destroy"] == "true"
    assert "Launch 1 × g4dn.xlarge spot in us-east-1" in result.out


@pytest.mark.parametrize(
    ("item", "message"),
    [
        ("batch_size=sixteen", "--var batch_size='sixteen': must be a number"),
        ("root_volume_size_gb=nan", "--var root_volume_size_gb='nan': must be a number"),
        ("force_destroy=yes", "--var force_destroy='yes': must be true or false"),
    ],
)
def test_values_terraform_cannot_convert_are_refused_before_anything_is_written(
    launcher: Launcher, terraform: FakeTerraform, workdir: Path, item: str, message: str
) -> None:
    result = launcher(*GIT, "--var", item, "--yes")

    assert result == Result(2, "", f"error: {message}\n")
    assert not (workdir / "terraform" / "launcher.auto.tfvars.json").exists()
