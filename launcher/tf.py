"""Every terraform call the launcher makes, through python-terraform.

The launcher's variables are written with json.dump to `launcher.auto.tfvars.json` in the
working directory rather than passed as -var flags: terraform loads that file on every command
(a JSON variable definitions file takes each value literally, no escaping), so the printed
`terraform -chdir=terraform destroy` (and any plan by hand) needs no -var for the required
git_repo_url and destroys exactly what was launched.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
from pathlib import Path
from typing import Any

from python_terraform import IsFlagged, Terraform

VARIABLES_FILE = "launcher.auto.tfvars.json"


class TerraformError(Exception):
    pass


# `variable "NAME" {` at the start of a line, as terraform fmt writes it, up to the block's own
# closing brace at the start of a line; and the block's `type = KEYWORD`.
_VARIABLE_BLOCK = re.compile(r'^variable\s+"([^"]+)"\s*\{(.*?)^\}', re.MULTILINE | re.DOTALL)
_TYPE = re.compile(r"^\s*type\s*=\s*([a-z]+)", re.MULTILINE)


def declared_variables(folder: Path) -> dict[str, str]:
    """The variables the root module in `folder` declares (every *.tf file, as terraform reads
    them), name -> its type's keyword (string, number, bool, list, ...; "any" without one)."""
    declared = {}
    for path in sorted(folder.glob("*.tf")):
        for name, body in _VARIABLE_BLOCK.findall(path.read_text(encoding="utf-8")):
            kind = _TYPE.search(body)
            declared[name] = kind.group(1) if kind else "any"
    return declared


def terraform_installed() -> bool:
    return shutil.which("terraform") is not None


Value = str | float | bool | list[str]


class TerraformRoot:
    """One terraform working directory (the root configuration and its local state)."""

    def __init__(self, working_dir: Path) -> None:
        self.working_dir = working_dir
        # init and apply pass var=None: python-terraform would otherwise add a temporary
        # -var-file of its empty default variables; the variables live in VARIABLES_FILE only.
        self._tf = Terraform(working_dir=str(working_dir))

    @property
    def variables_file(self) -> Path:
        return self.working_dir / VARIABLES_FILE

    def is_initialized(self) -> bool:
        # TF_DATA_DIR moves .terraform elsewhere (relative paths count from the working dir).
        data_dir = self.working_dir / os.environ.get("TF_DATA_DIR", ".terraform")
        return data_dir.is_dir()

    def write_variables(self, variables: dict[str, Value]) -> Path:
        with self.variables_file.open("w", encoding="utf-8") as handle:
            json.dump(variables, handle, indent=2, ensure_ascii=False)
            handle.write("\n")
        return self.variables_file

    def init(self) -> int:
        sys.stdout.flush()
        code, _, _ = self._tf.init(capture_output=False, var=None)
        return code

    def apply(self) -> int:
        """Apply with terraform's own output streamed to this process's stdout and stderr."""
        # The user already said yes to the launcher's question; skip_plan adds
        # -auto-approve=true, and -input=false (python-terraform's default) never prompts.
        sys.stdout.flush()
        code, _, _ = self._tf.apply(skip_plan=True, capture_output=False, var=None)
        return code

    def outputs(self) -> dict[str, Any]:
        """Output values by name; empty when nothing was applied yet or init never ran."""
        if not self.is_initialized():
            return {}
        code, out, err = self._tf.output_cmd(json=IsFlagged, no_color=IsFlagged)
        if code != 0:
            raise TerraformError(f"terraform output failed: {_first_line(err)}")
        return {name: item["value"] for name, item in json.loads(out or "{}").items()}


def _first_line(text: str | None) -> str:
    lines = [line.strip(" │╷╵") for line in (text or "").splitlines()]
    meaningful = [line for line in lines if line]
    return meaningful[0] if meaningful else "no error message"
