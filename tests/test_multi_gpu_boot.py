"""The instance's boot on a multi-GPU machine, through the systemd unit texts of the UserData.

The start script, the boot unit's root script and the units are the rendered UserData's
(tests/support/boot.py). A fake `nvidia-smi` lists 2 GPUs (4 where the workers are stand-ins:
a GPU count is only a loop in the boot script, and two real workers, each a torch process,
show everything a third or fourth would); a fake `systemctl`
(tests/fake_systemctl.py) runs each unit's ExecStart with its Environment= lines, stops a unit
with those PartOf= it, and notes the power-off. The worker processes are real: the tiny model,
one moto bucket, a file:// git remote. The scale-in unit's program is a stand-in whose exit status
each test chooses (the end program itself is tested against moto in tests/test_scale_in.py and
tests/test_boot_failures.py); the end-action cases stand in for the workers too, each leaving the
exit status the case gives it.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import boto3
import pytest

from contract.records import SongRecord
from tests.support.boot import executable, keys, make_machine, settings_for, write_env_file
from worker.output.report import parse_report

# Real processes (workers, the bootstrap): the inner loop skips them with -m 'not slow'.
pytestmark = pytest.mark.slow

SCALE_IN_UNIT = "musicgen-scale-in.service"
GPUS = 2
SONGS = [f"tune{i}" for i in range(6)]


@pytest.fixture
def gpus() -> int:
    """GPUs the machine's `nvidia-smi` lists; a test with stand-in workers asks for more."""
    return GPUS


@pytest.fixture
def machine(tmp_path: Path, remote: tuple[str, Path], aws_env: str, tiny_model_dir: Path,
            user_data_files: dict[str, str], gpus: int):
    """A `gpus`-GPU instance after its UserData ran (tests/support/boot.py): the rendered units,
    start script and boot script, the fake driver and systemctl. Returns (run the boot unit,
    paths)."""
    boto3.client("s3").create_bucket(Bucket="musicgen-batch-gpus")
    url, _ = remote
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("".join(f"tiny tune number {i} ; 1 ; {name}\n" for i, name in enumerate(SONGS)))
    settings = {
        **settings_for(tmp_path, url, "musicgen-batch-gpus", tiny_model_dir),
        "MUSICGEN_PROMPTS": str(prompts),
        "MUSICGEN_BATCH_SIZE": "1",
        "HOURLY_COST_USD": "2.0",
        "MUSICGEN_KEEP_ALIVE": "0",
        "MUSICGEN_MAX_HOURS": "12",
        # This torch has no CUDA: the workers run on the CPU here (the units ask for cuda).
        "MUSICGEN_DEVICE": "cpu",
    }
    for name in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION"):
        settings[name] = aws_env if name == "AWS_ENDPOINT_URL" else os.environ[name]
    env_file = write_env_file(tmp_path / "worker.env", settings)
    run_dir = Path(settings["MUSICGEN_RUN_DIR"])
    # The units' one program: the real start script, except where a test put a stand-in's exit
    # status in stand-ins/ (scale-in: always; each GPU's worker and the checkout: when given).
    stand_ins = tmp_path / "stand-ins"
    stand_ins.mkdir()
    (stand_ins / "scale-in").write_text("0\n")
    start = executable(
        tmp_path / "start-or-stand-in",
        "#!/bin/bash\n"
        f"stand_ins={stand_ins}\n"
        'case "$1" in\n'
        '  scale-in) echo "scale-in ran" ; exit "$(cat "$stand_ins/scale-in")" ;;\n'
        '  worker) if [ -f "$stand_ins/gpu$2" ]; then\n'
        f'      mkdir -p {run_dir}; code="$(cat "$stand_ins/gpu$2")"; echo "$code" > {run_dir}/gpu$2.exit\n'
        '      echo "stand-in worker exited $code"; exit "$code"; fi ;;\n'
        '  checkout) [ -f "$stand_ins/checkout" ] && exit 0 ;;\n'
        "esac\n"
        f'exec /bin/bash {tmp_path / "sbin" / "musicgen-worker-start"} "$@"\n',
    )
    instance = make_machine(tmp_path, user_data_files, env_file, gpus=gpus, start=start)
    return instance.boot, {
        "journal": instance.journal.parent, "prompts": prompts, "machine": instance, "run": run_dir,
        "stand_ins": stand_ins, "env_file": env_file, "settings": settings,
    }


def unit_output(paths: dict, unit: str) -> str:
    return (paths["journal"] / f"{unit}.log").read_text()


def test_every_gpu_runs_its_own_worker_and_the_end_of_batch_action_runs_once(machine) -> None:
    boot, paths = machine
    # Each worker takes its own share of the cores, as on an instance (no MUSICGEN_THREADS).
    own_share = {name: value for name, value in paths["settings"].items() if name != "MUSICGEN_THREADS"}
    write_env_file(paths["env_file"], own_share)
    code, events = boot()
    boot_log = unit_output(paths, "musicgen-worker.service")
    assert code == 0, boot_log

    # The boot unit ran the checkout unit, then one worker unit per GPU, each pinned to its GPU,
    # all at once.
    worker_units = [f"musicgen-worker@{i}.service" for i in range(GPUS)]
    starts = {e["unit"]: e for e in events if e["event"] == "start"}
    assert sorted(starts) == sorted(
        ["musicgen-worker.service", "musicgen-checkout.service", *worker_units, SCALE_IN_UNIT]
    )
    assert starts["musicgen-checkout.service"]["command"][1:] == ["checkout"]
    for i, unit in enumerate(worker_units):
        # Each unit pins its GPU and asks for it: no worker falls back to the CPU on its own.
        assert starts[unit]["env"]["CUDA_VISIBLE_DEVICES"] == str(i)
        assert starts[unit]["env"]["MUSICGEN_DEVICE"] == "cuda"
        assert starts[unit]["command"][1:] == ["worker", str(i)]
    stops = {e["unit"]: e for e in events if e["event"] == "stop"}
    assert {unit: stops[unit]["status"] for unit in worker_units} == dict.fromkeys(worker_units, 0)
    assert stops["musicgen-checkout.service"]["time"] < min(starts[unit]["time"] for unit in worker_units)
    assert f"{GPUS} GPU(s): starting {' '.join(worker_units)} and waiting" in boot_log

    # A real worker process per GPU, each with its own id and GPU, its share of cores and cost.
    ids = []
    for i, unit in enumerate(worker_units):
        output = unit_output(paths, unit)
        share = rf"\${2.0 / GPUS:.4f}/h \(the instance's \$2/h shared by {GPUS} GPU workers\)"
        found = re.search(
            rf"INFO worker (\S+-gpu{i}): CUDA_VISIBLE_DEVICES={i}, 1 CPU threads, cost rate {share}",
            output,
        )
        assert found, output
        ids.append(found[1])
        assert "bootstrap: worker exited 0" in output
        assert "checkout" not in output  # the checkout unit brought it up to date, once
    assert len(set(ids)) == GPUS
    assert unit_output(paths, "musicgen-checkout.service").count("bootstrap: checkout ") == 1

    # Every song exactly once, across the workers.
    generated = re.findall(
        r"generated (tune\d)\.wav", "".join(unit_output(paths, unit) for unit in worker_units)
    )
    assert sorted(generated) == SONGS
    found_keys = keys("musicgen-batch-gpus")
    assert sorted(k for k in found_keys if k.endswith(".wav")) == [f"{s}.wav" for s in SONGS]
    s3 = boto3.client("s3")
    for song in SONGS:
        record = SongRecord.from_json(
            s3.get_object(Bucket="musicgen-batch-gpus", Key=f".records/{song}.wav.json")["Body"].read()
        )
        assert record.worker in ids
        assert record.estimated_cost_usd == pytest.approx(record.generation_time_s / 3600 * 2.0 / GPUS)
    rows = parse_report(s3.get_object(Bucket="musicgen-batch-gpus", Key="cost_report.csv")["Body"].read())
    assert [r["s3_filename"] for r in rows] == [f"{s}.wav" for s in SONGS]

    # Each unit's log in logs/: one per GPU and the checkout's (the boot unit's is the journal).
    logs = [k for k in found_keys if k.startswith("logs/")]
    assert len(logs) == GPUS + 1
    assert sorted(re.sub(r"^logs/.*?-(checkout|gpu\d)-\d{8}T\d{6}Z\.log$", r"\1", k) for k in logs) == [
        "checkout", *(f"gpu{i}" for i in range(GPUS))
    ]

    # The end-of-batch action: the scale-in unit once, after the last worker had stopped and
    # reported 0; it succeeded, so no power-off.
    assert [e["unit"] for e in events if e["event"] == "start"].count(SCALE_IN_UNIT) == 1
    assert starts[SCALE_IN_UNIT]["time"] > max(stops[unit]["time"] for unit in worker_units)
    assert starts[SCALE_IN_UNIT]["command"][1:] == ["scale-in"]
    assert not [e for e in events if e["event"] == "poweroff"]
    assert sorted(p.read_text() for p in paths["run"].glob("gpu*.exit")) == ["0\n"] * GPUS
    for i in range(GPUS):
        assert f"worker on GPU {i} exited 0" in boot_log
    assert "workers exited 0" in boot_log
    assert "scaled in: the group terminates this instance" in boot_log


def test_a_failed_worker_sets_the_boot_status_and_the_instance_scales_in(machine) -> None:
    boot, paths = machine
    paths["prompts"].unlink()  # every worker: unusable input, exit 2, before any model loads
    code, events = boot()
    boot_log = unit_output(paths, "musicgen-worker.service")
    assert code == 2  # the boot unit failed with the workers' status, as systemd would show it
    assert {e["unit"]: e["status"] for e in events if e["event"] == "stop"}["musicgen-worker.service"] == 2
    for i in range(GPUS):
        assert f"worker on GPU {i} exited 2" in boot_log
    assert "workers exited 2" in boot_log
    # Nothing more to do on this instance: it leaves the group (no replacement), no power-off.
    assert [e["unit"] for e in events if e["event"] == "start"].count(SCALE_IN_UNIT) == 1
    assert not [e for e in events if e["event"] == "poweroff"]
    assert len([k for k in keys("musicgen-batch-gpus") if k.startswith("logs/")]) == GPUS + 1


def test_a_machine_without_gpus_runs_one_worker(machine, tmp_path: Path) -> None:
    boot, paths = machine
    (tmp_path / "bin" / "nvidia-smi").unlink()
    paths["prompts"].write_text("one tiny tune ; 1 ; solo\n")
    code, events = boot()
    assert code == 0, unit_output(paths, "musicgen-worker.service")
    assert sorted(e["unit"] for e in events if e["event"] == "start") == [
        "musicgen-checkout.service", "musicgen-scale-in.service", "musicgen-worker.service",
        "musicgen-worker@0.service",
    ]
    assert "1 GPU(s)" in unit_output(paths, "musicgen-worker.service")
    assert "shared by 1 GPU workers" in unit_output(paths, "musicgen-worker@0.service")
    assert not [e for e in events if e["event"] == "poweroff"]


@pytest.mark.parametrize(
    ("keep_alive", "statuses", "scale_in_status", "status", "end", "says"),
    [
        ("0", [0, 0, 0, 0], 0, 0, ["scale-in"], "scaled in: the group terminates this instance"),
        ("1", [0, 0, 0, 0], 0, 0, [], "keep_alive: the instance stays up, and billed, until terraform destroy"),
        ("0", [0, 3, 0, 0], 0, 3, [], "the instance is stopping; no end action"),
        ("0", [0, 0, 0, 0], 1, 0, ["scale-in", "poweroff"], "scale-in failed (see musicgen-scale-in.service); powering off"),
        ("0", [0, 5, 5, 0], 0, 5, ["scale-in"], "scaled in: the group terminates this instance"),
    ],
    ids=["scale-in", "keep-alive", "exit-3", "scale-in-fails", "max-hours"],
)
@pytest.mark.parametrize("gpus", [4])
def test_the_end_action_after_the_workers(
    machine, gpus: int, keep_alive: str, statuses: list[int], scale_in_status: int, status: int,
    end: list[str], says: str,
) -> None:
    """The root boot script through the unit texts, its workers stand-ins that exit as given:
    after an exit 3 nothing more; with keep_alive a message; else the scale-in unit, and the
    power-off only when that failed."""
    boot, paths = machine
    write_env_file(paths["env_file"], {**paths["settings"], "MUSICGEN_KEEP_ALIVE": keep_alive})
    (paths["stand_ins"] / "checkout").write_text("0\n")
    for i, code in enumerate(statuses):
        (paths["stand_ins"] / f"gpu{i}").write_text(f"{code}\n")
    (paths["stand_ins"] / "scale-in").write_text(f"{scale_in_status}\n")

    code, events = boot()

    boot_log = unit_output(paths, "musicgen-worker.service")
    assert code == status, boot_log
    assert f"workers exited {status}" in boot_log and says in boot_log
    workers = [f"musicgen-worker@{i}.service" for i in range(gpus)]
    stops = {e["unit"]: e for e in events if e["event"] == "stop"}
    assert {unit: stops[unit]["status"] for unit in workers} == dict(zip(workers, statuses, strict=True))
    ended = [e for e in events if e["event"] == "poweroff" or e.get("unit") == SCALE_IN_UNIT and e["event"] == "start"]
    assert ["poweroff" if e["event"] == "poweroff" else "scale-in" for e in ended] == end
    # Once, after the last worker had stopped.
    assert all(e["time"] > max(stops[unit]["time"] for unit in workers) for e in ended)
    if end:
        assert stops[SCALE_IN_UNIT]["status"] == scale_in_status
        assert unit_output(paths, SCALE_IN_UNIT) == "scale-in ran\n"


def test_a_shutdown_mid_batch_stops_every_worker_with_its_checkpoint(machine) -> None:
    """systemd shutting down stops the boot unit, and with it (PartOf=) every worker: each saves
    its checkpoint and reports 3, and the instance, going away, gets no end action."""
    _, paths = machine
    instance = paths["machine"]
    paths["prompts"].write_text("".join(f"a long ambient piano song {i} ; 120 ; long{i}\n" for i in range(GPUS)))
    process = instance.start_boot()
    try:
        deadline = time.monotonic() + 300
        while len([k for k in keys("musicgen-batch-gpus") if k.startswith(".checkpoints/")]) < GPUS:
            assert process.poll() is None and time.monotonic() < deadline, "not every GPU saved a window"
            time.sleep(0.5)
        instance.set_state("stopping")
        instance.systemctl("stop", "musicgen-worker.service", timeout=300)
        process.wait(timeout=150)
    finally:
        if process.poll() is None:
            process.kill()
    boot_log = unit_output(paths, "musicgen-worker.service")
    assert "SIGTERM: waiting for the workers to save their checkpoints" in boot_log
    for i in range(GPUS):
        assert f"worker on GPU {i} exited 3" in boot_log
        assert re.search(r"saved long\d\.wav at window", unit_output(paths, f"musicgen-worker@{i}.service"))
    assert "workers exited 3" in boot_log
    assert "the instance is stopping; no end action" in boot_log
    events = instance.events()
    assert not [e for e in events if e["event"] == "poweroff"]
    assert not [e for e in events if e.get("unit") == SCALE_IN_UNIT]
    assert not [k for k in keys("musicgen-batch-gpus") if k.endswith(".wav")]
