"""The git checks against real remotes on 127.0.0.1: `git daemon` for a public repository,
git's smart-HTTP backend behind basic auth for a private one, moto's SSM for the token. The
user's checkout is the remote's working clone: its prompts.txt and its worker/ on disk."""

from __future__ import annotations

import base64
import subprocess
import sys
from pathlib import Path

import boto3
import pytest

from launcher.checks import Check
from launcher.gitinfo import worktree_blobs
from launcher.gitremote import (
    CREDENTIAL_HELPER,
    WORKER_CODE,
    Access,
    GitRunner,
    Source,
    access_failure,
    check_source,
    compare_code,
    compare_prompts,
    credential_args,
    resolve_ref,
)
from tests.git_servers import GitDaemon, PrivateHttpGit, Remotes, free_port, git

PROMPTS = "calm piano ; 180 ; calm\nepic drums ; 200 ; epic.wav\n"
TOKEN = "ghp_preflightSECRETtoken0123456789"
PARAMETER = "/musicgen/git-token"
ANONYMOUS = Access()


CODE = {
    "worker/__init__.py": "",
    "worker/run.py": "print('generating')\n",
    "contract/__init__.py": "",
}


@pytest.fixture
def songs(tmp_path: Path) -> Remotes:
    return Remotes(tmp_path, "songs", {"prompts.txt": PROMPTS, "README.md": "songs\n", **CODE})


@pytest.fixture
def daemon(songs: Remotes):
    with GitDaemon(songs.base) as server:
        yield server


def local_prompts(songs: Remotes) -> bytes:
    return (songs.work / "prompts.txt").read_bytes()


def blob_id(text: str) -> str:
    return subprocess.run(
        ["git", "hash-object", "--stdin"], input=text, capture_output=True, text=True, check=True
    ).stdout.strip()


def run_source(
    url: str, ref: str, local: bytes, access: Access = ANONYMOUS, checkout: Path | None = None
) -> Source:
    """The checks as the launcher runs them, with `checkout`'s worker/ on disk as the user's
    code; without one, CODE as the remote's first commit holds it."""
    if checkout is None:
        code = {path: blob_id(text) for path, text in CODE.items()}
    else:
        code = worktree_blobs(checkout, WORKER_CODE)
    return check_source(GitRunner(access), url, ref, local, "prompts.txt", code)


def run_check(url: str, ref: str, local: bytes, access: Access = ANONYMOUS) -> list[Check]:
    return run_source(url, ref, local, access).checks


@pytest.mark.parametrize(
    ("ref", "expected"),
    [
        ("main", "a" * 40),
        ("v1", "c" * 40),  # an annotated tag: the commit it points to
        ("light", "d" * 40),
        ("refs/heads/main", "a" * 40),
        ("1234abcd", "1234abcd"),  # a commit id: the fetch proves it
        ("feature", None),
        ("v2", None),
        ("12z4abcd", None),
    ],
)
def test_resolve_ref(ref: str, expected: str | None) -> None:
    refs = {
        "HEAD": "a" * 40,
        "refs/heads/main": "a" * 40,
        "refs/tags/v1": "b" * 40,
        "refs/tags/v1^{}": "c" * 40,
        "refs/tags/light": "d" * 40,
    }
    assert resolve_ref(refs, ref) == expected


def test_compare_prompts() -> None:
    commit = "0123456789abcdef" * 2 + "01234567"
    same = compare_prompts(
        b"a;1;b\n", b"a;1;b\n", local_name="prompts.txt", ref="main", commit=commit
    )
    assert same == Check.passed(
        "prompts: prompts.txt is prompts.txt at main (0123456789ab) on the remote"
    )
    differs = compare_prompts(b"x", b"y", local_name="mine.txt", ref="main", commit=commit)
    assert differs == Check.failed(
        "prompts: mine.txt differs from prompts.txt at main (0123456789ab) on the remote, which "
        "the worker runs: commit and push it, or pass --git-ref"
    )
    missing = compare_prompts(b"x", None, local_name="prompts.txt", ref="v1", commit=commit)
    assert not missing.ok and "the remote has no prompts.txt at v1" in missing.line


def test_a_clean_pushed_ref_passes(songs: Remotes, daemon: GitDaemon) -> None:
    commit = git("rev-parse", "HEAD", cwd=songs.work)

    checks = run_check(daemon.url("songs"), "main", local_prompts(songs))

    assert checks == [
        Check.passed(f"git: {daemon.url('songs')} can be read anonymously, as the worker reads it"),
        Check.passed(f"prompts: prompts.txt is prompts.txt at main ({commit[:12]}) on the remote"),
        Check.passed(
            f"worker code: worker/ and contract/ at main ({commit[:12]}) on the remote is this "
            "checkout's (3 files)"
        ),
    ]


def test_a_tag_and_a_commit_id_pass(songs: Remotes, daemon: GitDaemon) -> None:
    commit = git("rev-parse", "HEAD", cwd=songs.work)
    git("tag", "-a", "-m", "release", "v1", cwd=songs.work)
    songs.push("v1")

    for ref in ("v1", commit):
        checks = run_check(daemon.url("songs"), ref, local_prompts(songs))
        assert [c.ok for c in checks] == [True, True, True], checks
        assert f"({commit[:12]})" in checks[1].line


def test_an_uncommitted_edit_is_refused(songs: Remotes, daemon: GitDaemon) -> None:
    (songs.work / "prompts.txt").write_text(PROMPTS + "new song ; 60 ; new\n")

    checks = run_check(daemon.url("songs"), "main", local_prompts(songs))

    assert [c.ok for c in checks] == [True, False, True]
    assert "prompts.txt differs from prompts.txt at main" in checks[1].line
    assert checks[1].line.endswith("commit and push it, or pass --git-ref")


def test_a_commit_that_is_not_pushed_is_refused_until_it_is(
    songs: Remotes, daemon: GitDaemon
) -> None:
    commit = songs.commit("prompts.txt", PROMPTS + "new song ; 60 ; new\n")

    refused = run_check(daemon.url("songs"), "main", local_prompts(songs))
    songs.push()
    accepted = run_check(daemon.url("songs"), "main", local_prompts(songs))

    assert [c.ok for c in refused] == [True, False, True]
    assert "differs from prompts.txt at main" in refused[1].line
    assert [c.ok for c in accepted] == [True, True, True]
    assert f"({commit[:12]})" in accepted[1].line


def test_a_missing_ref_is_refused(songs: Remotes, daemon: GitDaemon) -> None:
    checks = run_check(daemon.url("songs"), "saturday-batch", local_prompts(songs))

    assert checks[1] == Check.failed(
        f"git: {daemon.url('songs')} has no branch, tag or commit 'saturday-batch': push it "
        "(git push origin saturday-batch), or pass --git-ref"
    )
    unknown_commit = run_check(daemon.url("songs"), "0" * 40, local_prompts(songs))
    assert not unknown_commit[1].ok
    assert unknown_commit[1].line.startswith(f"git: cannot fetch '{'0' * 40}'")


def test_a_repository_without_prompts_is_refused(tmp_path: Path) -> None:
    code_only = Remotes(tmp_path, "code", {"README.md": "no songs here\n"})
    with GitDaemon(code_only.base) as daemon:
        checks = run_check(daemon.url("code"), "main", PROMPTS.encode())
    assert not checks[1].ok and "the remote has no prompts.txt at main" in checks[1].line


def test_an_unreachable_remote_is_refused() -> None:
    url = f"git://127.0.0.1:{free_port()}/songs.git"
    (check,) = run_check(url, "main", b"")
    assert not check.ok
    assert check.line.startswith(f"git: cannot read {url} (")
    assert check.line.endswith("); check the URL and the network")


@pytest.mark.parametrize(
    ("error", "advice"),
    [
        (
            "fatal: could not read Username for 'https://github.com': terminal prompts disabled",
            "make the repository public",
        ),
        ("remote: Repository not found.", "make the repository public"),
        (
            "fatal: Authentication failed for 'https://gitlab.com/me/songs.git/'",
            "make the repository public",
        ),
        (
            "fatal: unable to access 'https://x/': The requested URL returned error: 403",
            "make the repository public",
        ),
        (
            "fatal: unable to access 'https://x/': Could not resolve host: x",
            "check the URL and the network",
        ),
    ],
)
def test_access_failure_names_the_fix(error: str, advice: str) -> None:
    assert advice in access_failure("https://x/songs.git", ANONYMOUS, error)
    with_token = access_failure("https://x/songs.git", Access(PARAMETER, "us-east-1"), error)
    assert (f"with the token in SSM parameter {PARAMETER}" in with_token) == (
        advice != "check the URL and the network"
    )


@pytest.fixture
def user_credentials(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The user's own git setup knows the token (a credential store in ~/.git-credentials): the
    check must not use it, because the worker will not have it."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    (home / ".gitconfig").write_text("[credential]\n\thelper = store\n")
    return home


def test_a_remote_that_needs_credentials_is_refused_and_named(
    songs: Remotes, user_credentials: Path
) -> None:
    with PrivateHttpGit(songs.base, TOKEN) as private:
        url = private.url("songs")
        (user_credentials / ".git-credentials").write_text(
            f"http://reader:{TOKEN}@127.0.0.1:{private.port}\n"
        )
        checks = run_check(url, "main", local_prompts(songs))

    (check,) = checks
    assert not check.ok
    assert check.line.startswith(f"git: the worker clones anonymously and could not read {url} (")
    assert check.line.endswith(
        "make the repository public, or store a read-only token in SSM Parameter Store and "
        "pass --git-token-parameter NAME"
    )
    assert private.authorizations == []


def test_the_token_from_ssm_opens_the_private_remote_and_never_shows(
    songs: Remotes, aws_env: str
) -> None:
    boto3.client("ssm").put_parameter(Name=PARAMETER, Value=TOKEN, Type="SecureString")
    access = Access(PARAMETER, "us-east-1")
    commit = git("rev-parse", "HEAD", cwd=songs.work)

    with PrivateHttpGit(songs.base, TOKEN) as private:
        url = private.url("songs")
        checks = run_check(url, "main", local_prompts(songs), access)

    assert checks == [
        Check.passed(
            f"git: {url} can be read with the token in {PARAMETER}, as the worker reads it"
        ),
        Check.passed(f"prompts: prompts.txt is prompts.txt at main ({commit[:12]}) on the remote"),
        Check.passed(
            f"worker code: worker/ and contract/ at main ({commit[:12]}) on the remote is this "
            "checkout's (3 files)"
        ),
    ]
    assert private.authorizations and private.process_lists
    assert all(TOKEN in _password(header) for header in private.authorizations)
    for listing in private.process_lists:
        assert TOKEN not in listing
    assert TOKEN not in " ".join(credential_args(access)) + url
    assert all(TOKEN not in c.line for c in checks)


def test_a_wrong_token_is_refused_without_showing_it(songs: Remotes, aws_env: str) -> None:
    boto3.client("ssm").put_parameter(Name=PARAMETER, Value="wrong-token", Type="SecureString")

    with PrivateHttpGit(songs.base, TOKEN) as private:
        (check,) = run_check(private.url("songs"), "main", b"", Access(PARAMETER, "us-east-1"))

    assert not check.ok
    assert f"with the token in SSM parameter {PARAMETER}" in check.line
    assert "wrong-token" not in check.line


def test_the_helper_answers_only_get(monkeypatch: pytest.MonkeyPatch) -> None:
    helper = CREDENTIAL_HELPER
    store = subprocess.run(
        [sys.executable, str(helper), "store"],
        input="password=x\n",
        capture_output=True,
        text=True,
        check=False,
    )
    assert (store.returncode, store.stdout) == (0, "")
    monkeypatch.delenv("MUSICGEN_GIT_TOKEN_PARAMETER", raising=False)
    get = subprocess.run(
        [sys.executable, str(helper), "get"],
        input="host=x\n\n",
        capture_output=True,
        text=True,
        check=False,
    )
    assert get.returncode == 1 and "MUSICGEN_GIT_TOKEN_PARAMETER is not set" in get.stderr


def _password(header: str) -> str:
    return base64.b64decode(header.removeprefix("Basic ")).decode().partition(":")[2]


def test_git_settings_of_a_hook_or_alias_do_not_leak_in(
    songs: Remotes, daemon: GitDaemon, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Run from a git hook, the launcher inherits GIT_DIR and the caller's `-c` settings."""
    monkeypatch.setenv("GIT_DIR", str(tmp_path / "elsewhere.git"))
    monkeypatch.setenv("GIT_CONFIG_PARAMETERS", "'url.file:///nowhere/.insteadof'='git://'")

    checks = run_check(daemon.url("songs"), "main", local_prompts(songs))

    assert [c.ok for c in checks] == [True, True, True], checks
    assert not (tmp_path / "elsewhere.git").exists()


def test_an_unpushed_commit_to_the_worker_code_is_refused_until_it_is_pushed(
    songs: Remotes, daemon: GitDaemon
) -> None:
    """The prompts are pushed, the worker code the user tested is not: the instances would run
    the older code, so the launch is refused until the commit is on the remote."""
    commit = songs.commit("worker/run.py", "print('generating, faster')\n")

    refused = run_source(daemon.url("songs"), "main", local_prompts(songs), checkout=songs.work)
    songs.push()
    accepted = run_source(daemon.url("songs"), "main", local_prompts(songs), checkout=songs.work)

    assert [c.ok for c in refused.checks] == [True, True, False]
    assert refused.checks[2].line.endswith(
        "on the remote, which the workers run, differs from this checkout's: worker/run.py; "
        "commit and push it, or pass --git-ref"
    )
    assert [c.ok for c in accepted.checks] == [True, True, True]
    # The launch pins the commit the remote's main names now: the one just pushed.
    assert accepted.commit == commit


def test_uncommitted_and_untracked_worker_code_is_refused_and_ignored_files_are_not(
    songs: Remotes, daemon: GitDaemon
) -> None:
    (songs.work / ".gitignore").write_text("__pycache__/\n")
    (songs.work / "worker" / "__pycache__").mkdir()
    (songs.work / "worker" / "__pycache__" / "run.cpython-311.pyc").write_bytes(b"\0")
    assert run_source(
        daemon.url("songs"), "main", local_prompts(songs), checkout=songs.work
    ).checks[2].ok

    (songs.work / "worker" / "run.py").write_text("print('edited, not committed')\n")
    (songs.work / "worker" / "extra.py").write_text("")

    checks = run_source(daemon.url("songs"), "main", local_prompts(songs), checkout=songs.work).checks

    assert not checks[2].ok
    assert "differs from this checkout's: worker/extra.py, worker/run.py;" in checks[2].line


def test_the_contract_the_workers_import_is_compared_too(songs: Remotes, daemon: GitDaemon) -> None:
    (songs.work / "contract" / "bucket.py").write_text("REPORT_KEY = 'elsewhere.csv'\n")

    checks = run_source(daemon.url("songs"), "main", local_prompts(songs), checkout=songs.work).checks

    assert not checks[2].ok
    assert "differs from this checkout's: contract/bucket.py;" in checks[2].line


def test_worker_code_differences_are_named_a_few_at_a_time() -> None:
    remote = {f"worker/m{n}.py": "a" * 40 for n in range(5)}
    local = {**remote, "worker/m0.py": "b" * 40, "worker/new.py": "c" * 40}
    del local["worker/m4.py"]

    check = compare_code(local, remote, ref="main", commit="f" * 40)

    assert check == Check.failed(
        "worker code: worker/ and contract/ at main (ffffffffffff) on the remote, which the workers run, "
        "differs from this checkout's: worker/m0.py, worker/m4.py, worker/new.py; commit and "
        "push it, or pass --git-ref"
    )
    many = compare_code({}, remote, ref="main", commit="f" * 40)
    assert "worker/m0.py, worker/m1.py, worker/m2.py (and 2 more)" in many.line


def test_outside_a_checkout_the_worker_code_is_not_compared(tmp_path: Path) -> None:
    assert worktree_blobs(tmp_path, WORKER_CODE) is None
    check = compare_code(None, {}, ref="main", commit="f" * 40)
    assert check.ok and check.warning
