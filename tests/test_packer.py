"""The Packer template (python-hcl2; `make lint` runs `packer fmt`: lint/test_lint.py), its
requirements file against pyproject.toml, and the AMI's smoke check run on the tiny model."""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import torch

from contract.defaults import (
    DEFAULT_INSTANCE_TYPE,
    DEFAULT_MODEL,
    DEFAULT_MODEL_DIR,
    DEFAULT_ROOT_VOLUME_SIZE_GB,
    DLAMI_NAME_PATTERN,
    DLAMI_OWNER,
)
from tests.hcl import blocks, load
from tests.systemd_units import UNIT_DIR, parse_unit, values, worker_units
from tests.tf_support import REPO_ROOT
from worker.engine.engine import Engine

PACKER_DIR = REPO_ROOT / "packer"
TEMPLATE = PACKER_DIR / "musicgen.pkr.hcl"
SANDBOX = REPO_ROOT / "terraform" / "modules" / "worker" / "files" / "sandbox.conf"
# Runs on the operator's machine, never on a worker.
LAUNCHER_ONLY = {"python-terraform", "click-default-group"}


def requirement_name(spec: str) -> str:
    for sep in ("==", ">=", "<=", "~=", "!=", "<", ">", "[", ";", " "):
        spec = spec.split(sep, 1)[0]
    return spec.strip().lower()


def test_requires_the_amazon_plugin() -> None:
    (packer,) = load(TEMPLATE)["packer"]
    (plugins,) = packer["required_plugins"]
    assert plugins["amazon"]["source"] == "github.com/hashicorp/amazon"
    assert plugins["amazon"]["version"]


def test_source_is_the_nvidia_driver_base_ami_on_a_gpu_with_imdsv2_and_gp3() -> None:
    source = blocks(TEMPLATE, "source")["amazon-ebs.musicgen"]
    (ami_filter,) = source["source_ami_filter"]
    assert ami_filter["filters"]["name"] == DLAMI_NAME_PATTERN
    assert ami_filter["owners"] == [DLAMI_OWNER]
    assert ami_filter["most_recent"] is True
    variables = blocks(TEMPLATE, "variable")
    assert source["instance_type"] == "${var.instance_type}"
    assert variables["instance_type"]["default"] == DEFAULT_INSTANCE_TYPE
    assert source["imds_support"] == "v2.0"
    assert source["metadata_options"][0]["http_tokens"] == "required"
    (volume,) = source["launch_block_device_mappings"]
    assert volume["volume_type"] == "gp3"
    assert volume["encrypted"] is True
    # terraform's root_volume_size_gb validation is built on this size.
    assert variables["root_volume_size_gb"]["default"] == DEFAULT_ROOT_VOLUME_SIZE_GB
    for name, body in variables.items():
        assert body.get("description") and body.get("type"), name


def test_ami_is_named_for_the_terraform_lookup_and_tagged() -> None:
    source = blocks(TEMPLATE, "source")["amazon-ebs.musicgen"]
    assert source["ami_name"] == "musicgen-batch-${local.build_time}"
    (local_values,) = load(TEMPLATE)["locals"]
    assert "timestamp()" in local_values["build_time"]
    assert source["tags"]["Project"] == "musicgen-batch"
    assert source["tags"]["Role"] == "musicgen-batch-worker"
    assert source["tags"]["Model"] == "${var.model_id}"
    worker_main = (REPO_ROOT / "terraform" / "modules" / "worker" / "main.tf").read_text()
    # The newest AMI named like packer's builds, unless an ami_id is given.
    assert '[var.ami_id == "" ? "musicgen-batch-*" : var.ami_id]' in worker_main


def test_terraform_points_the_workers_at_the_folder_packer_bakes_the_model_into() -> None:
    # Two tools, one path: the AMI's folder is the default of terraform's model_path, the
    # one place the workers' model folder is set (the boot script has no default of its own).
    baked = blocks(TEMPLATE, "variable")["model_dir"]["default"]
    used = blocks(REPO_ROOT / "terraform" / "variables.tf", "variable")["model_path"]["default"]
    assert used == baked
    assert "opt/musicgen/models" not in (REPO_ROOT / "worker" / "instance" / "bootstrap.sh").read_text()


def test_provisioners_install_the_venv_download_the_model_and_smoke_check() -> None:
    variables = blocks(TEMPLATE, "variable")
    assert variables["venv_dir"]["default"] == "/opt/musicgen/venv"
    assert variables["model_dir"]["default"] == DEFAULT_MODEL_DIR
    assert variables["model_id"]["default"] == DEFAULT_MODEL
    (build,) = load(TEMPLATE)["build"]
    uploads = {p["file"]["source"] for p in build["provisioner"] if "file" in p}
    assert uploads == {
        "${path.root}/requirements.txt", "${path.root}/smoke_check.py", "${path.root}/../worker",
        "${path.root}/../contract",
        f"${{path.root}}/../{SANDBOX.relative_to(REPO_ROOT)}", "${path.root}/sandboxed_smoke_check.sh",
    }
    # The worker and the contract it imports, each as a folder of /tmp.
    for package in ("worker", "contract"):
        (upload,) = [
            p["file"] for p in build["provisioner"]
            if p.get("file", {}).get("source", "") == f"${{path.root}}/../{package}"
        ]
        assert upload["destination"] == "/tmp"
    (shell,) = [p["shell"] for p in build["provisioner"] if "shell" in p]
    script = "\n".join(shell["inline"])
    assert '\\"$PYTHON\\" -m venv \\"$VENV_DIR\\"' in script
    assert "PYTHON=${var.python}" in shell["environment_vars"]
    assert variables["python"]["default"] == "python3.11"
    assert 'pip\\" install --no-cache-dir -r /tmp/musicgen-requirements.txt' in script
    assert "snapshot_download" in script and "MODEL_DIR" in script
    assert 'musicgen-smoke-check.py \\"$MODEL_DIR\\"' in script
    # The check imports the worker and contract packages uploaded next to it.
    assert "mv /tmp/worker /tmp/contract /tmp/musicgen-smoke-check.py /opt/musicgen/smoke/" in script
    assert 'PYTHONPATH=/opt/musicgen/smoke \\"$VENV_DIR/bin/python\\" /opt/musicgen/smoke/musicgen-smoke-check.py' in script
    assert script.index("snapshot_download") < script.index("PYTHONPATH=/opt/musicgen/smoke")
    assert "{{ .Vars }}" in shell["execute_command"]
    assert "VENV_DIR=${var.venv_dir}" in shell["environment_vars"]
    assert "MODEL_DIR=${var.model_dir}" in shell["environment_vars"]


def test_requirements_match_pyproject_pins() -> None:
    """The AMI gets the worker's dependencies (base and [worker] extra) with pyproject's exact
    specifiers, and none of the launcher's."""
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    declared = {
        requirement_name(d): d.replace(" ", "") for d in [*project["dependencies"], *extras["worker"]]
    }
    lines = (PACKER_DIR / "requirements.txt").read_text().splitlines()
    required = [
        line.replace(" ", "") for line in lines if line.strip() and not line.startswith("#")
    ]
    assert {requirement_name(r): r for r in required} == {
        name: spec for name, spec in declared.items() if name not in LAUNCHER_ONLY
    }
    assert "torch==2.13.0" in required and "transformers==5.23.0" in required
    assert {requirement_name(r) for r in extras["launcher"]} == LAUNCHER_ONLY


def test_requirements_are_generated_from_pyproject() -> None:
    generator = load_script("generate_requirements.py")
    assert (PACKER_DIR / "requirements.txt").read_text() == generator.render(
        (REPO_ROOT / "pyproject.toml").read_text()
    ), "packer/requirements.txt is stale: run `make packer-requirements`"


def test_the_generator_writes_the_worker_extra_of_any_pyproject() -> None:
    generator = load_script("generate_requirements.py")
    pyproject = """
        [project]
        dependencies = ["boto3>=1"]
        [project.optional-dependencies]
        worker = ["torch==9.0"]
        launcher = ["python-terraform==1"]
    """
    body = generator.render(pyproject).removeprefix(generator.HEADER)
    assert body == "boto3>=1\ntorch==9.0\n"


def load_script(name: str) -> ModuleType:
    """packer/ is not a package; load a script as a module to call it in-process (a subprocess
    would spend most of its time importing torch again)."""
    spec = importlib.util.spec_from_file_location(Path(name).stem, PACKER_DIR / name)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def load_smoke_check() -> ModuleType:
    return load_script("smoke_check.py")


@pytest.fixture
def engine_loads(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str, str, torch.dtype]]:
    """Every Engine.from_pretrained call (model, device, dtype asked, dtype run), passed through."""
    calls = []
    original = Engine.from_pretrained.__func__

    def recording(cls, model_id, device=None, dtype="auto"):
        engine = original(cls, model_id, device=device, dtype=dtype)
        calls.append((model_id, str(device), dtype, engine.dtype))
        return engine

    monkeypatch.setattr(Engine, "from_pretrained", classmethod(recording))
    return calls


def test_smoke_check_generates_finite_audio_from_a_saved_model(
    tiny_model_dir: Path, capsys: pytest.CaptureFixture[str], engine_loads: list
) -> None:
    """The AMI's smoke check, on CPU with the tiny model (the build runs it on the GPU)."""
    assert load_smoke_check().main([str(tiny_model_dir), "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "smoke check passed: 1.00 s of audio" in out
    assert re.search(r"on cpu \(the CPU\), float32, [0-9.]+ decoding steps/s at batch 1", out)
    # The worker's own engine, with the worker's own dtype choice, not a stock generate call.
    assert engine_loads == [(str(tiny_model_dir), "cpu", "auto", torch.float32)]


def test_smoke_check_runs_the_dtype_it_is_given(
    tiny_model_dir: Path, capsys: pytest.CaptureFixture[str], engine_loads: list
) -> None:
    smoke_check = load_smoke_check()
    assert smoke_check.main([str(tiny_model_dir), "--device", "cpu", "--dtype", "float16"]) == 0
    assert "float16" in capsys.readouterr().out
    assert engine_loads == [(str(tiny_model_dir), "cpu", "float16", torch.float16)]


def test_smoke_check_fails_when_the_engine_runs_another_dtype(
    tiny_model_dir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """An engine that ignored the choice (as the old emulated-bf16 pick on a T4 did) fails."""
    original = Engine.from_pretrained.__func__
    monkeypatch.setattr(
        Engine, "from_pretrained",
        classmethod(lambda cls, model_id, device=None, dtype="auto": original(cls, model_id, device, "bfloat16")),
    )
    assert load_smoke_check().main([str(tiny_model_dir), "--device", "cpu"]) == 1
    assert "smoke check failed: the CPU: the engine runs in torch.bfloat16, expected torch.float32" in (
        capsys.readouterr().err
    )


@pytest.mark.parametrize(
    ("audio", "message"),
    [
        (lambda n: np.full(n, np.nan, dtype=np.float32), "the audio is not finite"),
        (lambda n: np.zeros(n - 1, dtype=np.float32), "samples, expected"),
    ],
)
def test_smoke_check_fails_on_bad_audio(
    tiny_model_dir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
    audio, message: str,
) -> None:
    monkeypatch.setattr(Engine, "decode", lambda self, codes, num_samples: audio(num_samples))
    assert load_smoke_check().main([str(tiny_model_dir), "--device", "cpu"]) == 1
    assert message in capsys.readouterr().err


def test_smoke_check_on_a_stereo_model(
    tiny_stereo_model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert load_smoke_check().main([str(tiny_stereo_model_dir), "--device", "cpu"]) == 0
    assert "smoke check passed: 1.00 s of audio at 8000 Hz, 2 channel(s)" in capsys.readouterr().out


def test_smoke_check_fails_without_cuda(
    tiny_model_dir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    smoke_check = load_smoke_check()
    monkeypatch.setattr(smoke_check.torch.cuda, "is_available", lambda: False)
    assert smoke_check.main([str(tiny_model_dir)]) == 1
    assert "CUDA is not available" in capsys.readouterr().err


def test_ami_bakes_the_unprivileged_worker_user_and_a_read_only_venv_and_model() -> None:
    (build,) = load(TEMPLATE)["build"]
    (shell,) = [p["shell"] for p in build["provisioner"] if "shell" in p]
    lines = shell["inline"]
    (useradd,) = [line for line in lines if line.startswith("useradd ")]
    assert useradd.split()[-1] == "musicgen"
    assert "--system" in useradd and "--shell /usr/sbin/nologin" in useradd
    # Its home is the unit's StateDirectory; nothing is created outside what systemd manages.
    assert "--home-dir /var/lib/musicgen-batch --no-create-home" in useradd
    assert "install -d -o musicgen -g musicgen -m 0750 /opt/musicgen/app" in lines
    assert 'chown -R root:root \\"$VENV_DIR\\" \\"$MODEL_DIR\\"' in lines
    assert 'chmod -R u+rwX,go+rX,go-w \\"$VENV_DIR\\" \\"$MODEL_DIR\\"' in lines
    (sandboxed,) = [line for line in lines if "sandboxed-smoke-check.sh" in line and line.startswith("bash ")]
    assert sandboxed.endswith('musicgen-smoke-check.py \\"$MODEL_DIR\\"')
    # The user and its folders come before the sandboxed check, and the clean-up after it.
    assert lines.index(useradd) < lines.index(sandboxed) < len(lines) - 1
    assert "/tmp/musicgen-sandbox.conf" in lines[-1] and lines[-1].startswith("rm ")


def test_the_sandboxed_smoke_check_runs_in_exactly_the_worker_units_sandbox(
    user_data_files: dict[str, str], tmp_path: Path
) -> None:
    """packer/sandboxed_smoke_check.sh with the file the template uploads, against a stand-in
    `systemd-run` that records its arguments: every setting of the worker units' sandbox drop-in
    (as the rendered UserData installs it) is one --property, in order, and nothing else; the
    program runs under it, and its exit status is the build step's."""
    (build,) = load(TEMPLATE)["build"]
    uploads = {p["file"]["destination"]: p["file"]["source"] for p in build["provisioner"] if "file" in p}
    assert uploads["/tmp/musicgen-sandbox.conf"].replace("${path.root}", str(PACKER_DIR)) == (
        f"{PACKER_DIR}/../{SANDBOX.relative_to(REPO_ROOT)}"
    )
    recorded = tmp_path / "systemd-run.json"
    stand_in = tmp_path / "bin" / "systemd-run"
    stand_in.parent.mkdir()
    stand_in.write_text(
        f"#!{sys.executable}\nimport json, sys\n"
        f"open({str(recorded)!r}, 'w').write(json.dumps(sys.argv[1:]))\nsys.exit(7)\n"
    )
    stand_in.chmod(0o755)
    done = subprocess.run(
        ["bash", str(PACKER_DIR / "sandboxed_smoke_check.sh"), str(SANDBOX), "/usr/bin/python3", "check.py", "/model"],
        env={"PATH": f"{stand_in.parent}:/usr/bin:/bin"}, capture_output=True, text=True, check=False,
    )
    assert done.returncode == 7, done.stderr
    argv = json.loads(recorded.read_text())
    assert {"--wait", "--pipe"} <= set(argv)
    assert argv[argv.index("--") + 1:] == ["/usr/bin/python3", "check.py", "/model"]
    passed = [a.removeprefix("--property=") for a in argv if a.startswith("--property=")]
    for unit in worker_units(user_data_files):
        installed = parse_unit(user_data_files[f"{UNIT_DIR}/{unit}.d/sandbox.conf"])
        assert passed == [f"{key}={value}" for key, value in installed["Service"]], unit


def test_ami_user_matches_the_worker_units(user_data_files: dict[str, str]) -> None:
    variables = blocks(TEMPLATE, "variable")
    for unit in worker_units(user_data_files).values():
        assert values(unit, "Service", "User") == ["musicgen"]
        assert values(unit, "Service", "StateDirectory") == ["musicgen-batch"]
        (checkout,) = values(unit, "Service", "ReadWritePaths")
        # The checkout is writable, the venv and the model are not (ProtectSystem=strict).
        for read_only in (variables["venv_dir"]["default"], variables["model_dir"]["default"]):
            assert not read_only.startswith(checkout) and not checkout.startswith(read_only)
