"""The name prefix and the workers' tag have one source: terraform's `name` variable and its
`worker_tag` output; the launcher's constant is that variable's default."""

from __future__ import annotations

from pathlib import Path

import pytest

from launcher import instances
from tests import hcl

REPO_ROOT = Path(__file__).resolve().parent.parent


def test_the_launchers_name_is_terraforms_default() -> None:
    variables = hcl.blocks(REPO_ROOT / "terraform" / "variables.tf", "variable")
    assert instances.NAME == variables["name"]["default"]


def test_without_state_the_tag_is_the_one_terraform_derives_from_the_name() -> None:
    """The worker module's `worker_tag` local, evaluated for a name, is the launcher's fallback."""
    locals_ = hcl.load(REPO_ROOT / "terraform" / "modules" / "worker" / "main.tf")["locals"]
    (derived,) = [block["worker_tag"] for block in locals_ if "worker_tag" in block]
    for name in (instances.NAME, "songs"):
        expected = {key: value.replace("${var.name}", name) for key, value in derived.items()}
        assert instances.worker_tag({}, name) == expected


@pytest.mark.parametrize(
    ("outputs", "name", "tag"),
    [
        ({"worker_tag": {"Role": "songs-worker"}}, instances.NAME, {"Role": "songs-worker"}),
        ({"worker_tag": {"Role": "songs-worker"}}, "other", {"Role": "songs-worker"}),
        ({}, instances.NAME, {"Role": "musicgen-batch-worker"}),
        ({}, "songs", {"Role": "songs-worker"}),
        ({"worker_tag": {}}, "songs", {"Role": "songs-worker"}),
        ({"worker_tag": None, "bucket_name": "b"}, "songs", {"Role": "songs-worker"}),
    ],
)
def test_worker_tag(outputs: dict, name: str, tag: dict[str, str]) -> None:
    assert instances.worker_tag(outputs, name) == tag
