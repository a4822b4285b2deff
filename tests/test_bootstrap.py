"""worker/instance/bootstrap.sh end to end, without systemd: a file:// copy of this project as the git
remote, moto's S3 server as the bucket, this venv as the AMI's venv and the tiny model. After each
run the boot unit's root script (from the rendered UserData) gets the exit status as the worker
unit leaves it, with a stand-in `systemctl` that records the power-off. One run goes as an
unprivileged user in the folders the units declare, as the checkout unit and a GPU's worker unit
run it."""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest

from tests.imds_stub import ImdsStub
from tests.support import boot
from tests.support.autoscaling import GROUP, group, make_group
from tests.support.boot import (
    BOOTSTRAP,
    PROMPTS,
    bootstrap_env,
    git,
    keys,
    run_boot_unit,
    settings_for,
    write_env_file,
)
from tests.support.worker_process import fake_systemctl
from tests.systemd_units import values, worker_units

# Real processes (workers, the bootstrap): the inner loop skips them with -m 'not slow'.
pytestmark = pytest.mark.slow

bucket = boot.bucket


def run_bootstrap(env_file: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(BOOTSTRAP)],
        env=bootstrap_env(env_file),
        check=False,
        capture_output=True,
        text=True,
        timeout=600,
    )


def stop_post(files: dict[str, str], env_file: Path, status: int, tmp_path: Path) -> None:
    """Run musicgen-worker.service's root script as systemd does on a machine without GPUs, its
    one worker unit leaving `status` in the run folder, as the bootstrap exited; there is no
    Auto Scaling group here, so an end of batch fails to scale in and powers off, which leaves
    tmp_path/shutdown-requested."""
    code, events, output, _ = run_boot_unit(
        files, tmp_path, env_file, gpus=None, statuses=[str(status)], scale_in_status=1
    )
    assert code == status, output
    assert f"worker on GPU 0 exited {status}" in output
    if [e for e in events if e["event"] == "poweroff"]:
        (tmp_path / "shutdown-requested").touch()
    shutil.rmtree(tmp_path / "boot-unit")  # the next boot's


def test_bootstrap_is_valid_bash() -> None:
    subprocess.run(["bash", "-n", str(BOOTSTRAP)], check=True)
    if shutil.which("shellcheck") is None:
        pytest.skip("SHELLCHECK NOT RUN: no `shellcheck` on PATH (apt-get install shellcheck)")
    result = subprocess.run(
        ["shellcheck", str(BOOTSTRAP)], check=False, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout


def test_boot_runs_the_batch_uploads_the_log_and_shuts_down(
    tmp_path: Path,
    remote: tuple[str, Path],
    bucket: str,
    tiny_model_dir: Path,
    user_data_files: dict[str, str],
) -> None:
    url, work = remote
    settings = settings_for(tmp_path, url, bucket, tiny_model_dir)
    env_file = write_env_file(tmp_path / "worker.env", settings)

    first = run_bootstrap(env_file)
    assert first.returncode == 0, first.stdout + first.stderr
    stop_post(user_data_files, env_file, first.returncode, tmp_path)
    found = keys(bucket)
    assert {"calm.wav", "epic.wav", "cost_report.csv"} <= set(found)
    (log_key,) = [k for k in found if k.startswith("logs/")]
    assert log_key.endswith(".log")
    log = boto3.client("s3").get_object(Bucket=bucket, Key=log_key)["Body"].read().decode()
    assert "worker exited 0" in log
    assert (tmp_path / "shutdown-requested").exists()
    checkout = Path(settings["MUSICGEN_CHECKOUT_DIR"])
    assert git("rev-parse", "HEAD", cwd=checkout) == git("rev-parse", "HEAD", cwd=work)

    # The next boot (a spot worker started again): the ref moved and the checkout was modified.
    (work / "NOTES.md").write_text("moved on\n")
    git("add", "NOTES.md", cwd=work)
    git("commit", "--quiet", "-m", "move main", cwd=work)
    git("push", "--quiet", "bare", "main", cwd=work)
    (checkout / "prompts.txt").write_text("local edit that the reset must drop\n")
    (tmp_path / "shutdown-requested").unlink()
    write_env_file(env_file, {**settings, "MUSICGEN_KEEP_ALIVE": "1"})

    second = run_bootstrap(env_file)
    assert second.returncode == 0, second.stdout + second.stderr
    stop_post(user_data_files, env_file, second.returncode, tmp_path)
    assert git("rev-parse", "HEAD", cwd=checkout) == git("rev-parse", "HEAD", cwd=work)
    assert (checkout / "prompts.txt").read_text() == PROMPTS
    assert len([k for k in keys(bucket) if k.startswith("logs/")]) == 2
    assert not (tmp_path / "shutdown-requested").exists()


def test_failed_batch_keeps_the_worker_up(
    tmp_path: Path,
    remote: tuple[str, Path],
    bucket: str,
    tiny_model_dir: Path,
    user_data_files: dict[str, str],
) -> None:
    url, _ = remote
    settings = settings_for(tmp_path, url, bucket, tiny_model_dir)
    settings["MUSICGEN_PROMPTS"] = "no-such-prompts.txt"
    settings["MUSICGEN_KEEP_ALIVE"] = "1"
    env_file = write_env_file(tmp_path / "worker.env", settings)
    result = run_bootstrap(env_file)
    assert result.returncode == 2, result.stdout + result.stderr
    stop_post(user_data_files, env_file, result.returncode, tmp_path)
    assert not (tmp_path / "shutdown-requested").exists()
    (log_key,) = keys(bucket)
    assert log_key.startswith("logs/")


def test_the_time_cap_reaches_the_worker_from_the_env_file(
    tmp_path: Path, remote: tuple[str, Path], bucket: str, tiny_model_dir: Path
) -> None:
    """MUSICGEN_MAX_HOURS goes from worker.env to the worker as it is (here a value it refuses,
    so the run ends before the model loads)."""
    url, _ = remote
    settings = {**settings_for(tmp_path, url, bucket, tiny_model_dir), "MUSICGEN_MAX_HOURS": "0"}
    result = run_bootstrap(write_env_file(tmp_path / "worker.env", settings))
    assert result.returncode == 2, result.stdout + result.stderr
    assert "error: --max-hours/MUSICGEN_MAX_HOURS='0': must be > 0" in result.stdout
    assert "worker exited 2" in result.stdout


def test_unreachable_repository_does_not_run_a_stale_checkout(
    tmp_path: Path, bucket: str, tiny_model_dir: Path
) -> None:
    settings = settings_for(tmp_path, f"file://{tmp_path}/missing.git", bucket, tiny_model_dir)
    result = run_bootstrap(write_env_file(tmp_path / "worker.env", settings))
    assert result.returncode == 4, result.stdout + result.stderr
    assert "not running the worker" in result.stdout
    assert "worker exited" not in result.stdout
    assert [k for k in keys(bucket) if k.startswith("logs/")]


def test_a_shutdown_mid_batch_saves_the_checkpoint_and_still_uploads_the_log(
    tmp_path: Path,
    remote: tuple[str, Path],
    bucket: str,
    tiny_model_dir: Path,
    user_data_files: dict[str, str],
) -> None:
    url, _ = remote
    prompts = tmp_path / "long.txt"
    prompts.write_text("a long ambient piano song ; 120 ; long\n")
    settings = settings_for(tmp_path, url, bucket, tiny_model_dir)
    settings["MUSICGEN_PROMPTS"] = str(prompts)
    env_file = write_env_file(tmp_path / "worker.env", settings)
    # A shutdown: systemd says the system is stopping (systemctl(1), is-system-running), and
    # stopping the unit signals its whole process group, which the test's own group stands in for.
    env = bootstrap_env(env_file)
    env["PATH"] = f"{fake_systemctl(tmp_path / 'systemd-bin', 'stopping')}{os.pathsep}{env['PATH']}"
    boot = subprocess.Popen(
        ["bash", str(BOOTSTRAP)], env=env, start_new_session=True,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        deadline = time.monotonic() + 180
        while not [k for k in keys(bucket) if k.startswith(".checkpoints/")]:
            assert boot.poll() is None and time.monotonic() < deadline, "no window was saved"
            time.sleep(0.2)
        os.killpg(boot.pid, signal.SIGTERM)
        output, _ = boot.communicate(timeout=60)
    finally:
        if boot.poll() is None:
            os.killpg(boot.pid, signal.SIGKILL)
    assert boot.returncode == 3, output
    stop_post(user_data_files, env_file, boot.returncode, tmp_path)
    assert "saved long.wav at window" in output
    (log_key,) = [k for k in keys(bucket) if k.startswith("logs/")]
    log = boto3.client("s3").get_object(Bucket=bucket, Key=log_key)["Body"].read().decode()
    assert "SIGTERM: waiting for the worker" in log and "worker exited 3" in log
    assert "saved long.wav at window" in log
    assert "long.wav" not in keys(bucket)
    assert not (tmp_path / "shutdown-requested").exists()


def run_mode(mode: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(BOOTSTRAP), mode], env=env, capture_output=True, text=True, timeout=300, check=False
    )


def start_script(files: dict[str, str], env_file: Path, folder: Path) -> Path:
    """The units' start script from the rendered UserData, reading `env_file`."""
    script = folder / "musicgen-worker-start"
    script.write_text(files["/usr/local/sbin/musicgen-worker-start"].replace("/etc/musicgen-batch/worker.env", str(env_file)))
    return script


def test_scale_in_needs_nothing_from_git_and_uploads_its_log(
    tmp_path: Path, bucket: str, tiny_model_dir: Path, user_data_files: dict[str, str]
) -> None:
    """musicgen-scale-in.service's ExecStart on an instance whose repository is gone and whose
    checkout is empty: root's end program still takes the instance out of its group, which does
    not replace it, and its log goes up under the instance's id."""
    me, other = make_group(desired=2)
    with ImdsStub(instance_id=me) as imds:
        settings = {
            **settings_for(tmp_path, f"file://{tmp_path}/gone.git", bucket, tiny_model_dir),
            "MUSICGEN_IMDS_ENDPOINT": imds.url,
        }
        env_file = write_env_file(tmp_path / "worker.env", settings)
        result = subprocess.run(
            ["bash", str(start_script(user_data_files, env_file, tmp_path)), "scale-in"],
            env=bootstrap_env(env_file), capture_output=True, text=True, timeout=300, check=False,
        )
    assert result.returncode == 0, result.stdout + result.stderr
    assert not Path(settings["MUSICGEN_CHECKOUT_DIR"]).exists()
    after = group()
    assert after["DesiredCapacity"] == 1 and [i["InstanceId"] for i in after["Instances"]] == [other]
    assert f"scale-in: {me} leaves {GROUP} without replacement" in result.stdout
    (log_key,) = [k for k in keys(bucket) if k.startswith(f"logs/{me}-scale-in-")]
    log = boto3.client("s3").get_object(Bucket=bucket, Key=log_key)["Body"].read().decode()
    assert "without replacement" in log


def test_a_failed_worker_leaves_its_last_error_line_for_the_boot_unit(
    tmp_path: Path, remote: tuple[str, Path], bucket: str, tiny_model_dir: Path
) -> None:
    """GPU 0's worker unit: the worker refuses its input (exit 2) with one `error:` line; its
    status and that line wait in the run folder, where the boot unit reads them."""
    url, _ = remote
    settings = {**settings_for(tmp_path, url, bucket, tiny_model_dir), "MUSICGEN_PROMPTS": "no-such-prompts.txt"}
    env = bootstrap_env(write_env_file(tmp_path / "worker.env", settings))
    assert run_mode("checkout", env).returncode == 0
    result = subprocess.run(["bash", str(BOOTSTRAP), "worker", "0"], env=env, capture_output=True,
                            text=True, timeout=300, check=False)
    assert result.returncode == 2, result.stdout + result.stderr
    run_dir = Path(settings["MUSICGEN_RUN_DIR"])
    assert (run_dir / "gpu0.exit").read_text() == "2\n"
    reason = (run_dir / "gpu0.reason").read_text()
    assert reason.startswith("error: ") and "no-such-prompts.txt" in reason and reason.count("\n") == 1


def test_a_stalled_git_host_ends_the_checkout(
    tmp_path: Path, remote: tuple[str, Path], bucket: str, tiny_model_dir: Path,
    user_data_files: dict[str, str],
) -> None:
    """The checkout unit on a later boot, its git host now accepting connections and never
    answering: with the instance's own settings (the rendered worker.env) git gives up once the
    transfer stays under GIT_HTTP_LOW_SPEED_LIMIT bytes/s for GIT_HTTP_LOW_SPEED_TIME seconds
    (git-config(1), http.lowSpeedLimit and http.lowSpeedTime), the checkout fails with exit 4
    and says why, instead of holding a GPU instance forever."""
    rendered = dict(
        line.split("=", 1) for line in user_data_files["/etc/musicgen-batch/worker.env"].splitlines() if "=" in line
    )
    low_speed = {name: rendered[name].strip("'") for name in ("GIT_HTTP_LOW_SPEED_LIMIT", "GIT_HTTP_LOW_SPEED_TIME")}
    url, _ = remote
    settings = {**settings_for(tmp_path, url, bucket, tiny_model_dir), **low_speed}
    env_file = write_env_file(tmp_path / "worker.env", settings)
    start = start_script(user_data_files, env_file, tmp_path)
    first = subprocess.run(["bash", str(start), "checkout"], env=bootstrap_env(env_file),
                           capture_output=True, text=True, timeout=300, check=False)
    assert first.returncode == 0, first.stdout + first.stderr
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(4)
        stalled = f"http://127.0.0.1:{server.getsockname()[1]}/songs.git"
        write_env_file(env_file, {**settings, "MUSICGEN_REPO_URL": stalled})
        started = time.monotonic()
        result = subprocess.run(["bash", str(start), "checkout"], env=bootstrap_env(env_file),
                                capture_output=True, text=True, timeout=600, check=False)
        took = time.monotonic() - started
    assert result.returncode == 4, result.stdout + result.stderr
    assert took < int(low_speed["GIT_HTTP_LOW_SPEED_TIME"]) + 60, took
    reason = (Path(settings["MUSICGEN_RUN_DIR"]) / "checkout.reason").read_text()
    assert reason.startswith(("error:", "fatal:")), reason


def test_an_unknown_mode_prints_the_usage() -> None:
    result = subprocess.run(["bash", str(BOOTSTRAP), "scale-out"], capture_output=True, text=True, check=False)
    assert (result.returncode, result.stderr) == (2, "usage: bootstrap.sh [checkout | worker GPU_INDEX]\n")


@pytest.fixture
def worker_user() -> Iterator[tuple[int, int]]:
    """A system user made like the AMI's `musicgen` (no login shell, no home), removed after."""
    if os.geteuid() != 0 or shutil.which("useradd") is None or shutil.which("setpriv") is None:
        pytest.skip("UNPRIVILEGED BOOTSTRAP NOT RUN: needs root, useradd and setpriv")
    name = f"mgtest{os.getpid()}"
    options = ["--system", "--user-group", "--no-create-home", "--home-dir", "/nonexistent"]
    subprocess.run(["useradd", *options, "--shell", "/usr/sbin/nologin", name], check=True)
    try:
        entry = pwd.getpwnam(name)
        yield entry.pw_uid, entry.pw_gid
    finally:
        subprocess.run(["userdel", name], check=False)


def as_user(user: tuple[int, int], command: list[str], **kwargs) -> subprocess.CompletedProcess:
    """`command` as the unit runs its ExecStart: the user's ids, no groups, no capabilities at
    all, no_new_privs and UMask=0077."""
    uid, gid = user
    setpriv = ["setpriv", f"--reuid={uid}", f"--regid={gid}", "--clear-groups", "--no-new-privs"]
    setpriv += ["--inh-caps=-all", "--bounding-set=-all", "--"]
    umask = ["bash", "-c", 'umask 0077 && exec "$@"', "bash"]
    return subprocess.run(
        [*setpriv, *umask, *command], capture_output=True, text=True, check=False, **kwargs
    )


def readable_by_others(path: Path) -> bool:
    return all(os.stat(p).st_mode & 0o005 == 0o005 for p in [path, *path.parents])


def venv_for_others(dest: Path) -> Path:
    """A root-owned venv the worker user may run, like the AMI's: this venv itself when others
    can reach its interpreter, else a venv of a system Python of the same version that reads
    this venv's packages (a developer's Python often lives under a private /root)."""
    packages = Path(sysconfig.get_path("purelib"))
    interpreter = Path(os.path.realpath(sys.executable))
    if not readable_by_others(packages):
        pytest.skip(f"UNPRIVILEGED BOOTSTRAP NOT RUN: others cannot read {packages}")
    if readable_by_others(interpreter) and readable_by_others(Path(sys.base_prefix)):
        return Path(sys.prefix)
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    python = shutil.which(version, path="/usr/local/bin:/usr/bin:/bin")
    if python is None:
        pytest.skip(f"UNPRIVILEGED BOOTSTRAP NOT RUN: others cannot run {interpreter}")
    subprocess.run([python, "-m", "venv", "--without-pip", str(dest)], check=True)
    (site,) = dest.glob("lib/python*/site-packages")
    (site / "project-packages.pth").write_text(
        f"import site; site.addsitedir({str(packages)!r})\n"
    )
    return dest


def test_the_unprivileged_worker_writes_only_where_its_unit_allows(
    remote: tuple[str, Path],
    bucket: str,
    tiny_model_dir: Path,
    user_data_files: dict[str, str],
    worker_user: tuple[int, int],
) -> None:
    """The instance's layout under a temporary root: the folders the worker units declare made
    the way systemd and their ExecStartPre make them, the model and the venv root-owned and
    read-only, and the units' ExecStart (clone, then the checkout's bootstrap) run as an
    unprivileged user: the checkout unit's, then GPU 0's worker unit's. They must finish the
    batch and own nothing outside the checkout, the state (spool), cache, log and runtime
    (exit status) folders."""
    units = worker_units(user_data_files)
    unit = units["musicgen-worker@.service"]
    uid, gid = worker_user
    base = Path(tempfile.mkdtemp(prefix="musicgen-instance-"))
    try:
        base.chmod(0o755)
        venv = venv_for_others(base / "opt/musicgen/venv")
        system_dirs = {
            "%S": base / "var/lib", "%C": base / "var/cache", "%L": base / "var/log", "%t": base / "run"
        }
        folders = {}
        declared = (
            ("StateDirectory", "%S"),
            ("CacheDirectory", "%C"),
            ("LogsDirectory", "%L"),
            ("RuntimeDirectory", "%t"),
        )
        for setting, specifier in declared:
            (name,) = values(unit, "Service", setting)
            folder = folders[setting] = system_dirs[specifier] / name
            folder.mkdir(parents=True)
            os.chown(folder, uid, gid)
            folder.chmod(int(values(unit, "Service", f"{setting}Mode")[0], 8))
        writable = list(folders.values())
        (checkout_path,) = values(unit, "Service", "ReadWritePaths")
        checkout = base / checkout_path.lstrip("/")
        checkout.mkdir(parents=True)
        os.chown(checkout, uid, gid)
        checkout.chmod(0o750)
        private_tmp = base / "tmp"
        private_tmp.mkdir()
        os.chown(private_tmp, uid, gid)
        writable += [checkout, private_tmp]

        model = base / "opt/musicgen/models/tiny"
        shutil.copytree(tiny_model_dir, model)
        for path in [model, *model.rglob("*")]:
            path.chmod(0o755 if path.is_dir() else 0o644)
        # A remote the user may read (git refuses a repository owned by someone else).
        url, _ = remote
        source = base / "songs.git"
        shutil.copytree(url.removeprefix("file://"), source)
        for path in [source, *source.rglob("*")]:
            os.chown(path, uid, gid, follow_symlinks=False)

        unit_env = {}
        for line in values(unit, "Service", "Environment"):
            for assignment in line.split():
                key, value = assignment.split("=", 1)
                for specifier, folder in system_dirs.items():
                    value = value.replace(specifier, str(folder))
                unit_env[key] = value.replace("%i", "0")
        settings = {
            **settings_for(base, f"file://{source}", bucket, model),
            "MUSICGEN_CHECKOUT_DIR": str(checkout),
            "MUSICGEN_VENV": str(venv),
            "MUSICGEN_LOG_DIR": str(folders["LogsDirectory"]),
            # The units' RuntimeDirectory, where /run/musicgen-batch would be.
            "MUSICGEN_RUN_DIR": str(folders["RuntimeDirectory"]),
            # The unit asks for the GPU; this machine's torch has none, so the settings file
            # (read after the unit's environment) runs the same worker on the CPU.
            "MUSICGEN_DEVICE": "cpu",
        }
        env_file = write_env_file(base / "worker.env", settings)
        env_file.chmod(0o644)
        state_dir = folders["StateDirectory"]
        env = {
            **bootstrap_env(env_file),
            **unit_env,
            "HOME": str(state_dir),
            "TMPDIR": str(private_tmp),
        }
        # The units' own ExecStart (reading this run's settings file): on a first boot cut short
        # the checkout unit finds a half-made checkout, clears it as the worker and clones, then
        # hands over to the checkout's bootstrap; GPU 0's worker unit then runs the batch.
        (checkout_start,) = values(units["musicgen-checkout.service"], "Service", "ExecStart")
        (worker_start,) = values(unit, "Service", "ExecStart")
        start_program, *checkout_args = checkout_start.split()
        assert worker_start.split()[0] == start_program
        worker_args = [arg.replace("%i", "0") for arg in worker_start.split()[1:]]
        start = base / "musicgen-worker-start"
        start.write_text(
            user_data_files[start_program].replace("/etc/musicgen-batch/worker.env", str(env_file))
        )
        start.chmod(0o755)
        leftover = checkout / "interrupted-clone"
        leftover.write_text("left by a first boot cut short\n")
        os.chown(leftover, uid, gid)
        pulled = as_user(worker_user, [str(start), *checkout_args], env=env, cwd=base, timeout=600)
        assert pulled.returncode == 0, pulled.stdout + pulled.stderr
        assert "commit " in pulled.stdout and not leftover.exists()
        run = as_user(worker_user, [str(start), *worker_args], env=env, cwd=base, timeout=600)
        assert run.returncode == 0, run.stdout + run.stderr
        assert "commit " not in run.stdout  # the checkout unit brought it up to date
        assert {"calm.wav", "epic.wav", "cost_report.csv"} <= set(keys(bucket))

        # The checkout, the spool, the logs and the exit status were written by the worker, as
        # the worker.
        spool = Path(unit_env["MUSICGEN_SPOOL_DIR"])
        cache = Path(unit_env["XDG_CACHE_HOME"])
        logs = [
            *folders["LogsDirectory"].glob("checkout-*.log"), *folders["LogsDirectory"].glob("gpu0-*.log")
        ]
        assert len(logs) == 2, logs
        exit_status = folders["RuntimeDirectory"] / "gpu0.exit"
        assert exit_status.read_text() == "0\n"
        for path in (checkout / ".git", spool, *logs, exit_status):
            assert path.stat().st_uid == uid, path
        assert spool.is_relative_to(state_dir)
        # The cache is the user's to write; the model and the venv are not.
        probe = as_user(worker_user, ["touch", str(cache / "probe")], env=env)
        assert probe.returncode == 0, probe.stderr
        for read_only in (model / "probe", model / "config.json", venv / "probe"):
            denied = as_user(worker_user, ["touch", str(read_only)], env=env)
            assert denied.returncode != 0 and "Permission denied" in denied.stderr, read_only
        # Nothing the worker owns lies outside the folders the unit declares writable.
        owned = [
            p for p in base.rglob("*") if p.lstat().st_uid == uid and not p.is_relative_to(source)
        ]
        assert owned
        assert [p for p in owned if not any(p.is_relative_to(w) for w in writable)] == []

        # The boot unit's root script then powers the instance off: every song exists.
        stop_post(user_data_files, env_file, int(exit_status.read_text()), base)
        assert (base / "shutdown-requested").exists()
    finally:
        shutil.rmtree(base, ignore_errors=True)
