"""A recorded stand-in `terraform` (first on PATH): it logs every argv, and answers init, apply
and output from files the test writes, so the launcher's terraform calls are checked on any
machine."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

STAND_IN = """#!{python}
import json, os, sys
from pathlib import Path

state = Path(os.environ["FAKE_TERRAFORM_STATE"])
args = sys.argv[1:]
record = {{"argv": args, "cwd": os.getcwd()}}
if args[:1] == ["apply"]:
    tfvars = Path("launcher.auto.tfvars.json")
    record["variables"] = json.loads(tfvars.read_text()) if tfvars.exists() else None
with open(state / "calls.jsonl", "a") as log:
    log.write(json.dumps(record) + "\\n")
exit_file = state / (args[0] + ".exit")
code = int(exit_file.read_text()) if exit_file.exists() else 0
if code:
    print("Error: " + args[0] + " failed in the stand-in", file=sys.stderr)
    sys.exit(code)
if args[0] == "init":
    Path(".terraform").mkdir(exist_ok=True)
    print("Terraform has been successfully initialized!")
elif args[0] == "apply":
    print("Apply complete! Resources: 9 added, 0 changed, 0 destroyed.")
elif args[0] == "output":
    outputs = state / "outputs.json"
    print(outputs.read_text() if outputs.exists() else "{{}}")
"""


class FakeTerraform:
    """A `terraform` executable that records its calls and answers from files in `state`."""

    def __init__(self, state: Path) -> None:
        self.state = state

    @classmethod
    def install(cls, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeTerraform:
        bin_dir = tmp_path / "fake-bin"
        bin_dir.mkdir()
        script = bin_dir / "terraform"
        script.write_text(STAND_IN.format(python=sys.executable))
        script.chmod(0o755)
        state = tmp_path / "fake-terraform-state"
        state.mkdir()
        monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
        monkeypatch.setenv("FAKE_TERRAFORM_STATE", str(state))
        return cls(state)

    def calls(self) -> list[dict]:
        log = self.state / "calls.jsonl"
        if not log.exists():
            return []
        return [json.loads(line) for line in log.read_text().splitlines()]

    def argvs(self) -> list[list[str]]:
        return [call["argv"] for call in self.calls()]

    def set_outputs(self, **values: object) -> None:
        outputs = {
            name: {"sensitive": False, "type": "dynamic", "value": value}
            for name, value in values.items()
        }
        (self.state / "outputs.json").write_text(json.dumps(outputs))

    def fail(self, command: str, code: int = 1) -> None:
        (self.state / f"{command}.exit").write_text(str(code))
