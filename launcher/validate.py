"""The option values, checked before any AWS call, terraform run or file write: each refusal is
one UsageError line naming the option and the value. Enumerated values (regions, instance types,
terraform's audio_format and bool variables) are case-insensitive and normalised to lower case."""

from __future__ import annotations

import argparse
import difflib
import math
from collections.abc import Mapping

import contract.bucket
from contract.defaults import DEFAULT_INSTANCE_TYPE, MAX_HOURS, MAX_PRICE_USD_PER_HOUR
from launcher.options import (
    INSTANCE_TYPE_NAME,
    MAX_BOOT_OVERHEAD_MIN,
    MAX_PRICE_WINDOW_HOURS,
    MAX_REALTIME_FACTOR,
    MAX_WORKER_COUNT,
    MIN_REALTIME_FACTOR,
    OPTION_FOR_VARIABLE,
    REPLACED_VARIABLES,
    SSM_PARAMETER_NAME,
    UsageError,
)

# terraform variables whose values are names from a fixed list (variables.tf's validation).
ENUMERATED_VARIABLES = frozenset({"audio_format"})


def check_options(args: argparse.Namespace, declared: Mapping[str, str], source: str) -> dict[str, str]:
    """Extra terraform variables from --var, after refusing values no command could use; each
    command checks the options it has. `declared` maps each variable the terraform configuration
    declares to its type keyword; `source` names where they were read, for the error line."""
    numbers = ("max_price", "realtime_factor", "boot_overhead_min", "price_window_hours", "max_hours")
    for option in (name for name in numbers if hasattr(args, name)):
        value = getattr(args, option)
        # nan slips through every comparison below, and would reach terraform's variables.
        if not math.isfinite(value):
            raise UsageError(f"--{option.replace('_', '-')} must be a finite number (got {value:g})")
    if args.region is not None:
        args.region = args.region.lower()
    if args.bucket is not None:
        split_bucket(args.bucket)  # before any AWS call
    if args.command == "launch":
        _check_launch_options(args)
    elif args.command == "status":
        _check_max_price(args)
    return extra_variables(args.var, declared, source)


def split_bucket(bucket: str) -> tuple[str, str]:
    """(bucket, prefix) of a --bucket value, or one usage line saying what is wrong with it."""
    try:
        return contract.bucket.split_bucket(bucket)
    except ValueError as exc:
        raise UsageError(f"--bucket: {exc}") from None


def _within(option: str, value: float, low: float, high: float, unit: str = "", *, above: bool) -> None:
    """`value` must be above `low` (or at least `low` unless `above`) and at most `high`."""
    if (value > low if above else value >= low) and value <= high:
        return
    lower = f"more than {low:g}" if above else f"at least {low:g}"
    got = f"{value:g}" if isinstance(value, float) else str(value)
    raise UsageError(f"{option} must be {lower} and at most {high:g}{unit} (got {got})")


def _check_max_price(args: argparse.Namespace) -> None:
    # The worker refuses an hourly cost above the same bound, and terraform's max_price too.
    _within("--max-price", args.max_price, 0, MAX_PRICE_USD_PER_HOUR, " USD/h", above=True)


def _check_launch_options(args: argparse.Namespace) -> None:
    _within(
        "--price-window-hours", args.price_window_hours, 0, MAX_PRICE_WINDOW_HOURS,
        " (90 days of spot price history)", above=True,
    )
    _check_max_price(args)
    # A running group is raised back to the count it was launched with unless one is given.
    args.worker_count_given = args.worker_count is not None
    if args.worker_count is None:
        args.worker_count = 1
    _within("--worker-count", args.worker_count, 1, MAX_WORKER_COUNT, above=False)
    # Repeated types count once; the order given is kept. EC2's type names are lower case.
    given = args.instance_types or [DEFAULT_INSTANCE_TYPE]
    args.instance_types = list(dict.fromkeys(t.lower() for t in given))
    for instance_type in args.instance_types:
        if not INSTANCE_TYPE_NAME.match(instance_type):
            raise UsageError(
                f"--instance-type must be an EC2 instance type such as {DEFAULT_INSTANCE_TYPE} "
                f"(got {instance_type!r})"
            )
    _within("--max-hours", args.max_hours, 0, MAX_HOURS, " (30 days)", above=True)
    _within(
        "--realtime-factor", args.realtime_factor, MIN_REALTIME_FACTOR, MAX_REALTIME_FACTOR,
        " audio-s per second", above=False,
    )
    _within("--boot-overhead-min", args.boot_overhead_min, 0, MAX_BOOT_OVERHEAD_MIN, above=False)
    if args.git_token_parameter is not None and not SSM_PARAMETER_NAME.match(
        args.git_token_parameter
    ):
        raise UsageError(
            "--git-token-parameter must be an SSM parameter name such as /musicgen/git-token "
            f"(got {args.git_token_parameter!r})"
        )


def extra_variables(items: list[str], declared: Mapping[str, str], source: str) -> dict[str, str]:
    """--var KEY=VALUE items by name. A name the configuration does not declare is refused:
    terraform would only warn about it among hundreds of lines, and apply without it."""
    extra: dict[str, str] = {}
    for item in items:
        name, equals, value = item.partition("=")
        name = name.strip()
        if not equals or not name:
            raise UsageError(f"--var expects KEY=VALUE (got {item!r})")
        if name in OPTION_FOR_VARIABLE:
            raise UsageError(f"use {OPTION_FOR_VARIABLE[name]} instead of --var {name}=...")
        if name in REPLACED_VARIABLES:
            raise UsageError(f"--var {name}: {REPLACED_VARIABLES[name]}")
        if name not in declared:
            close = difflib.get_close_matches(name, declared, n=1)
            hint = f"; did you mean {close[0]}?" if close else ""
            raise UsageError(f"--var {name}: {source} declares no variable {name!r}{hint}")
        extra[name] = _typed_value(name, value, declared[name])
    return extra


def _typed_value(name: str, value: str, kind: str) -> str:
    """The value as terraform will convert it from the tfvars string: a number must parse, a
    bool is true or false in any case, an enumerated value is lower case."""
    if kind == "bool" or name in ENUMERATED_VARIABLES:
        value = value.strip().lower()
    if kind == "bool" and value not in ("true", "false"):
        raise UsageError(f"--var {name}={value!r}: must be true or false")
    if kind == "number":
        try:
            number = float(value)
        except ValueError:
            number = math.nan
        if not math.isfinite(number):
            raise UsageError(f"--var {name}={value!r}: must be a number")
    return value
