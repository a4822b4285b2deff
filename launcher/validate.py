"""The option values as click parameter types, checked while the command line is read, before
any AWS call, terraform run or file write: each refusal is one click.BadParameter line naming
the option and the value. Enumerated values (regions, instance types, terraform's audio_format
and bool variables) are case-insensitive and normalised to lower case."""

from __future__ import annotations

import difflib
import math
import os
import re
from collections.abc import Mapping
from typing import Any

import click

import contract.bucket
from contract.values import quoted
from launcher.options import OPTION_FOR_VARIABLE, REPLACED_VARIABLES, UsageError

# terraform variables whose values are names from a fixed list (variables.tf's validation).
ENUMERATED_VARIABLES = frozenset({"audio_format"})


def _option(param: click.Parameter | None) -> str:
    """The option as the user typed it; an argument by its metavar (DIR)."""
    if isinstance(param, click.Argument):
        return (param.metavar or param.name or "value").strip("[]")
    return param.opts[0] if param is not None and param.opts else "value"


class Bounded(click.ParamType):
    """A finite number within [low, high], or (low, high] when `above`: nan would slip through
    every comparison and reach terraform's variables, 1e-300 for 0.3 is a typo."""

    def __init__(
        self, kind: type, low: float, high: float, unit: str = "", *, above: bool
    ) -> None:
        self.kind, self.low, self.high, self.unit, self.above = kind, low, high, unit, above
        self.name = "integer" if kind is int else "number"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, self.kind) and not isinstance(value, bool):
            number = value
        else:
            number = self._read(str(value), param)
        if (number > self.low if self.above else number >= self.low) and number <= self.high:
            return number
        lower = f"more than {self.low:g}" if self.above else f"at least {self.low:g}"
        got = f"{number:g}" if isinstance(number, float) else str(number)
        raise click.BadParameter(
            f"{_option(param)} must be {lower} and at most {self.high:g}{self.unit} (got {got})"
        )

    def _read(self, text: str, param: click.Parameter | None) -> float:
        what = "a whole number" if self.kind is int else "a number"
        try:
            number = self.kind(text)
        except (ValueError, OverflowError):
            raise click.BadParameter(f"{_option(param)} must be {what} (got {quoted(text)})") from None
        if isinstance(number, float) and not math.isfinite(number):
            raise click.BadParameter(
                f"{_option(param)} must be a finite number (got {number:g})"
            )
        return number


class Pattern(click.ParamType):
    """A name that must match `pattern`, shown with an `example` when it does not."""

    name = "text"

    def __init__(self, pattern: re.Pattern[str], what: str, *, lower: bool = False) -> None:
        self.pattern, self.what, self.lower = pattern, what, lower

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        text = str(value).lower() if self.lower else str(value)
        if not self.pattern.match(text):
            raise click.BadParameter(f"{_option(param)} must be {self.what} (got {quoted(text)})")
        return text


class Place(click.ParamType):
    """A file or folder, refused when empty (which would silently mean this folder) or when the
    system refuses to look it up (a name over 255 bytes); one not there yet is the command's
    to judge."""

    name = "path"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if not str(value).strip():
            raise click.BadParameter(f"{_option(param)} is empty")
        try:
            os.stat(value)
        except (FileNotFoundError, NotADirectoryError):
            pass
        except OSError as exc:
            raise click.BadParameter(
                f"{_option(param)} {quoted(str(value))}: {exc.strerror or exc}"
            ) from None
        return value


class Bucket(click.ParamType):
    """NAME, NAME/PREFIX or s3://NAME/PREFIX, kept as given once it splits."""

    name = "bucket"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        try:
            contract.bucket.split_bucket(str(value))
        except ValueError as exc:
            raise click.BadParameter(f"--bucket: {exc}") from None
        return str(value)


class Variable(click.ParamType):
    """One --var KEY=VALUE as (KEY, VALUE); a variable the launcher sets from an option of its
    own, or one the worker group replaced, is refused by name."""

    name = "KEY=VALUE"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> tuple[str, str]:
        if isinstance(value, tuple):
            return value
        name, equals, text = str(value).partition("=")
        name = name.strip()
        if not equals or not name:
            raise click.BadParameter(f"--var expects KEY=VALUE (got {quoted(str(value))})")
        if name in OPTION_FOR_VARIABLE:
            raise click.BadParameter(f"use {OPTION_FOR_VARIABLE[name]} instead of --var {name}=...")
        if name in REPLACED_VARIABLES:
            raise click.BadParameter(f"--var {name}: {REPLACED_VARIABLES[name]}")
        return name, text


def split_bucket(bucket: str) -> tuple[str, str]:
    """(bucket, prefix) of a --bucket value, or one usage line saying what is wrong with it."""
    try:
        return contract.bucket.split_bucket(bucket)
    except ValueError as exc:
        raise UsageError(f"--bucket: {exc}") from None


def extra_variables(
    items: list[tuple[str, str]], declared: Mapping[str, str], source: str
) -> dict[str, str]:
    """--var items by name, each one the configuration declares, typed as terraform will read
    it. An undeclared name is refused: terraform would only warn about it among hundreds of
    lines, and apply without it. `declared` maps each variable to its type keyword; `source`
    names where they were read, for the error line."""
    extra: dict[str, str] = {}
    for name, value in items:
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
