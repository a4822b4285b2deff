"""Writes packer/requirements.txt, the requirements of the AMI's venv, from pyproject.toml: the
base dependencies and the [worker] extra, with the same specifiers, so the two cannot drift.

    python packer/generate_requirements.py    # `make packer-requirements`

tests/test_packer.py fails when the file is not what this writes.
"""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path

PACKER_DIR = Path(__file__).resolve().parent
PYPROJECT = PACKER_DIR.parent / "pyproject.toml"
REQUIREMENTS = PACKER_DIR / "requirements.txt"
HEADER = """\
# Generated from pyproject.toml by packer/generate_requirements.py (`make packer-requirements`):
# edit pyproject.toml, not this file.
# The worker's runtime dependencies (the base dependencies and the [worker] extra), installed into
# the AMI's venv (/opt/musicgen/venv); the launcher's extra is left out, it runs on the operator's
# machine. torch from PyPI is the CUDA build on Linux x86_64.
"""


def render(pyproject: str) -> str:
    """requirements.txt's text for the given pyproject.toml text."""
    project = tomllib.loads(pyproject)["project"]
    requirements = [*project["dependencies"], *project["optional-dependencies"]["worker"]]
    return HEADER + "".join(f"{requirement}\n" for requirement in requirements)


def main() -> int:
    REQUIREMENTS.write_text(render(PYPROJECT.read_text()))
    print(f"wrote {REQUIREMENTS.relative_to(PYPROJECT.parent)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
