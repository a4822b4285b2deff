"""The worker's systemd units, rendered from the real UserData template: `systemd-analyze verify`,
`systemd-analyze security --offline=yes --threshold=40` on every unit that runs code from the git
checkout (each GPU's `musicgen-worker@.service`, `musicgen-checkout.service`), the sandbox settings
themselves, what runs as root, where secrets may come from, and the root boot unit's script that
starts them and powers off once after a complete batch."""

from __future__ import annotations

import gzip
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support.boot import SCALE_IN, run_boot_unit, write_env_file
from tests.systemd_units import (
    BOOT_UNIT,
    UNIT_DIR,
    exec_programs,
    instance_name,
    unit_names,
    unit_root,
    unit_with_dropins,
    user_data_payload,
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
            "RuntimeDirectory",
            "RuntimeDirectoryMode",
        ],
        0,
    ),
    "NoNewPrivileges": 187,
    "TimeoutStartSec": 188,
    "SystemCallFilter": 187,
    "SystemCallErrorNumber": 187,
    "RestrictAddressFamilies": 211,
    "SystemCallArchitectures": 213,
    "ProtectHome": 214,
    "AmbientCapabilities": 229,
    "RuntimeMaxSec": 229,
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
    "RuntimeDirectoryPreserve": 235,
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
    assert {
        "musicgen-worker@.service",
        "musicgen-checkout.service",
        "musicgen-scale-in.service",
    } <= set(found), found
    assert BOOT_UNIT not in found
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


def test_user_data_leaves_room_under_ec2s_16_kb_limit(tmp_path: Path) -> None:
    """EC2 refuses UserData over 16 KB "in raw form, before it is base64-encoded" (EC2 User Guide,
    "Work with instance user data"): the bytes of the module's user_data value, gzip here. The
    biggest rendering (the private repository's helper included) keeps 1 KB free for the user's
    own URL, ref and parameter name, and is the script cloud-init runs once uncompressed."""
    settings = {"git_token_parameter": "/music/git-token"}
    payload = user_data_payload(tmp_path, settings)
    assert len(payload) <= 16 * 1024 - 1024, len(payload)
    assert "git-credential-ssm.py <<'HELPER'" in gzip.decompress(payload).decode()


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


def exposure(root: Path, name: str) -> float:
    result = analyze("security", "--offline=yes", f"--root={root}", instance_name(name))
    (level,) = re.findall(rf"Overall exposure level for {re.escape(instance_name(name))}: ([\d.]+)", result.stdout)
    return float(level)


def test_the_scale_in_unit_is_as_confined_as_the_checkout(
    workers: dict[str, dict], root: Path, user_data_files: dict[str, str]
) -> None:
    """It runs root's end program with the instance role: the checkout's sandbox, file for file,
    and an exposure no higher."""
    scale_in = workers["musicgen-scale-in.service"]
    assert values(scale_in, "Service", "Type") == ["oneshot"]
    assert not values(scale_in, "Install", "WantedBy")  # started by the boot unit only
    assert (
        user_data_files[f"{UNIT_DIR}/musicgen-scale-in.service.d/sandbox.conf"]
        == user_data_files[f"{UNIT_DIR}/musicgen-checkout.service.d/sandbox.conf"]
    )
    assert exposure(root, "musicgen-scale-in.service") <= exposure(root, "musicgen-checkout.service")


def test_systemd_stops_a_worker_some_minutes_after_max_hours(workers: dict[str, dict]) -> None:
    """max_hours=12 (the default): the worker stops itself then; RuntimeMaxSec= is systemd's
    backstop for a hung one, with 15 minutes for the last window and checkpoint."""
    worker = workers["musicgen-worker@.service"]
    assert values(worker, "Service", "RuntimeMaxSec") == [str(12 * 3600 + 900)]
    for name in ("musicgen-checkout.service", "musicgen-scale-in.service"):
        assert not values(workers[name], "Service", "RuntimeMaxSec"), name


def test_the_unscored_baseline_would_fail_the_threshold(
    workers: dict[str, dict], root: Path, tmp_path: Path
) -> None:
    """The threshold check can fail: each unit without its sandbox drop-in rates UNSAFE."""
    for name in workers:
        bare = tmp_path / f"root-{name}"
        shutil.copytree(root, bare, symlinks=True)
        shutil.rmtree(bare / UNIT_DIR.lstrip("/") / f"{name}.d")
        result = analyze(
            "security", "--offline=yes", "--threshold=40", f"--root={bare}", instance_name(name)
        )
        assert result.returncode != 0 and "UNSAFE" in result.stdout, name


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
    # Its one program is UserData's; what it makes: tests/test_gpu_devices.py.
    (program,) = [p for _, _, p in exec_programs(devices)]
    assert program in user_data_files
    # The GPU workers, and the boot unit that counts the GPUs with nvidia-smi.
    gpu_units = {n: u for n, u in workers.items() if "@" in n}
    assert gpu_units
    gpu_units[BOOT_UNIT] = unit_with_dropins(BOOT_UNIT, user_data_files)
    for name, unit in gpu_units.items():
        assert "musicgen-gpu-devices.service" in " ".join(values(unit, "Unit", "After")), name
        assert "musicgen-gpu-devices.service" in " ".join(values(unit, "Unit", "Wants")), name


def test_the_boot_unit_is_root_and_runs_only_its_userdata_script(
    workers: dict[str, dict], user_data_files: dict[str, str]
) -> None:
    """Root by design, like the devices unit: its one program is the script UserData wrote,
    which starts the sandboxed units through systemd and never runs the checkout's code."""
    boot = unit_with_dropins(BOOT_UNIT, user_data_files)
    assert not [p for p in user_data_files if p.startswith(f"{UNIT_DIR}/{BOOT_UNIT}.d/")]
    assert values(boot, "Service", "Type") == ["oneshot"]
    assert values(boot, "Install", "WantedBy") == ["multi-user.target"]
    ((setting, prefixes, program),) = exec_programs(boot)
    assert (setting, prefixes) == ("ExecStart", "")
    assert program.startswith("/usr/local/sbin/") and program in user_data_files
    script = user_data_files[program]
    for checkout_code in ("bootstrap.sh", CHECKOUT, "MUSICGEN_CHECKOUT_DIR", "MUSICGEN_VENV", "python"):
        assert checkout_code not in script, checkout_code
    # The units it starts are the sandboxed ones, run as the musicgen user.
    for name in ("musicgen-checkout.service", "musicgen-worker@.service"):
        assert values(workers[name], "Service", "User") == ["musicgen"], name
    # The power-off is the boot unit's, once; no worker unit has one of its own.
    for name, unit in workers.items():
        assert not [s for s, _, _ in exec_programs(unit) if s == "ExecStopPost"], name


def boot_run(
    user_data_files: dict[str, str],
    tmp_path: Path,
    *,
    keep_alive: str,
    gpus: int,
    statuses: list[str | None],
    reasons: list[str] | None = None,
    checkout_status: int = 0,
    checkout_reason: str = "",
    scale_in_status: int = 0,
    system_state: str = "running",
) -> tuple[int, list[dict], str, str | None]:
    """The boot unit through the fake systemctl (tests/support/boot.py) on `gpus` GPUs with the
    given keep_alive, its units stand-ins that exit as given; returns its status, the journal,
    its output and what it told the end program."""
    env_file = write_env_file(tmp_path / "worker.env", {
        "MUSICGEN_KEEP_ALIVE": keep_alive,
        "MUSICGEN_MAX_HOURS": "12",
        "MUSICGEN_RUN_DIR": str(tmp_path / "run"),
        "MUSICGEN_BOOT_FAILURE_FILE": str(tmp_path / "boot" / "failure"),
    })
    (tmp_path / "boot-unit").mkdir()
    (tmp_path / "boot-unit" / "system-state").write_text(system_state)
    return run_boot_unit(
        user_data_files,
        tmp_path,
        env_file,
        gpus=gpus,
        statuses=statuses,
        reasons=reasons,
        checkout_status=checkout_status,
        checkout_reason=checkout_reason,
        scale_in_status=scale_in_status,
    )


def end_actions(events: list[dict]) -> list[str]:
    """The units' results at the end: the scale-in unit's start, the power-off."""
    return [
        "poweroff" if e["event"] == "poweroff" else "scale-in"
        for e in events
        if e["event"] == "poweroff" or (e["event"] == "start" and e["unit"] == SCALE_IN)
    ]


UNUSABLE = "error: GPU unusable: CUDA error: no CUDA-capable device is detected"


@pytest.mark.parametrize(
    ("keep_alive", "gpus", "statuses", "scale_in_status", "status", "end"),
    [
        ("0", 4, ["0", "0", "0", "0"], 0, 0, ["scale-in"]),
        ("1", 4, ["0", "0", "0", "0"], 0, 0, []),  # keep_alive: up, and billed
        ("0", 4, ["0", "1", "0", "0"], 0, 1, ["scale-in"]),  # a song failed for good
        ("0", 4, ["0", "5", "0", "0"], 0, 5, ["scale-in"]),  # max_hours reached
        ("1", 4, ["0", "5", "0", "0"], 0, 5, []),
        ("0", 4, ["3", "3", "3", "3"], 0, 3, []),  # the instance is being stopped
        ("0", 4, ["0", "3", "0", "1"], 0, 3, []),  # one worker saw the spot notice
        ("0", 4, ["143", "143", "143", "143"], 0, 143, ["scale-in"]),  # stopped, not a shutdown
        ("0", 4, ["0", "0", "0", "0"], 1, 0, ["scale-in", "poweroff"]),  # scale-in refused
        ("0", 4, ["2", "2", "2", "2"], 1, 2, ["scale-in", "poweroff"]),
        ("0", 4, ["0", "0", "0", None], 0, 1, ["scale-in"]),  # a worker killed before it reported
        ("0", 4, ["0", "0", "0", "x"], 0, 1, ["scale-in"]),
        ("0", 0, ["0"], 0, 0, ["scale-in"]),  # no GPU: one worker
        ("0", 0, [None], 0, 1, ["scale-in"]),  # a stale status from an earlier run does not count
    ],
)
def test_the_boot_unit_ends_the_instance_once_unless_it_is_stopping_or_kept_alive(
    user_data_files: dict[str, str],
    tmp_path: Path,
    keep_alive: str,
    gpus: int,
    statuses: list[str | None],
    scale_in_status: int,
    status: int,
    end: list[str],
) -> None:
    code, events, output, told = boot_run(
        user_data_files,
        tmp_path,
        keep_alive=keep_alive,
        gpus=gpus,
        statuses=statuses,
        scale_in_status=scale_in_status,
    )
    assert code == status, output
    workers = {f"musicgen-worker@{i}.service" for i in range(max(gpus, 1))}
    stops = {e["unit"]: e for e in events if e["event"] == "stop"}
    assert workers <= set(stops), events
    assert stops["musicgen-checkout.service"]["time"] <= min(
        e["time"] for e in events if e["event"] == "start" and e["unit"] in workers
    )
    # The end action: once, after the last worker had stopped; the power-off only when the
    # scale-in failed; and this boot did not fail, so the end program is told nothing.
    assert end_actions(events) == end, events
    last_worker = max(stops[unit]["time"] for unit in workers)
    assert all(e["time"] >= last_worker for e in events if e["event"] == "poweroff" or e.get("unit") == SCALE_IN)
    assert told == ("" if end else None)
    assert f"workers exited {status}" in output
    if "3" in statuses:
        assert "the instance is stopping; no end action" in output
    elif keep_alive == "1":
        assert "keep_alive: the instance stays up, and billed, until terraform destroy" in output
    elif scale_in_status:
        assert "scale-in failed (see musicgen-scale-in.service); powering off" in output
    else:
        assert "scaled in: the group terminates this instance" in output


@pytest.mark.parametrize(
    ("statuses", "nothing_ran"),
    [(["0", "6", "0", "0"], "0"), (["6", "6", "6", "6"], "1")],
    ids=["one-gpu-unusable", "every-gpu-unusable"],
)
def test_an_unusable_gpu_is_a_failed_boot_told_to_the_end_program(
    user_data_files: dict[str, str], tmp_path: Path, statuses: list[str], nothing_ran: str
) -> None:
    """Exit 6 with the worker's one-line reason (bootstrap.sh's gpuN.reason): the boot failed;
    it ran nothing when every GPU was unusable."""
    reasons = [UNUSABLE if code == "6" else "" for code in statuses]
    code, events, output, told = boot_run(
        user_data_files, tmp_path, keep_alive="0", gpus=4, statuses=statuses, reasons=reasons
    )
    assert code == 6, output
    assert end_actions(events) == ["scale-in"]
    unusable = "; ".join(f"GPU {i}: {UNUSABLE}" for i, c in enumerate(statuses) if c == "6")
    assert told == f"nothing_ran={nothing_ran}\nreason={unusable}\n"
    assert f"worker on GPU 1 exited 6: {UNUSABLE}" in output


def test_a_shutdown_is_an_instance_stop_whatever_the_workers_said(
    user_data_files: dict[str, str], tmp_path: Path
) -> None:
    """systemctl(1): is-system-running prints "stopping" once shutdown has begun; workers stopped
    then need not say 3 for the instance to be left alone."""
    code, events, output, told = boot_run(
        user_data_files, tmp_path, keep_alive="0", gpus=2, statuses=["143", "143"], system_state="stopping"
    )
    assert code == 143
    assert end_actions(events) == [] and told is None
    assert "the instance is stopping; no end action" in output


def test_keep_alive_keeps_a_failed_boot_up_and_tells_no_end_program(
    user_data_files: dict[str, str], tmp_path: Path
) -> None:
    code, events, output, told = boot_run(
        user_data_files, tmp_path, keep_alive="1", gpus=1, statuses=["6"], reasons=[UNUSABLE]
    )
    assert (code, end_actions(events), told) == (6, [], None)
    assert f"failed boot: GPU 0: {UNUSABLE}" in output


@pytest.mark.parametrize(
    ("keep_alive", "scale_in_status", "end"),
    [
        ("0", 0, ["scale-in"]),
        ("0", 1, ["scale-in", "poweroff"]),
        ("1", 0, []),
    ],
    ids=["scale-in", "scale-in-fails", "keep-alive"],
)
def test_the_boot_unit_starts_no_worker_without_a_checkout_and_ends_like_a_batch(
    user_data_files: dict[str, str], tmp_path: Path, keep_alive: str, scale_in_status: int, end: list[str]
) -> None:
    """Without a checkout the instance can do nothing: it records the failed boot and leaves the
    group (or powers off) instead of billing idle until destroy."""
    reason = "fatal: repository 'https://git.example.com/songs.git/' not found"
    code, events, output, told = boot_run(
        user_data_files, tmp_path, keep_alive=keep_alive, gpus=4, statuses=[], checkout_status=4,
        checkout_reason=reason, scale_in_status=scale_in_status,
    )
    assert code == 4, output
    assert [e["unit"] for e in events if e["event"] == "start"] == [
        "musicgen-worker.service", "musicgen-checkout.service", *([SCALE_IN] if end else [])
    ]
    assert end_actions(events) == end
    assert told == (f"nothing_ran=1\nreason=the git checkout failed: {reason}\n" if end else None)
    assert "not starting the workers" in output


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


def test_every_unit_running_the_checkout_is_held_to_the_sandbox(
    workers: dict[str, dict], user_data_files: dict[str, str]
) -> None:
    """Whatever its name, a unit whose ExecStart runs the start script (the clone, then the
    checkout's bootstrap) is one of the units rated and checked above, each with the one
    sandbox drop-in in its own folder."""
    (sandbox,) = {t for p, t in user_data_files.items() if p.endswith("/sandbox.conf")}
    running_checkout = []
    for name in unit_names(user_data_files):
        unit = unit_with_dropins(name, user_data_files)
        for _, _, program in exec_programs(unit):
            if "bootstrap.sh" in user_data_files.get(program, ""):
                running_checkout.append(name)
    assert sorted(set(running_checkout)) == sorted(workers)
    for name in workers:
        assert user_data_files[f"{UNIT_DIR}/{name}.d/sandbox.conf"] == sandbox, name


def test_unit_paths_match_the_settings_and_the_bootstrap(
    workers: dict[str, dict], user_data_files: dict[str, str]
) -> None:
    settings = dict(
        line.split("=", 1) for line in user_data_files[ENV_FILE].splitlines() if "=" in line
    )
    bootstrap = (Path(__file__).parent.parent / "worker" / "instance" / "bootstrap.sh").read_text()
    for name, unit in workers.items():
        assert values(unit, "Service", "ReadWritePaths") == [
            settings["MUSICGEN_CHECKOUT_DIR"].strip("'")
        ], name
        (logs,) = values(unit, "Service", "LogsDirectory")
        assert f'log_dir="${{MUSICGEN_LOG_DIR:-/var/log/{logs}}}"' in bootstrap, name
        # The workers leave their exit statuses where the root boot script reads them.
        (runtime,) = values(unit, "Service", "RuntimeDirectory")
        assert values(unit, "Service", "RuntimeDirectoryPreserve") == ["yes"], name
        run_dir = f'run_dir="${{MUSICGEN_RUN_DIR:-/run/{runtime}}}"'
        assert run_dir in bootstrap, name
        assert run_dir in user_data_files["/usr/local/sbin/musicgen-batch-run"], name
        for read_only in ("MUSICGEN_VENV", "MUSICGEN_MODEL"):
            assert not settings[read_only].strip("'").startswith(CHECKOUT), read_only


def timespan_s(value: str) -> float:
    """A systemd time span as systemd itself reads it (`systemd-analyze timespan`)."""
    out = analyze("timespan", value).stdout
    (micro,) = [line.split(":", 1)[1] for line in out.splitlines() if line.strip().startswith("μs:")]
    return int(micro) / 1e6


def test_no_oneshot_unit_can_hold_the_instance_forever(user_data_files: dict[str, str]) -> None:
    """systemd.service(5): a Type=oneshot unit has no start timeout unless given one, so a stalled
    step (a git host that stops answering, a busy group) would keep a GPU instance up. Each has a
    finite one, and the boot unit's covers its checkout, a worker stopped by RuntimeMaxSec= and
    the end; its stop timeout covers the workers' checkpoints and the end."""
    oneshots = {}
    for name in unit_names(user_data_files):
        unit = unit_with_dropins(name, user_data_files)
        if values(unit, "Service", "Type") == ["oneshot"]:
            (timeout,) = values(unit, "Service", "TimeoutStartSec")
            assert timeout not in ("infinity", "0"), name
            oneshots[name] = timespan_s(timeout)
    assert {BOOT_UNIT, "musicgen-checkout.service", "musicgen-scale-in.service", "musicgen-gpu-devices.service"} <= set(oneshots)
    worker = unit_with_dropins("musicgen-worker@.service", user_data_files)
    (runtime_max,) = values(worker, "Service", "RuntimeMaxSec")
    (worker_stop,) = values(worker, "Service", "TimeoutStopSec")
    assert oneshots[BOOT_UNIT] >= (
        oneshots["musicgen-checkout.service"] + timespan_s(runtime_max) + oneshots["musicgen-scale-in.service"]
    )
    (boot_stop,) = values(unit_with_dropins(BOOT_UNIT, user_data_files), "Service", "TimeoutStopSec")
    assert timespan_s(boot_stop) >= timespan_s(worker_stop) + oneshots["musicgen-scale-in.service"]
