"""The worker's systemd units as the instance gets them: the module's own ``templatefile`` call
rendered by the real terraform binary, the files its heredocs write, and those files laid out
under a temporary root for ``systemd-analyze``.

- ``user_data_payload(settings)``: the UserData bytes EC2 gets (gzip), for the module's variables.
- ``render_user_data(settings)``: the script cloud-init runs from them.
- ``written_files(script)``: ``{absolute path: text}`` of every ``cat > PATH <<'TAG'`` heredoc, and
  of every ``install -m MODE SOURCE PATH`` copy of one.
- ``worker_units(files)``: every unit that runs code from the git checkout (each GPU's
  ``musicgen-worker@.service``, ``musicgen-checkout.service``) with its drop-ins merged, as
  systemd reads it. The boot unit ``musicgen-worker.service`` is not one: it runs as root and only
  starts them.
- ``unit_root(dest, files)``: a root folder for ``systemd-analyze --root``: the written files,
  the host's own system units, and an executable stand-in for any program a unit runs that the
  script does not write (the AMI provides those).
"""

from __future__ import annotations

import base64
import gzip
import json
import re
import shutil
import subprocess
from pathlib import Path

from tests import tf_support
from tests.hcl import blocks

WORKER_MODULE = tf_support.TERRAFORM_DIR / "modules" / "worker"
UNIT_DIR = "/etc/systemd/system"
WORKER_UNIT = re.compile(r"musicgen-(worker@[^/]*|checkout|scale-in)\.service")
BOOT_UNIT = "musicgen-worker.service"
HEREDOC = re.compile(r"^cat > (\S+) <<'(\w+)'\n(.*?)\n\2$", re.MULTILINE | re.DOTALL)
COPY = re.compile(r"^install -m [0-7]+ (/\S+) (/\S+)$", re.MULTILINE)
HOST_UNITS = Path("/lib/systemd/system")

# The worker module's variables the root computes (the others take the root's defaults).
REQUIRED_VARIABLES = {
    "git_repo_url": "https://git.example.com/music/songs.git",
    "bucket_name": "musicgen-batch-units",
    "region": "us-east-1",
    "instance_profile_name": "musicgen-batch-worker",
    "autoscaling_group_name": "musicgen-batch-workers-musicgen-batch-units",
    "vpc_id": "vpc-0123456789abcdef0",
    "subnet_ids": '["subnet-0123456789abcdef0"]',
}


def user_data_expression() -> str:
    """The worker's ``user_data`` expression (the encoding around the ``templatefile(...)`` call),
    verbatim from main.tf."""
    text = (WORKER_MODULE / "main.tf").read_text()
    start = text.index("=", text.index("\n  user_data")) + 1
    start += len(text[start:]) - len(text[start:].lstrip())
    depth, in_string, index = 0, False, start
    while True:
        char = text[index]
        if in_string:
            if char == "\\":
                index += 1
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
            if depth == 0:
                return text[start : index + 1]
        index += 1


def root_defaults() -> dict[str, str]:
    """The root's default of each worker-module variable the root declares too, as ``-var``
    text: the module's inputs have no defaults of their own."""
    declared = blocks(tf_support.TERRAFORM_DIR / "variables.tf", "variable")
    values = {}
    for name in blocks(WORKER_MODULE / "variables.tf", "variable"):
        if "default" in declared.get(name, {}):
            default = declared[name]["default"]
            values[name] = default if isinstance(default, str) else json.dumps(default)
    return values


def user_data_payload(workdir: Path, settings: dict[str, str] | None = None) -> bytes:
    """What EC2 receives and counts, base64-decoded: the module's own ``user_data`` expression
    evaluated with ``terraform console``, from the module's variables.tf and templates next to one
    local holding it (no provider, so no ``init``)."""
    workdir.mkdir(parents=True, exist_ok=True)
    shutil.copy(WORKER_MODULE / "variables.tf", workdir / "variables.tf")
    for folder in ("templates", "files"):
        shutil.copytree(WORKER_MODULE / folder, workdir / folder, dirs_exist_ok=True)
    (workdir / "render.tf").write_text(f"locals {{\n  user_data = {user_data_expression()}\n}}\n")
    values = {**root_defaults(), **REQUIRED_VARIABLES, **(settings or {})}
    args = [arg for name, value in values.items() for arg in ("-var", f"{name}={value}")]
    binary = tf_support.terraform_binary()
    if binary is None:
        raise RuntimeError(tf_support.skip_reason())
    result = subprocess.run(
        [binary, "console", *args],
        input="local.user_data\n",
        cwd=workdir,
        env=tf_support.terraform_env(workdir / "tf"),
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return base64.b64decode(result.stdout.strip().strip('"'))


def render_user_data(workdir: Path, settings: dict[str, str] | None = None) -> str:
    """The script cloud-init runs: the payload, uncompressed as cloud-init does gzip content."""
    return gzip.decompress(user_data_payload(workdir, settings)).decode()


def written_files(script: str) -> dict[str, str]:
    files = {path: body + "\n" for path, _, body in HEREDOC.findall(script)}
    for source, dest in COPY.findall(script):
        files[dest] = files[source]
    return files


def parse_unit(text: str) -> dict[str, list[tuple[str, str]]]:
    """Sections to ordered (key, value) pairs; comments and blank lines dropped."""
    sections: dict[str, list[tuple[str, str]]] = {}
    current: list[tuple[str, str]] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], [])
            continue
        key, _, value = line.partition("=")
        current.append((key.strip(), value.strip()))
    return sections


def unit_with_dropins(name: str, files: dict[str, str]) -> dict[str, list[tuple[str, str]]]:
    merged = parse_unit(files[f"{UNIT_DIR}/{name}"])
    dropins = sorted(p for p in files if p.startswith(f"{UNIT_DIR}/{name}.d/"))
    for path in dropins:
        for section, entries in parse_unit(files[path]).items():
            merged.setdefault(section, []).extend(entries)
    return merged


def unit_names(files: dict[str, str]) -> list[str]:
    return sorted(
        p.removeprefix(f"{UNIT_DIR}/")
        for p in files
        if p.startswith(f"{UNIT_DIR}/") and p.count("/") == 4 and p.endswith(".service")
    )


def worker_units(files: dict[str, str]) -> dict[str, dict[str, list[tuple[str, str]]]]:
    return {
        name: unit_with_dropins(name, files)
        for name in unit_names(files)
        if WORKER_UNIT.fullmatch(name)
    }


def instance_name(name: str) -> str:
    """A name systemd-analyze reports under: a template unit as its instance 0."""
    return name.replace("@.", "@0.")


def values(unit: dict[str, list[tuple[str, str]]], section: str, key: str) -> list[str]:
    return [value for k, value in unit.get(section, []) if k == key]


def exec_programs(unit: dict[str, list[tuple[str, str]]]) -> list[tuple[str, str, str]]:
    """(setting, prefixes, program) of every Exec*= line: ``+/usr/bin/x`` -> ('+', '/usr/bin/x')."""
    found = []
    for key, value in unit.get("Service", []):
        if key.startswith("Exec") and value:
            command = value.split()[0]
            program = command.lstrip("-+!@:|")
            found.append((key, command[: len(command) - len(program)], program))
    return found


def unit_root(dest: Path, files: dict[str, str]) -> Path:
    for path, text in files.items():
        target = dest / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
        if text.startswith("#!"):
            target.chmod(0o755)
    shutil.copytree(HOST_UNITS, dest / "usr" / "lib" / "systemd" / "system", symlinks=True)
    for name in unit_names(files):
        unit = unit_with_dropins(name, files)
        for _, _, program in exec_programs(unit):
            stand_in = dest / program.lstrip("/")
            if not stand_in.exists():
                stand_in.parent.mkdir(parents=True, exist_ok=True)
                stand_in.write_text("#!/bin/sh\n")
                stand_in.chmod(0o755)
    return dest
