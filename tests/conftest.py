"""Shared fixtures: a real moto server on loopback, per-test AWS settings pointing at it, a tiny
random MusicGen saved to disk, and the launcher's harness (tests/support/launcher.py).

Helpers that tests import live in tests/support/ and the helper modules beside this file; no test
module imports another (tests/test_layout.py checks it)."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings
from moto.server import ThreadedMotoServer

from launcher import aws
from tests.git_servers import GitDaemon, Remotes
from tests.support.boot import make_remote
from tests.support.fake_terraform import FakeTerraform
from tests.support.launcher import (
    CALM_MARKET,
    PACKER_AMI_NAME,
    PROMPTS,
    Launcher,
    WorkerSource,
    rewrite_git_urls,
    worker_code,
)
from tests.support.terraform_launch import TerraformLaunch, terraform_launch

TEST_REGION = "us-east-1"

# `make test` loads ci: every property test's own example count (tests/support/examples.py scales
# it to the profile), the same examples on every run. `make test-quick` loads dev: a tenth of them.
settings.register_profile("ci", max_examples=100, derandomize=True)
settings.register_profile("dev", max_examples=10)
settings.load_profile("ci")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests that change or destroy the shared real-terraform launch run last, by their marker's
    `step`, whatever order the files were named in: every other check reads it as launched."""
    last = [item for item in items if item.get_closest_marker("changes_shared_launch")]
    if last:
        last.sort(key=lambda item: item.get_closest_marker("changes_shared_launch").kwargs["step"])
        items[:] = [item for item in items if item not in last] + last


@pytest.fixture(scope="session")
def moto_server() -> Iterator[str]:
    """A moto server on 127.0.0.1 (a free port): real HTTP, real boto3 code paths."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def aws_env(moto_server: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """Point boto3 (and terraform, and child processes) at a freshly reset moto server."""
    request = urllib.request.Request(f"{moto_server}/moto-api/reset", method="POST")
    urllib.request.urlopen(request).close()
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_server)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_REGION", TEST_REGION)
    monkeypatch.setenv("AWS_DEFAULT_REGION", TEST_REGION)
    return moto_server


@pytest.fixture(scope="session")
def tiny_model_dir() -> Path:
    """A tiny random MusicGen saved with save_pretrained, loaded like facebook/musicgen-small
    (saved once per checkout: tests/support/tiny_models.py). Tests only read it."""
    from tests.support.tiny_models import cached_tiny_model

    return cached_tiny_model()


@pytest.fixture(scope="session")
def tiny_stereo_model_dir() -> Path:
    """The same, stereo: audio_channels=2 and 8 interleaved codebooks, like musicgen-stereo-*."""
    from tests.support.tiny_models import cached_tiny_model

    return cached_tiny_model(audio_channels=2)


@pytest.fixture(scope="session")
def loaded_tiny_engine(tiny_model_dir: Path):
    """The tiny model loaded once per test process. Tests take views of it (`with_params`, or
    `tiny_engine`), never change it."""
    from worker.engine.engine import Engine

    return Engine.from_pretrained(str(tiny_model_dir))


@pytest.fixture(scope="session")
def loaded_tiny_stereo_engine(tiny_stereo_model_dir: Path):
    """The stereo tiny model, loaded once per test process."""
    from worker.engine.engine import Engine

    return Engine.from_pretrained(str(tiny_stereo_model_dir))


@pytest.fixture(scope="session")
def tiny_engine_in(tiny_model_dir: Path):
    """tiny_engine_in(dtype): the tiny model loaded in `dtype` (a name from
    worker.engine.precision.DTYPE_CHOICES), once per dtype per test process; a view per call."""
    from worker.engine.engine import Engine
    from worker.settings import GenerationParams

    loaded = {}

    def engine(dtype: str):
        if dtype not in loaded:
            loaded[dtype] = Engine.from_pretrained(str(tiny_model_dir), dtype=dtype)
        return loaded[dtype].with_params(GenerationParams())

    return engine


@pytest.fixture
def tiny_engine(loaded_tiny_engine):
    """The loaded tiny engine with default settings, as a view of its own: a test may change
    the view's settings, device or dtype without touching other tests' engines."""
    from worker.settings import GenerationParams

    return loaded_tiny_engine.with_params(GenerationParams())


@pytest.fixture(autouse=True)
def one_torch_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    """One torch thread in this process and in the workers it starts (OMP_NUM_THREADS, which
    the worker's default follows): test processes share a few busy cores, and torch processes
    each running a thread per core fight over them. The worker's choice of threads is tested
    with its own settings (tests/test_precision.py)."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    torch = sys.modules.get("torch")  # a test that imports torch later gets it from the variable
    if torch is not None:
        torch.set_num_threads(1)


@pytest.fixture
def project_on_pythonpath(monkeypatch: pytest.MonkeyPatch) -> None:
    """Child Pythons import this checkout's packages as its editable install (`make install`)
    does, also where the Python running the tests has not installed the project."""
    checkout = str(Path(__file__).resolve().parent.parent)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [checkout, os.environ.get("PYTHONPATH")])))


@pytest.fixture(autouse=True)
def worker_env(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """No test inherits the developer's worker settings or writes a spool into the checkout."""
    for name in list(os.environ):
        if name.startswith("MUSICGEN_") or name == "HOURLY_COST_USD":
            monkeypatch.delenv(name)
    monkeypatch.setenv("MUSICGEN_SPOOL_DIR", str(tmp_path_factory.mktemp("spool")))


@pytest.fixture(scope="session")
def user_data_script(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The worker's UserData, rendered from the module's own templatefile call by the real
    terraform binary."""
    from tests import systemd_units, tf_support

    if tf_support.terraform_binary() is None:
        pytest.skip("USERDATA NOT RENDERED: no `terraform` binary on PATH")
    return systemd_units.render_user_data(tmp_path_factory.mktemp("user-data"))


@pytest.fixture(scope="session")
def user_data_files(user_data_script: str) -> dict[str, str]:
    """Every file the UserData writes: units, drop-ins, root helpers, settings."""
    from tests import systemd_units

    return systemd_units.written_files(user_data_script)
@pytest.fixture(scope="module")
def remote(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    """The worker's git remote for a boot (tests/support/boot.py): a bare file:// repository of
    this project's files plus a prompts file, and a working clone to push changes from. One per
    module: a module may push to it."""
    return make_remote(tmp_path_factory.mktemp("remote"))


@pytest.fixture(autouse=True)
def restore_signal_handlers() -> Iterator[None]:
    """The worker installs its own SIGINT/SIGTERM handlers; each test leaves the next the handlers
    it found, whatever they were when pytest started (under `nohup make test &` the shell starts
    it with SIGINT ignored)."""
    saved = {number: signal.getsignal(number) for number in (signal.SIGINT, signal.SIGTERM)}
    yield
    for number, handler in saved.items():
        signal.signal(number, handler)


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    """The worker's main() points the root logger at the stderr of its moment (a test's capture);
    a later test must not log into that closed stream."""
    import logging

    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.fixture
def refused(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch):
    """Run the worker on a one-song prompts file with extra options and environment; assert it
    exits 2 without loading a model and return what it wrote on stderr."""
    from worker.cli import main

    def never(model):
        raise AssertionError("model loaded")

    def run(argv: list[str], env: dict[str, str]) -> str:
        prompts = tmp_path / "p.txt"
        prompts.write_text("a;1;a\n")
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        output = ["--output", str(tmp_path / "o")]
        assert main(["--prompts", str(prompts), *output, *argv], load_engine=never) == 2
        return capsys.readouterr().err

    return run


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The user's current directory: prompts.txt and a terraform/ root beside it."""
    work = tmp_path / "work"
    (work / "terraform").mkdir(parents=True)
    (work / "prompts.txt").write_text(PROMPTS)
    monkeypatch.chdir(work)
    monkeypatch.setenv("MUSICGEN_TERRAFORM_DIR", str(work / "terraform"))
    return work


@pytest.fixture
def terraform(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeTerraform:
    return FakeTerraform.install(tmp_path, monkeypatch)


def serve_worker_repository(root: Path) -> tuple[Remotes, GitDaemon]:
    """main of the worker's repository (PROMPTS and this checkout's worker code) and the git
    daemon that serves it, not started yet."""
    repo = Remotes(root, "musicgen-batch", {"prompts.txt": PROMPTS, **worker_code()})
    return repo, GitDaemon(repo.base)


@pytest.fixture(scope="session")
def shared_worker_repository(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Remotes, GitDaemon]]:
    """One served repository for every launcher test that only reads it (per xdist worker)."""
    repo, daemon = serve_worker_repository(tmp_path_factory.mktemp("remote"))
    with daemon:
        yield repo, daemon


@pytest.fixture
def source(
    aws_env: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> Iterator[WorkerSource]:
    """main of https://github.com/example/musicgen-batch.git holds PROMPTS and this checkout's
    worker code; a Packer AMI exists in us-east-1 (moto registers it now, so its age is 0 against
    the tests' earlier clock). The repository is the session's, read only; a test marked
    `pushes` gets one of its own."""
    ec2 = aws.ec2_client("us-east-1")
    ami_id = ec2.register_image(Name=PACKER_AMI_NAME, RootDeviceName="/dev/sda1")["ImageId"]
    vpc = ec2.describe_vpcs(Filters=[{"Name": "is-default", "Values": ["true"]}])["Vpcs"][0]
    with contextlib.ExitStack() as stack:
        if request.node.get_closest_marker("pushes"):
            repo, daemon = serve_worker_repository(tmp_path / "remote")
            stack.enter_context(daemon)
        else:
            repo, daemon = request.getfixturevalue("shared_worker_repository")
        rewrite_git_urls(
            monkeypatch, "https://github.com/example/", f"git://127.0.0.1:{daemon.port}/"
        )
        yield WorkerSource(repo, daemon, ami_id, vpc["VpcId"])


@pytest.fixture
def launcher(
    aws_env: str, workdir: Path, terraform: FakeTerraform, source: WorkerSource
) -> Launcher:
    return Launcher(prices=CALM_MARKET)


@pytest.fixture(scope="session")
def shared_terraform_launch(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TerraformLaunch]:
    """The real-terraform tier's one deployment (tests/support/terraform_launch.py): launched on
    first use, destroyed at the session's end unless a test destroyed it."""
    from tests import tf_support

    if tf_support.skip_reason() is not None:
        pytest.skip(tf_support.skip_reason())
    with terraform_launch(tmp_path_factory.mktemp("real-terraform")) as launch:
        yield launch
