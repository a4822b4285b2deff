"""What the worker will clone: the remote's ref, its prompts.txt, and whether it can be read.

The worker clones the remote over anonymous HTTPS (or with the SSM token through a credential
helper) and reads `prompts.txt` at the configured ref, so the launcher asks the remote the same
questions with the same restrictions before anything is paid for. The pure decisions
(`resolve_ref`, `compare_prompts`, `access_failure`) are separate from `GitRunner`, the one
seam that runs git.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from launcher.checks import Check

# The worker reads this file at its checkout's root (MUSICGEN_PROMPTS defaults to it).
WORKER_PROMPTS = "prompts.txt"
# The code the instances run from their checkout: the worker package (bootstrap.sh included)
# and the contract package it imports.
WORKER_CODE = ("worker/", "contract/")
CODE_SHOWN = " and ".join(WORKER_CODE)
# The worker's credential helper (UserData installs it): it reads the token from SSM and hands it
# to git over a pipe.
CREDENTIAL_HELPER = (
    Path(__file__).resolve().parent.parent
    / "terraform"
    / "modules"
    / "worker"
    / "files"
    / "git-credential-ssm.py"
)
_COMMIT = re.compile(r"^[0-9a-f]{7,64}$")
# Set when the launcher runs from a git hook or alias: they would point git at the user's
# repository or carry the user's own `-c` settings and SSH command.
HOOK_VARIABLES = frozenset(
    {
        "GIT_DIR",
        "GIT_WORK_TREE",
        "GIT_COMMON_DIR",
        "GIT_INDEX_FILE",
        "GIT_OBJECT_DIRECTORY",
        "GIT_ALTERNATE_OBJECT_DIRECTORIES",
        "GIT_NAMESPACE",
        "GIT_CONFIG",
        "GIT_CONFIG_PARAMETERS",
        "GIT_SSH",
        "GIT_SSH_COMMAND",
    }
)
TIMEOUT_S = 120


class GitError(Exception):
    """A git command failed; the message is git's own last line."""


@dataclass(frozen=True)
class Access:
    """How git reaches the remote: like the worker, with no credentials of the user's own, and
    with the token parameter's helper when one is configured."""

    token_parameter: str | None = None
    region: str | None = None


def restricted_env(base: Mapping[str, str], access: Access) -> dict[str, str]:
    """The environment for git: no terminal prompt, no askpass program, no user or system git
    config (their credential helpers and url rewrites are not on the worker); command-line
    config (GIT_CONFIG_COUNT) and TLS or proxy settings from the environment still apply."""
    env = {name: value for name, value in base.items() if name not in HOOK_VARIABLES}
    env.update(
        GIT_TERMINAL_PROMPT="0",
        GIT_ASKPASS="",
        SSH_ASKPASS="",
        GIT_CONFIG_NOSYSTEM="1",
        GIT_CONFIG_GLOBAL=os.devnull,
        LC_ALL="C",
    )
    if access.token_parameter:
        # The helper reads the parameter with the user's own AWS credentials, in the launch region.
        env["MUSICGEN_GIT_TOKEN_PARAMETER"] = access.token_parameter
        if access.region:
            env["AWS_DEFAULT_REGION"] = access.region
            env["AWS_REGION"] = access.region
    return env


def credential_args(access: Access) -> list[str]:
    """`-c` options: no credential helper at all, or exactly the worker's token helper. The token
    travels from the helper to git over a pipe, never in an argument, the URL or a log."""
    # The worker has no SSH key, so a url rewrite to SSH must fail here as it would there.
    args = ["-c", "credential.helper=", "-c", "protocol.ssh.allow=never"]
    if access.token_parameter:
        helper = f"!{shlex.quote(sys.executable)} {shlex.quote(str(CREDENTIAL_HELPER))}"
        args += ["-c", f"credential.helper={helper}"]
    return args


class GitRunner:
    """Runs git with the restricted environment; the only place that starts git here."""

    def __init__(self, access: Access) -> None:
        self.access = access
        self.env = restricted_env(os.environ, access)

    def run(self, *args: str, cwd: Path | None = None) -> bytes:
        try:
            result = subprocess.run(
                ["git", *credential_args(self.access), *args],
                cwd=cwd,
                env=self.env,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                timeout=TIMEOUT_S,
                check=False,
            )
        except FileNotFoundError:
            raise GitError("git is not installed or not on PATH") from None
        except subprocess.TimeoutExpired:
            raise GitError(f"no answer within {TIMEOUT_S} s") from None
        if result.returncode != 0:
            raise GitError(_last_line(result.stderr) or f"git exited {result.returncode}")
        return result.stdout

    def ls_remote(self, url: str) -> dict[str, str]:
        """Every ref the remote advertises, name -> commit (tags also as `name^{}`, peeled)."""
        refs = {}
        for line in self.run("ls-remote", "--", url).decode().splitlines():
            sha, _, name = line.partition("\t")
            refs[name] = sha
        return refs

    def fetch(self, url: str, ref: str, path: str, code_dirs: tuple[str, ...]) -> Fetched:
        """`ref` fetched as the worker fetches it (`--depth 1`, by name or by commit id), into a
        temporary ref of a throwaway repository: its commit, the bytes of `path` at it, and the
        blob id of every file under the `code_dirs`."""
        with tempfile.TemporaryDirectory(prefix="musicgen-preflight-") as scratch:
            repo = Path(scratch)
            self.run("init", "--quiet", "--bare", cwd=repo)
            self.run(
                "fetch",
                "--quiet",
                "--no-tags",
                "--depth",
                "1",
                "--",
                url,
                f"{ref}:refs/preflight/worker",
                cwd=repo,
            )
            commit = self.run("rev-parse", "refs/preflight/worker^{commit}", cwd=repo)
            try:
                content = self.run("show", f"refs/preflight/worker:{path}", cwd=repo)
            except GitError:
                content = None
            tree = self.run("ls-tree", "-r", "-z", "refs/preflight/worker", "--", *code_dirs, cwd=repo)
        return Fetched(commit.decode().strip(), content, blobs_from_ls_tree(tree))


@dataclass(frozen=True)
class Fetched:
    commit: str
    prompts: bytes | None
    code: dict[str, str]  # path -> blob id, the files under the code folders


def blobs_from_ls_tree(output: bytes) -> dict[str, str]:
    """`git ls-tree -r -z` entries ("MODE TYPE ID\tPATH") as path -> blob id."""
    blobs = {}
    for entry in output.decode(errors="surrogateescape").split("\0"):
        meta, _, path = entry.partition("\t")
        fields = meta.split()
        if len(fields) == 3 and fields[1] == "blob":
            blobs[path] = fields[2]
    return blobs


def resolve_ref(refs: Mapping[str, str], ref: str) -> str | None:
    """The commit `ref` names on the remote, as `git fetch origin REF` would pick it; a full or
    abbreviated commit id resolves to itself (the fetch itself proves it exists); None when the
    remote has no such ref."""
    for name in (ref, f"refs/heads/{ref}", f"refs/tags/{ref}"):
        if name in refs:
            return refs.get(f"{name}^{{}}", refs[name])
    return ref if _COMMIT.match(ref) else None


# What git says when the server wants credentials it was not given (or refused the ones given);
# GitHub answers a private repository's anonymous clone with 401, some hosts with 403 or 404.
_AUTH_ERRORS = (
    "authentication failed",
    "could not read username",
    "could not read password",
    "terminal prompts disabled",
    "repository not found",
    "403",
    "401",
)


def access_failure(url: str, access: Access, error: str) -> str:
    """Why the worker could not clone, and the fix."""
    if not any(marker in error.lower() for marker in _AUTH_ERRORS):
        return f"git: cannot read {url} ({error}); check the URL and the network"
    if access.token_parameter:
        return (
            f"git: the worker could not read {url} with the token in SSM parameter "
            f"{access.token_parameter} ({error}); check the token's access to the repository"
        )
    return (
        f"git: the worker clones anonymously and could not read {url} ({error}); make the "
        "repository public, or store a read-only token in SSM Parameter Store and pass "
        "--git-token-parameter NAME"
    )


def compare_prompts(
    local: bytes, remote: bytes | None, *, local_name: str, ref: str, commit: str
) -> Check:
    at = f"{ref} ({commit[:12]})"
    if remote is None:
        return Check.failed(
            f"prompts: the remote has no {WORKER_PROMPTS} at {at}, so the worker would have "
            f"nothing to do: commit and push it, or pass --git-ref"
        )
    if remote != local:
        return Check.failed(
            f"prompts: {local_name} differs from {WORKER_PROMPTS} at {at} on the remote, which "
            "the worker runs: commit and push it, or pass --git-ref"
        )
    return Check.passed(f"prompts: {local_name} is {WORKER_PROMPTS} at {at} on the remote")


def compare_code(
    local: dict[str, str] | None, remote: dict[str, str], *, ref: str, commit: str
) -> Check:
    """The worker's code at the remote commit against this checkout's working tree (what the
    user ran and tested): same paths, same blob ids. `local` is None outside a git checkout."""
    at = f"{ref} ({commit[:12]})"
    if local is None:
        return Check.warned(
            f"worker code: not compared: the launcher does not run from a git checkout, so the "
            f"code the workers run ({CODE_SHOWN} at {at}) cannot be compared with yours"
        )
    differing = sorted(
        path for path in local.keys() | remote.keys() if local.get(path) != remote.get(path)
    )
    if differing:
        shown = ", ".join(differing[:3]) + (f" (and {len(differing) - 3} more)" if len(differing) > 3 else "")
        return Check.failed(
            f"worker code: {CODE_SHOWN} at {at} on the remote, which the workers run, differs "
            f"from this checkout's: {shown}; commit and push it, or pass --git-ref"
        )
    return Check.passed(
        f"worker code: {CODE_SHOWN} at {at} on the remote is this checkout's ({len(local)} files)"
    )


@dataclass(frozen=True)
class Source:
    """What the checks found on the remote: their results, and the commit the ref names there
    (None when the remote or the ref could not be read), which the launch pins."""

    checks: list[Check]
    commit: str | None = None


def check_source(
    git: GitRunner,
    url: str,
    ref: str,
    local_prompts: bytes,
    local_name: str,
    local_code: dict[str, str] | None,
) -> Source:
    """The access check, then (when the remote can be read) the ref, prompts and code checks."""
    how = (
        f"with the token in {git.access.token_parameter}"
        if git.access.token_parameter
        else "anonymously"
    )
    try:
        refs = git.ls_remote(url)
    except GitError as exc:
        return Source([Check.failed(access_failure(url, git.access, str(exc)))])
    checks = [Check.passed(f"git: {url} can be read {how}, as the worker reads it")]
    if resolve_ref(refs, ref) is None:
        return Source(
            [
                *checks,
                Check.failed(
                    f"git: {url} has no branch, tag or commit {ref!r}: push it "
                    f"(git push origin {ref}), or pass --git-ref"
                ),
            ]
        )
    try:
        fetched = git.fetch(url, ref, WORKER_PROMPTS, WORKER_CODE)
    except GitError as exc:
        return Source([*checks, Check.failed(f"git: cannot fetch {ref!r} from {url} ({exc})")])
    return Source(
        [
            *checks,
            compare_prompts(
                local_prompts, fetched.prompts, local_name=local_name, ref=ref, commit=fetched.commit
            ),
            compare_code(local_code, fetched.code, ref=ref, commit=fetched.commit),
        ],
        fetched.commit,
    )


def _last_line(stderr: bytes) -> str:
    lines = [line.strip() for line in stderr.decode(errors="replace").splitlines()]
    lines = [line for line in lines if line]
    return lines[-1] if lines else ""
