"""Where the worker's code comes from when --git-url and --git-ref are not given."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from launcher.gitinfo import current_ref, origin_url


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), *args], check=True, capture_output=True, text=True
    ).stdout.strip()


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    git(tmp_path, "init", "--quiet", "--initial-branch=main")
    git(
        tmp_path,
        "-c",
        "user.name=t",
        "-c",
        "user.email=t@example.com",
        "commit",
        "--quiet",
        "--allow-empty",
        "-m",
        "first",
    )
    return tmp_path


def test_no_origin_and_no_repository(repo: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    assert origin_url(repo) is None
    plain = tmp_path_factory.mktemp("not-a-repo")
    assert (origin_url(plain), current_ref(plain)) == (None, None)


def test_origin_and_branch(repo: Path) -> None:
    git(repo, "remote", "add", "origin", "https://github.com/me/musicgen-batch.git")
    git(repo, "checkout", "--quiet", "-b", "saturday-batch")

    assert origin_url(repo) == "https://github.com/me/musicgen-batch.git"
    assert current_ref(repo) == "saturday-batch"


def test_detached_head_gives_the_commit(repo: Path) -> None:
    commit = git(repo, "rev-parse", "HEAD")
    git(repo, "checkout", "--quiet", "--detach")

    assert current_ref(repo) == commit
