"""Each default stated once, in contract/defaults.py: the launcher's options and the worker's
settings take it from there, and terraform's and Packer's variables, which cannot import Python,
are read with python-hcl2 and must say the same."""

from __future__ import annotations

from pathlib import Path

import pytest

from contract import defaults
from contract.memory import batch_for_memory
from launcher.cli import main as launcher_main
from tests.hcl import blocks
from worker.cli import parse_options, settings_from
from worker.settings import RunSettings

REPO_ROOT = Path(__file__).resolve().parent.parent
TERRAFORM_VARIABLES = REPO_ROOT / "terraform" / "variables.tf"
PACKER_TEMPLATES = sorted((REPO_ROOT / "packer").glob("*.pkr.hcl"))


def packer_variables() -> dict[str, dict]:
    found: dict[str, dict] = {}
    for template in PACKER_TEMPLATES:
        found.update(blocks(template, "variable"))
    return found


@pytest.mark.parametrize("name", sorted(defaults.TERRAFORM_DEFAULTS))
def test_terraforms_defaults_are_the_tables(name):
    variables = blocks(TERRAFORM_VARIABLES, "variable")
    assert variables[name]["default"] == defaults.TERRAFORM_DEFAULTS[name]


@pytest.mark.parametrize("name", sorted(defaults.PACKER_DEFAULTS))
def test_packers_defaults_are_the_tables(name):
    assert packer_variables()[name]["default"] == defaults.PACKER_DEFAULTS[name]


def test_packer_builds_on_the_tables_dlami():
    sources = {}
    for template in PACKER_TEMPLATES:
        sources.update(blocks(template, "source"))
    (ami_filter,) = sources["amazon-ebs.musicgen"]["source_ami_filter"]
    assert ami_filter["filters"]["name"] == defaults.DLAMI_NAME_PATTERN
    assert ami_filter["owners"] == [defaults.DLAMI_OWNER]


def test_the_workers_defaults_are_the_tables():
    run = settings_from(parse_options(["--prompts", "prompts.txt"]))[0]
    assert isinstance(run, RunSettings)
    assert run.model == defaults.DEFAULT_MODEL
    assert run.audio_format == defaults.DEFAULT_AUDIO_FORMAT
    assert run.hourly_cost_usd == defaults.DEFAULT_MAX_PRICE
    assert run.batch_size == defaults.DEFAULT_BATCH_SIZE
    assert run.lease_s == defaults.DEFAULT_LEASE_S
    assert run.max_attempts == defaults.DEFAULT_MAX_ATTEMPTS


def test_the_launchers_help_shows_the_tables_defaults(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "400")
    assert launcher_main(["launch", "--help"]) == 0
    shown = " ".join(capsys.readouterr().out.split())
    assert defaults.DEFAULT_INSTANCE_TYPE in shown
    assert f"{defaults.DEFAULT_MAX_PRICE:.2f}" in shown
    assert f"{defaults.DEFAULT_MAX_HOURS:g}" in shown


def test_the_two_batch_bounds_say_which_is_which():
    # The automatic sizing never picks more than a user may ask for.
    assert defaults.MAX_AUTO_BATCH_SIZE <= defaults.MAX_USER_BATCH_SIZE
    assert batch_for_memory(1 << 50, 1) == defaults.MAX_AUTO_BATCH_SIZE
    assert defaults.DEFAULT_MAX_PRICE <= defaults.MAX_PRICE_USD_PER_HOUR
    assert defaults.DEFAULT_MAX_HOURS <= defaults.MAX_HOURS
