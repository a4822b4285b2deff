"""Reading the worker's option values: numbers, choices and places, as click parameter types.

Every refusal is one line that names the option, its variable and the value (quoted by
contract.values.quoted), raised while the command line is read, before the model loads;
worker/cli.py prints it and exits 2. No torch, no network: only the local file system is
looked at.
"""

from __future__ import annotations

import math
import os
import urllib.parse
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import click

from contract.bucket import is_s3_uri
from contract.values import number, parse_float, parse_int, quoted
from worker.store.store import local_path

# Bounds a working setting never reaches; beyond them a value is a typo (18000 for 1.8) or
# would overflow tensor sizes and timers.
MAX_WINDOW_S = 600.0
MAX_TOP_K = 1 << 20
MAX_TEMPERATURE = 100.0
MAX_GUIDANCE_SCALE = 100.0
MAX_SEED = (1 << 63) - 1
MAX_POLL_S = 3600.0
MAX_ATTEMPTS = 100
MIN_LEASE_S = 0.5
MAX_GPUS = 64
MAX_THREADS = 4096
MAX_ACCESS_WAIT_S = 3600.0
# A target outside these bounds is a typo (-140, +14) rather than a level anyone masters to.
LOUDNESS_RANGE_LUFS = (-50.0, -5.0)
MAX_FADE_OUT_S = 60.0
# A worker id names leases and records; a host name and two numbers are far shorter.
MAX_WORKER_ID_CHARS = 200


class UsageError(Exception):
    pass


def option_name(param: click.Parameter | None) -> str:
    """How a refusal names an option: `--window-s/MUSICGEN_WINDOW_S`."""
    if param is None or not param.opts:
        return "value"
    return f"{param.opts[0]}/{param.envvar}" if isinstance(param.envvar, str) else param.opts[0]


class Checked(click.ParamType):
    """A value read by `read(name, text)`, which raises UsageError naming the option."""

    def __init__(self, read: Callable[[str, str], Any], name: str = "text") -> None:
        self.read, self.name = read, name

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        try:
            return self.read(option_name(param), value)
        except UsageError as error:
            raise click.BadParameter(str(error)) from None


def numeric(convert: Callable, *checks: tuple[Callable, str]) -> Checked:
    """A number read by worker.values.parse_int or parse_float, each check passed."""
    return Checked(
        lambda name, value: typed(convert, name, str(value), *checks),
        "integer" if convert is parse_int else "float",
    )


def one_of(choices: Sequence[str]) -> Checked:
    return Checked(lambda name, value: choice(name, value, choices), "choice")


def typed(convert: Callable, name: str, value: str | None, *checks: tuple[Callable, str]):
    """`value` read by contract.values.parse_int or parse_float (ASCII digits only), each check
    passed; else UsageError naming the option, its variable and the value."""
    if value is None:
        return None
    try:
        result = convert(value)
    except ValueError as error:
        raise UsageError(f"{name}={quoted(value)} {error}") from None
    # nan passes every comparison as False, and inf overflows the frame arithmetic.
    if isinstance(result, float) and not math.isfinite(result):
        raise UsageError(f"{name}={quoted(value)}: must be a finite number")
    for check, what in checks:
        if not check(result):
            raise UsageError(f"{name}={quoted(value)}: {what}")
    return result


def at_most(high: float) -> tuple[Callable, str]:
    return (lambda v: v <= high), f"must be <= {number(high)}"


def at_least(low: float) -> tuple[Callable, str]:
    return (lambda v: v >= low), f"must be >= {number(low)}"


def loudness(name: str, value: str) -> float | None:
    """A loudness target in LUFS, or off (keep the decoder's level)."""
    if value.strip().lower() == "off":
        return None
    low, high = LOUDNESS_RANGE_LUFS
    return typed(
        parse_float, name, value,
        (lambda v: low <= v <= high, f"must be between {low:g} and {high:g} LUFS, or off"),
    )


def choice(name: str, value: str, choices: Sequence[str]) -> str:
    """An enumerated value, case-insensitive and normalised to lower case (`FLAC`, `Float16`)."""
    normal = value.strip().lower()
    if normal not in choices:
        raise UsageError(f"{name}={quoted(value)}: must be one of {', '.join(choices)}")
    return normal


def place(name: str, value: str) -> str:
    """A file or folder option, refused when empty (which would silently mean this folder)."""
    if not value.strip():
        raise UsageError(f"{name} is empty")
    return value


def existing(name: str, value: str) -> Path | None:
    """The resolved local path `value` names if something is there, None if nothing is;
    UsageError for a path the system refuses to look up (a name over 255 bytes, no permission)."""
    path = local_path(value)
    try:
        return path.resolve() if path.exists() else None
    except OSError as error:
        raise UsageError(f"{name}={quoted(value)}: {error.strerror or error}") from None


def spool_folder(name: str, value: str) -> str:
    """The spool folder, `~` expanded: a local folder, since songs wait there for the output."""
    if is_s3_uri(place(name, value)):
        raise UsageError(f"{name}={quoted(value)}: must be a local folder (songs wait there until stored)")
    existing(name, value)
    return str(local_path(value))


def check_model(name: str, model: str) -> str:
    """A hub id is `name` or `org/name`; anything else is meant as a folder, which must exist."""
    path = existing(name, place(name, model))
    looks_like_path = (
        model.startswith((".", "/", "~")) or model.count("/") > 1 or "\\" in model or path is not None
    )
    if not looks_like_path:
        return model
    if path is None:
        raise UsageError(f"{name}: folder {quoted(model)} does not exist")
    if not path.is_dir():
        raise UsageError(f"{name}: {quoted(model)} is a file, not a save_pretrained folder")
    if not (path / "config.json").is_file():
        raise UsageError(f"{name}: folder {quoted(model)} has no config.json (not a saved model)")
    return model


def imds_endpoint(name: str, value: str) -> str:
    try:
        parsed = urllib.parse.urlsplit(value)
        parsed.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError:
        parsed = None
    if parsed is None or parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise UsageError(
            f"{name}={quoted(value)}: must be an http:// URL such as http://169.254.169.254"
        )
    return value


def worker_id(name: str, value: str) -> str:
    if not value.strip() or not value.isprintable():
        raise UsageError(f"{name}={quoted(value)}: must be printable text")
    if len(value) > MAX_WORKER_ID_CHARS:
        raise UsageError(f"{name}={quoted(value)}: must be at most {MAX_WORKER_ID_CHARS} characters")
    return value


def omp_num_threads() -> int | None:
    """OMP_NUM_THREADS's thread count, if set. OpenMP defines it as a comma-separated list of
    positive integers, one per nesting level (libgomp's manual, "OMP_NUM_THREADS",
    https://gcc.gnu.org/onlinedocs/libgomp/OMP_005fNUM_005fTHREADS.html); torch's CPU kernels
    run at the outermost level, the first. Empty counts as unset, as for the worker's own."""
    value = os.environ.get("OMP_NUM_THREADS", "")
    if not value.strip():
        return None
    return typed(parse_int, "OMP_NUM_THREADS", value.split(",")[0], at_least(1), at_most(MAX_THREADS))
