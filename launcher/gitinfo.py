"""Where the worker's code comes from by default: this checkout's origin and branch."""

from __future__ import annotations

import subprocess
from pathlib import Path


def _git(repo: Path, *args: str) -> str | None:
    try:
        result = subprocess.run(
            ["git", "-C", str(repo), *args], capture_output=True, text=True, check=False
        )
    except FileNotFoundError:
        return None
    value = result.stdout.strip()
    return value if result.returncode == 0 and value else None


def origin_url(repo: Path) -> str | None:
    return _git(repo, "remote", "get-url", "origin")


def current_ref(repo: Path) -> str | None:
    """The branch checked out, else the commit (detached HEAD).

    A branch rather than its commit: the instance clones from the remote, which has what was
    pushed, and a commit that exists only here would fail there after the instance is paid for.
    """
    return _git(repo, "symbolic-ref", "--quiet", "--short", "HEAD") or _git(
        repo, "rev-parse", "HEAD"
    )
