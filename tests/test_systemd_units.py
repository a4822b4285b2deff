"""The worker's systemd units, rendered from the real UserData template: `systemd-analyze verify`,
`systemd-analyze security --offline=yes --threshold=40` on every worker unit (a per-GPU template
unit included, whatever its name after `musicgen-worker`), the sandbox settings themselves, what
runs as root, where secrets may come from, and the root helper that powers off after a batch."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.systemd_units import (
    UNIT_DIR,
    exec_programs,
    instance_name,
    unit_names,
    unit_root,
    unit_with_dropins,
    values,
    worker_units,
)

pytestmark = pytest.mark.skipif(
    shutil.which("systemd-analyze") is None,
    reason="SYSTEMD UNITS NOT ANALYZED: no `systemd-analyze` (apt-get install systemd)",
)

ENV_FILE = "/etc/musicgen-batch/worker.env"
CHECKOUT = "/opt/musicgen/app"
MAX_EXPOSURE = 4.0
SECRET_NAME = re.compile(r"TOKEN|SECRET|PASSW|CREDENTIAL|PRIVATE|ACCESS_KEY|_KEY\b", re.IGNORECASE)
# Settings that only say where a secret is kept (an SSM parameter's name, the helper that reads
# it), never the secret itself.
SECRET_REFERENCE = re.compile(r"_(PARAMETER|HELPER)$")
# What the sandbox must hold, setting by setting.
REQUIRED = {
    "NoNewPrivileges": "yes",
    "ProtectSystem": "strict",
    "ProtectHome": "yes",
    "PrivateTmp": "yes",
    "ProtectKernelTunables": "yes",
    "ProtectKernelModules": "yes",
    "ProtectKernelLogs": "yes",
    "ProtectControlGroups": "yes",
    "ProtectClock": "yes",
    "ProtectHostname": "yes",
    "RestrictNamespaces": "yes",
    "RestrictRealtime": "yes",
    "RestrictSUIDSGID": "yes",
    "LockPersonality": "yes",
    "CapabilityBoundingSet": "",
    "SystemCallArchitectures": "native",
    "DevicePolicy": "closed",
    "UMask": "0077",
}


AMI_SYSTEMD = 249
# The systemd release that introduced each [Service] setting the worker units use (0: older than
# any systemd still shipped).
SERVICE_SETTING_SINCE = {
    **dict.fromkeys(
        [
            "Type",
            "Restart",
            "ExecStart",
            "ExecStartPre",
            "ExecStopPost",
            "TimeoutStopSec",
            "StandardOutput",
            "StandardError",
            "User",
            "Group",
            "UMask",
            "Environment",
            "EnvironmentFile",
            "PrivateTmp",
            "CapabilityBoundingSet",
            "DevicePolicy",
            "DeviceAllow",
            "RemainAfterExit",
        ],
        0,
    ),
    "NoNewPrivileges": 187,
    "SystemCallFilter": 187,
    "SystemCallErrorNumber": 187,
    "RestrictAddressFamilies": 211,
    "SystemCallArchitectures": 213,
    "ProtectHome": 214,
    "AmbientCapabilities": 229,
    "ReadWritePaths": 231,
    "RestrictRealtime": 231,
    "ProtectSystem": 232,  # "strict"
    "ProtectKernelTunables": 232,
    "ProtectKernelModules": 232,
    "ProtectControlGroups": 232,
    "RemoveIPC": 232,
    "RestrictNamespaces": 233,
    "StateDirectory": 235,
    "StateDirectoryMode": 235,
    "CacheDirectory": 235,
    "CacheDirectoryMode": 235,
    "LogsDirectory": 235,
    "LogsDirectoryMode": 235,
    "LockPersonality": 235,
    "KeyringMode": 235,
    "PrivateMounts": 239,
    "RestrictSUIDSGID": 242,
    "ProtectHostname": 242,
    "ProtectKernelLogs": 244,
    "ProtectClock": 245,
    "ProtectProc": 247,
    "LoadCredential": 247,
    "SetCredential": 247,
}


def analyze(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["systemd-analyze", *args], capture_output=True, text=True, check=False, timeout=120
    )


@pytest.fixture(scope="module")
def root(user_data_files: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Path:
    return unit_root(tmp_path_factory.mktemp("unit-root"), user_data_files)


@pytest.fixture(scope="module")
def workers(user_data_files: dict[str, str]) -> dict[str, dict]:
    found = worker_units(user_data_files)
    assert "musicgen-worker.service" in found or "musicgen-worker@.service" in found, found
    return found


def test_systemd_analyze_is_at_least_the_amis_systemd() -> None:
    """The AMI (Ubuntu 22.04) runs systemd 249; checks made with an older one could miss a
    setting's meaning."""
    version = int(analyze("--version").stdout.split()[1])
    assert version >= AMI_SYSTEMD


def test_worker_units_use_only_settings_the_amis_systemd_knows(workers: dict[str, dict]) -> None:
    """systemd ignores a setting it does not know (with a log line): a sandbox setting newer than
    the AMI's systemd would silently not apply there."""
    for name, unit in workers.items():
        for key, _ in unit["Service"]:
            assert key in SERVICE_SETTING_SINCE, f"{name}: add {key}'s systemd version to the table"
            assert SERVICE_SETTING_SINCE[key] <= AMI_SYSTEMD, (name, key)


def test_user_data_writes_every_file_literally(user_data_script: str) -> None:
    """Only quoted heredocs: the units and helpers are written byte for byte as reviewed."""
    assert not re.findall(r"<<-?\s*[A-Za-z_]", user_data_script)
    assert f"{UNIT_DIR}/musicgen-worker.service" in user_data_script


def test_every_unit_passes_systemd_analyze_verify(
    user_data_files: dict[str, str], root: Path
) -> None:
    names = unit_names(user_data_files)
    assert names
    for name in map(instance_name, names):
        result = analyze("verify", f"--root={root}", name)
        output = result.stdout + result.stderr
        assert result.returncode == 0, output
        assert "musicgen" not in output, output


def test_every_worker_unit_has_an_exposure_of_4_or_less(
    workers: dict[str, dict], root: Path
) -> None:
    for name in map(instance_name, workers):
        result = analyze("security", "--offline=yes", "--threshold=40", f"--root={root}", name)
        assert result.returncode == 0, result.stdout + result.stderr
        overall = rf"Overall exposure level for {re.escape(name)}: ([\d.]+)"
        (level,) = re.findall(overall, result.stdout)
        assert float(level) <= MAX_EXPOSURE, result.stdout


def test_the_unscored_baseline_would_fail_the_threshold(root: Path, tmp_path: Path) -> None:
    """The threshold check can fail: the worker unit without its sandbox rates UNSAFE."""
    bare = tmp_path / "root"
    shutil.copytree(root, bare, symlinks=True)
    shutil.rmtree(bare / UNIT_DIR.lstrip("/") / "musicgen-worker.service.d")
    result = analyze(
        "security", "--offline=yes", "--threshold=40", f"--root={bare}", "musicgen-worker.service"
    )
    assert result.returncode != 0 and "UNSAFE" in result.stdout


def test_every_worker_unit_holds_the_whole_sandbox(workers: dict[str, dict]) -> None:
    for name, unit in workers.items():
        for key, expected in REQUIRED.items():
            assert values(unit, "Service", key)[-1:] == [expected], (name, key)
        assert values(unit, "Service", "User") == ["musicgen"], name
        assert values(unit, "Service", "Group") == ["musicgen"], name
        assert values(unit, "Service", "SystemCallFilter")[0] == "@system-service", name
        families = " ".join(values(unit, "Service", "RestrictAddressFamilies")).split()
        assert set(families) <= {"AF_UNIX", "AF_INET", "AF_INET6", "AF_NETLINK"}, name
        devices = [v.split()[0] for v in values(unit, "Service", "DeviceAllow")]
        assert {"/dev/nvidiactl", "/dev/nvidia-uvm", "/dev/nvidia-uvm-tools"} <= set(devices)
        assert all("nvidia" in d for d in devices), devices
        assert "char-nvidia" in devices or "char-nvidia-frontend" in devices, devices
        # Writable: the checkout and systemd's own state, cache and log folders; nothing else.
        assert values(unit, "Service", "ReadWritePaths") == [CHECKOUT], name
        assert values(unit, "Service", "StateDirectory") == ["musicgen-batch"], name
        assert values(unit, "Service", "CacheDirectory") == ["musicgen-batch"], name
        environment = dict(
            e.split("=", 1) for v in values(unit, "Service", "Environment") for e in v.split()
        )
        assert environment["MUSICGEN_SPOOL_DIR"].startswith("%S/musicgen-batch/"), name
        assert environment["XDG_CACHE_HOME"].startswith("%C/musicgen-batch"), name


def test_settings_left_off_are_argued_in_the_sandbox(user_data_files: dict[str, str]) -> None:
    sandboxes = [t for p, t in user_data_files.items() if p.endswith("/sandbox.conf")]
    assert sandboxes
    for text in sandboxes:
        for setting in (
            "MemoryDenyWriteExecute=",
            "PrivateDevices=",
            "ProcSubset=",
            "PrivateNetwork=",
            "PrivateUsers=",
        ):
            (line,) = [x for x in text.splitlines() if x.startswith(f"# - {setting}")]
            assert len(line) > len(setting) + 20, line


def test_no_worker_program_runs_as_root(
    workers: dict[str, dict], user_data_files: dict[str, str]
) -> None:
    for name, unit in workers.items():
        assert values(unit, "Service", "User")[-1] not in ("", "root", "0"), name
        assert not values(unit, "Service", "DynamicUser"), name
        assert not values(unit, "Service", "PermissionsStartOnly"), name
        for setting, prefixes, program in exec_programs(unit):
            privileged = "+" in prefixes or "!" in prefixes
            if setting == "ExecStart":
                assert not privileged, (name, program)
                continue
            if privileged:
                # Root only runs what the AMI or UserData put there, never the git checkout.
                assert not program.startswith(CHECKOUT), (name, program)
                assert program.startswith(("/usr/bin/", "/usr/local/sbin/")), (name, program)
                script = user_data_files.get(program, "")
                assert "bootstrap.sh" not in script and "CHECKOUT" not in script, program
        start = user_data_files[values(unit, "Service", "ExecStart")[0].split()[0]]
        # The clone itself runs as the worker, so the repository never gets root.
        assert re.search(r"\bgit\b.* clone ", start), start
        assert "sudo" not in start and "runuser" not in start


def test_no_unit_takes_a_secret_from_the_environment_file(
    user_data_files: dict[str, str],
) -> None:
    settings = user_data_files[ENV_FILE]
    names = [line.split("=", 1)[0] for line in settings.splitlines() if "=" in line]
    assert names and not [
        n for n in names if SECRET_NAME.search(n) and not SECRET_REFERENCE.search(n)
    ], names
    for name in unit_names(user_data_files):
        unit = unit_with_dropins(name, user_data_files)
        for key, value in unit.get("Service", []):
            if key in ("EnvironmentFile", "Environment", "PassEnvironment", "UnsetEnvironment"):
                assert not SECRET_NAME.search(value), (name, key, value)
            # A secret reaches a unit only as a credential, and never out of the settings file.
            if key.startswith(("LoadCredential", "SetCredential")):
                assert ENV_FILE not in value, (name, key, value)


def test_gpu_devices_are_prepared_by_root_before_every_worker(
    workers: dict[str, dict], user_data_files: dict[str, str]
) -> None:
    devices = unit_with_dropins("musicgen-gpu-devices.service", user_data_files)
    assert values(devices, "Service", "Type") == ["oneshot"]
    assert values(devices, "Service", "RemainAfterExit") == ["yes"]
    (program,) = [p for _, _, p in exec_programs(devices)]
    script = user_data_files[program]
    assert "nvidia-modprobe -u -c 0 -c 1" in script and "nvidia-modprobe -c 255" in script
    for name, unit in workers.items():
        assert "musicgen-gpu-devices.service" in " ".join(values(unit, "Unit", "After")), name
        assert "musicgen-gpu-devices.service" in " ".join(values(unit, "Unit", "Wants")), name


@pytest.mark.parametrize(
    ("when_done", "result", "code", "status", "powers_off"),
    [
        ("1", "success", "exited", "0", True),
        ("0", "success", "exited", "0", False),
        ("1", "exit-code", "exited", "1", False),
        ("1", "exit-code", "exited", "3", False),
        ("1", "signal", "killed", "15", False),
        ("1", "timeout", "exited", "0", False),
    ],
)
def test_the_root_helper_powers_off_only_after_a_complete_batch(
    workers: dict[str, dict],
    user_data_files: dict[str, str],
    tmp_path: Path,
    when_done: str,
    result: str,
    code: str,
    status: str,
    powers_off: bool,
) -> None:
    for name, unit in workers.items():
        (program,) = [p for s, pre, p in exec_programs(unit) if s == "ExecStopPost" and "+" in pre]
        helper = tmp_path / "done"
        helper.write_text(user_data_files[program])
        env_file = tmp_path / "worker.env"
        env_file.write_text(f"MUSICGEN_SHUTDOWN_WHEN_DONE='{when_done}'\n")
        calls = tmp_path / "systemctl-calls"
        calls.unlink(missing_ok=True)
        fake_bin = tmp_path / "bin"
        fake_bin.mkdir(exist_ok=True)
        (fake_bin / "systemctl").write_text(f'#!/bin/sh\necho "$@" >> {calls}\n')
        (fake_bin / "systemctl").chmod(0o755)
        run = subprocess.run(
            ["bash", str(helper)],
            env={
                "PATH": f"{fake_bin}:/usr/bin:/bin",
                "MUSICGEN_ENV_FILE": str(env_file),
                "SERVICE_RESULT": result,
                "EXIT_CODE": code,
                "EXIT_STATUS": status,
            },
            capture_output=True,
            text=True,
            check=False,
        )
        assert run.returncode == 0, (name, run.stderr)
        called = calls.read_text().split("\n")[0] if calls.exists() else ""
        assert (called == "--no-block poweroff") is powers_off, (name, called)


def test_helper_scripts_are_valid_bash(user_data_files: dict[str, str], tmp_path: Path) -> None:
    scripts = {p: t for p, t in user_data_files.items() if t.startswith("#!/bin/bash")}
    assert len(scripts) >= 3, list(scripts)
    for path, text in scripts.items():
        target = tmp_path / Path(path).name
        target.write_text(text)
        subprocess.run(["bash", "-n", str(target)], check=True)
        if shutil.which("shellcheck"):
            check = subprocess.run(
                ["shellcheck", str(target)], capture_output=True, text=True, check=False
            )
            assert check.returncode == 0, check.stdout


def test_a_per_gpu_template_unit_is_held_to_the_same_sandbox(
    user_data_files: dict[str, str], tmp_path: Path
) -> None:
    """A worker template unit is found and rated like the plain one: with the sandbox drop-in in
    its own folder it passes, added without it it fails."""
    plain = f"{UNIT_DIR}/musicgen-worker.service"
    template = f"{UNIT_DIR}/musicgen-worker@.service"
    sandboxed = {
        path.replace("musicgen-worker.service", "musicgen-worker@.service"): text
        for path, text in user_data_files.items()
    }
    bare = {**user_data_files, template: user_data_files[plain]}
    for files, passes in ((sandboxed, True), (bare, False)):
        assert "musicgen-worker@.service" in worker_units(files)
        root = unit_root(tmp_path / f"root-{passes}", files)
        name = instance_name("musicgen-worker@.service")
        result = analyze("security", "--offline=yes", "--threshold=40", f"--root={root}", name)
        assert (result.returncode == 0) is passes, result.stdout


def test_unit_paths_match_the_settings_and_the_bootstrap(
    workers: dict[str, dict], user_data_files: dict[str, str]
) -> None:
    settings = dict(
        line.split("=", 1) for line in user_data_files[ENV_FILE].splitlines() if "=" in line
    )
    bootstrap = (Path(__file__).parent.parent / "worker" / "bootstrap.sh").read_text()
    for name, unit in workers.items():
        assert values(unit, "Service", "ReadWritePaths") == [
            settings["MUSICGEN_CHECKOUT_DIR"].strip("'")
        ], name
        (logs,) = values(unit, "Service", "LogsDirectory")
        assert f'log_dir="${{MUSICGEN_LOG_DIR:-/var/log/{logs}}}"' in bootstrap, name
        for read_only in ("MUSICGEN_VENV", "MUSICGEN_MODEL"):
            assert not settings[read_only].strip("'").startswith(CHECKOUT), read_only


def test_gpu_device_helper_asks_nvidia_modprobe_for_the_control_and_uvm_nodes(
    user_data_files: dict[str, str], tmp_path: Path
) -> None:
    """Off a GPU machine only the fixed nodes are asked for; the per-GPU loop finds none."""
    helper = tmp_path / "devices"
    helper.write_text(user_data_files["/usr/local/sbin/musicgen-gpu-devices"])
    calls = tmp_path / "calls"
    fake = tmp_path / "bin" / "nvidia-modprobe"
    fake.parent.mkdir()
    fake.write_text(f'#!/bin/sh\necho "$@" >> {calls}\n')
    fake.chmod(0o755)
    run = subprocess.run(
        ["bash", str(helper)],
        env={"PATH": f"{fake.parent}:/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    asked = calls.read_text().splitlines()
    assert asked[:2] == ["-c 255", "-u -c 0 -c 1"]
    gpus = Path("/proc/driver/nvidia/gpus")
    assert len(asked) == 2 + (len(list(gpus.iterdir())) if gpus.is_dir() else 0)
    assert all(re.fullmatch(r"-c \d+", line) for line in asked[2:]), asked
