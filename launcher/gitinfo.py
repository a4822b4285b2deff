"""Where the worker's code comes from by default (this checkout's origin and branch), and what
that code is on disk here, to compare with what the remote holds."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from launcher.gitremote import HOOK_VARIABLES


def _env() -> dict[str, str]:
    """This process's environment without what a git hook or alias sets (GIT_DIR and the
    like), which would point git at another repository than the checkout named with -C."""
    return {name: value for name, value in os.environ.items() if name not in HOOK_VARIABLES}


def _git(repo: Path, *args: str) -> str | None:
    try:
        result = subprocess.run(
            ["git", "-C", str(repo), *args], capture_output=True, text=True, check=False, env=_env()
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


def worktree_blobs(repo: Path, folders: tuple[str, ...]) -> dict[str, str] | None:
    """Blob id of every file under the `folders` as it is on disk now (committed or not, untracked
    but not ignored), path from the repository's root -> id: what `git add` would store, so it
    equals the remote's ids exactly when the contents are the same. None outside a checkout."""
    listed = _git_bytes(repo, "ls-files", "-z", "--cached", "--others", "--exclude-standard", "--", *folders)
    if listed is None:
        return None
    paths = sorted({p for p in listed.decode(errors="surrogateescape").split("\0") if p})
    # A file deleted but still in the index is listed, and is absent from what the user runs.
    paths = [p for p in paths if (repo / p).is_file() and not (repo / p).is_symlink()]
    if not paths:
        return {}
    ids = _git_bytes(repo, "hash-object", "--stdin-paths", stdin="\n".join(paths) + "\n")
    if ids is None:
        return None
    return dict(zip(paths, ids.decode().split(), strict=True))


def _git_bytes(repo: Path, *args: str, stdin: str | None = None) -> bytes | None:
    try:
        result = subprocess.run(
            ["git", "-C", str(repo), *args],
            input=stdin.encode() if stdin is not None else None,
            capture_output=True,
            check=False,
            env=_env(),
        )
    except FileNotFoundError:
        return None
    return result.stdout if result.returncode == 0 else None
