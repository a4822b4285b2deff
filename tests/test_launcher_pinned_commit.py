"""The launch pins the commit its checks compared, and an instance's checkout fetches exactly that
commit by id, as worker/instance/bootstrap.sh does (`git fetch --depth 1 origin <sha>`), from a real
`git daemon`, even after the branch moved on: every instance of the group, a replacement booting
hours later too, runs the code and prompts the user saw checked.

A commit that is no branch tip any more is fetched by id under git's protocol version 2, the
default since git 2.26 ("protocol.version" in git-config(1)): its fetch command (upload_pack_v2
in git's upload-pack.c) takes a `want` of any object the repository has, where a version 0
server refuses an object it did not advertise unless uploadpack.allowReachableSHA1InWant is set.
GitHub and GitLab serve such fetches."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from launcher import aws
from tests.support.boot import BOOTSTRAP, bootstrap_env, git, settings_for, write_env_file
from tests.support.fake_terraform import FakeTerraform
from tests.support.launcher import GIT, PROMPTS, Launcher, WorkerSource


def pinned_ref(terraform: FakeTerraform) -> str:
    return next(call["variables"] for call in terraform.calls() if call["argv"][0] == "apply")[
        "git_ref"
    ]


def test_the_launch_pins_the_commit_and_shows_it_with_the_ref(
    launcher: Launcher, terraform: FakeTerraform, source: WorkerSource
) -> None:
    checked = source.commit()

    result = launcher(*GIT, "--yes")

    assert result.code == 0, result.err
    assert pinned_ref(terraform) == checked
    assert (
        "Worker code: https://github.com/example/musicgen-batch.git @ main, commit "
        f"{checked[:12]} (every instance, replacements too, runs this commit)\n"
    ) in result.out


@pytest.mark.slow
@pytest.mark.pushes
def test_a_replacement_boots_into_the_pinned_commit_after_the_branch_moved(
    launcher: Launcher,
    terraform: FakeTerraform,
    source: WorkerSource,
    tmp_path: Path,
) -> None:
    assert launcher(*GIT, "--yes").code == 0
    pinned = pinned_ref(terraform)
    # After the launch: main moves on with other prompts.
    source.repo.commit("prompts.txt", PROMPTS + "a later song ; 30 ; later\n", "later batch")
    source.repo.push()
    assert git("ls-remote", source.daemon.url("musicgen-batch"), "main", cwd=tmp_path).split()[0] != pinned

    aws.s3_client("us-east-1").create_bucket(Bucket="songs")
    settings = {
        **settings_for(tmp_path, "https://github.com/example/musicgen-batch.git", "songs", tmp_path),
        "MUSICGEN_REPO_REF": pinned,
        "MUSICGEN_VENV": sys.prefix,
    }
    env = bootstrap_env(write_env_file(tmp_path / "worker.env", settings))
    booted = subprocess.run(
        ["bash", str(BOOTSTRAP), "checkout"],
        env=env, capture_output=True, text=True, timeout=300, check=False,
    )

    assert booted.returncode == 0, booted.stdout + booted.stderr
    checkout = Path(settings["MUSICGEN_CHECKOUT_DIR"])
    assert git("rev-parse", "HEAD", cwd=checkout) == pinned
    assert (checkout / "prompts.txt").read_text() == PROMPTS
