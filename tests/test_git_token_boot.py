"""A worker booting from a private repository: the UserData's first clone and the bootstrap's
fetch get the token from SSM (moto) through the credential helper, from a smart-HTTP remote on
127.0.0.1 that answers 401 without it. The token must reach the server and nothing else: not
the clone URL, the process list, the output or the run's log."""

from __future__ import annotations

import importlib.util
import io
import shutil
import subprocess
from pathlib import Path
from types import ModuleType

import boto3
import pytest
from botocore.exceptions import ClientError

from launcher.gitremote import CREDENTIAL_HELPER
from tests import systemd_units
from tests.git_servers import PrivateHttpGit, git
from tests.support import boot
from tests.support.boot import bootstrap_env, keys, settings_for, write_env_file
from tests.tf_support import skip_reason

# Real processes (workers, the bootstrap): the inner loop skips them with -m 'not slow'.
pytestmark = pytest.mark.slow

bucket = boot.bucket

TOKEN = "github_pat_BOOTsecret_0123456789abcdef"
PARAMETER = "/musicgen/git-token"


@pytest.fixture
def private(remote: tuple[str, Path], aws_env: str):
    bare = Path(remote[0].removeprefix("file://"))
    boto3.client("ssm").put_parameter(Name=PARAMETER, Value=TOKEN, Type="SecureString")
    with PrivateHttpGit(bare.parent, TOKEN) as server:
        yield server, server.url(bare.name.removesuffix(".git"))


def token_settings(tmp_path: Path, url: str, bucket: str, model: Path) -> dict[str, str]:
    settings = settings_for(tmp_path, url, bucket, model)
    # An unusable prompts file ends the worker at once: these tests are about the checkout.
    settings["MUSICGEN_PROMPTS"] = "no-such-prompts.txt"
    settings["MUSICGEN_SHUTDOWN_WHEN_DONE"] = "0"
    settings["MUSICGEN_GIT_TOKEN_PARAMETER"] = PARAMETER
    settings["MUSICGEN_GIT_CREDENTIAL_HELPER"] = str(CREDENTIAL_HELPER)
    return settings


def assert_token_kept_secret(server: PrivateHttpGit, checkout: Path, *texts: str) -> None:
    assert server.authorizations, "the remote never received credentials"
    assert server.process_lists
    for listing in server.process_lists:
        assert TOKEN not in listing
    for text in texts:
        assert TOKEN not in text
    config = subprocess.run(
        ["git", "-C", str(checkout), "config", "--list", "--show-origin"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert TOKEN not in config
    assert "@" not in git("remote", "get-url", "origin", cwd=checkout)


def uploaded_logs(bucket: str) -> str:
    s3 = boto3.client("s3")
    return "".join(
        s3.get_object(Bucket=bucket, Key=key)["Body"].read().decode()
        for key in keys(bucket)
        if key.startswith("logs/")
    )


def test_bootstrap_fetches_a_private_repository_with_the_token(
    tmp_path: Path, remote: tuple[str, Path], private, bucket: str, tiny_model_dir: Path
) -> None:
    server, url = private
    settings = token_settings(tmp_path, url, bucket, tiny_model_dir)
    env_file = write_env_file(tmp_path / "worker.env", settings)

    result = subprocess.run(
        ["bash", str(boot.BOOTSTRAP)],
        env=bootstrap_env(env_file),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )

    # 2: the worker found no prompts file, after the checkout succeeded.
    assert result.returncode == 2, result.stdout + result.stderr
    checkout = Path(settings["MUSICGEN_CHECKOUT_DIR"])
    assert git("rev-parse", "HEAD", cwd=checkout) == git("rev-parse", "HEAD", cwd=remote[1])
    assert git("remote", "get-url", "origin", cwd=checkout) == url
    assert_token_kept_secret(
        server,
        checkout,
        result.stdout,
        result.stderr,
        uploaded_logs(bucket),
        *(p.read_text() for p in Path(settings["MUSICGEN_LOG_DIR"]).iterdir()),
    )


def test_without_the_token_parameter_the_private_repository_is_not_run(
    tmp_path: Path, private, bucket: str, tiny_model_dir: Path
) -> None:
    server, url = private
    settings = token_settings(tmp_path, url, bucket, tiny_model_dir)
    del settings["MUSICGEN_GIT_TOKEN_PARAMETER"]
    env = bootstrap_env(write_env_file(tmp_path / "worker.env", settings))
    env["GIT_TERMINAL_PROMPT"] = "0"

    result = subprocess.run(
        ["bash", str(boot.BOOTSTRAP)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )

    assert result.returncode == 4, result.stdout + result.stderr
    assert server.authorizations == []


def render_user_data(tmp_path: Path, token_parameter: str) -> str:
    return systemd_units.render_user_data(tmp_path / "console", {"git_token_parameter": token_parameter})


needs_terraform = pytest.mark.skipif(skip_reason() is not None, reason=str(skip_reason()))


@needs_terraform
@pytest.mark.parametrize("token_parameter", ["", PARAMETER])
def test_user_data_is_valid_bash(tmp_path: Path, token_parameter: str) -> None:
    script = render_user_data(tmp_path, token_parameter)
    lines = script.splitlines()
    assert f"MUSICGEN_GIT_TOKEN_PARAMETER='{token_parameter}'" in lines
    assert ("git-credential-ssm.py <<'HELPER'" in script) == bool(token_parameter)
    path = tmp_path / "user_data.sh"
    path.write_text(script)
    subprocess.run(["bash", "-n", str(path)], check=True)
    if shutil.which("shellcheck") is None:
        pytest.skip("SHELLCHECK NOT RUN: no `shellcheck` on PATH (apt-get install shellcheck)")
    checked = subprocess.run(["shellcheck", str(path)], capture_output=True, text=True, check=False)
    assert checked.returncode == 0, checked.stdout


def heredoc(script: str, marker: str) -> str:
    start = script.index(f"<<'{marker}'\n") + len(f"<<'{marker}'\n")
    return script[start : script.index(f"\n{marker}\n", start) + 1]


@needs_terraform
def test_the_first_boot_clones_a_private_repository_through_the_installed_helper(
    tmp_path: Path, remote: tuple[str, Path], private, bucket: str, tiny_model_dir: Path
) -> None:
    """The UserData's start script, as the checkout unit runs it, on a machine with no checkout
    yet: its clone gets the token from the helper the UserData installs (beside its aws_retry.py),
    then the bootstrap's checkout runs."""
    server, url = private
    script = render_user_data(tmp_path, PARAMETER)
    helper = tmp_path / "git-credential-ssm.py"
    helper.write_text(heredoc(script, "HELPER"))
    (tmp_path / "aws_retry.py").write_text(heredoc(script, "RETRY"))
    settings = token_settings(tmp_path, url, bucket, tiny_model_dir)
    settings["MUSICGEN_GIT_CREDENTIAL_HELPER"] = str(helper)
    env_file = write_env_file(tmp_path / "worker.env", settings)
    start = tmp_path / "musicgen-worker-start"
    start.write_text(
        heredoc(script, "START").replace("/etc/musicgen-batch/worker.env", str(env_file))
    )

    result = subprocess.run(
        ["bash", str(start), "checkout"],
        env={**bootstrap_env(env_file), "GIT_TERMINAL_PROMPT": "0"},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )

    assert result.returncode == 0, result.stdout + result.stderr
    checkout = Path(settings["MUSICGEN_CHECKOUT_DIR"])
    assert git("rev-parse", "HEAD", cwd=checkout) == git("rev-parse", "HEAD", cwd=remote[1])
    assert_token_kept_secret(server, checkout, result.stdout, result.stderr, uploaded_logs(bucket))


# -- IAM's first minutes: the helper in this process ---------------------------------------------


def load_helper() -> ModuleType:
    spec = importlib.util.spec_from_file_location("git_credential_ssm", CREDENTIAL_HELPER)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class Ssm:
    """GetParameter refused `refusals` times, as SSM refuses a role whose policy it does not see
    yet (AccessDeniedException), then answered."""

    def __init__(self, refusals: int) -> None:
        self.refusals, self.calls = refusals, 0

    def get_parameter(self, Name: str, WithDecryption: bool) -> dict:
        self.calls += 1
        if self.calls <= self.refusals:
            raise ClientError({"Error": {"Code": "AccessDeniedException", "Message": "not authorized"}}, "GetParameter")
        return {"Parameter": {"Name": Name, "Value": TOKEN}}


@pytest.mark.parametrize(
    ("grace", "uptime", "answered", "calls"),
    [("300", 20.0, True, 3), ("300", 3600.0, False, 1), (None, 20.0, False, 1)],
    ids=["first-minutes", "later", "the-launchers-check"],
)
def test_the_helper_tries_a_refusal_again_only_in_an_instances_first_minutes(
    monkeypatch: pytest.MonkeyPatch, grace: str | None, uptime: float, answered: bool, calls: int
) -> None:
    helper = load_helper()
    monkeypatch.setenv("MUSICGEN_GIT_TOKEN_PARAMETER", PARAMETER)
    if grace is not None:
        monkeypatch.setenv("MUSICGEN_IAM_GRACE_S", grace)
    ssm, out, waits = Ssm(refusals=2), io.StringIO(), []
    status = helper.main(["helper", "get"], io.StringIO("protocol=https\n\n"), out, ssm=ssm,
                         uptime=lambda: uptime + sum(waits), sleep=waits.append)
    assert (status == 0) == answered
    assert ssm.calls == calls
    assert (f"password={TOKEN}" in out.getvalue()) == answered
