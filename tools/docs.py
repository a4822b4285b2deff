"""`make docs`: the option tables in docs/ come from the click commands and terraform's
variables.tf, written between marker comments so the prose around them stays hand-written.

`python -m tools.docs` rewrites the files; `python -m tools.docs --check` changes nothing and
exits 1 naming each stale file (tests/test_docs.py runs the same comparison)."""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
import hcl2

REPO_ROOT = Path(__file__).resolve().parent.parent
NOT_SET = "not set"


# ---------------------------------------------------------------------------------------------
# Reading a click command


@dataclass(frozen=True)
class Row:
    """One parameter of a command as the docs show it."""

    invocation: str
    env: str | None
    default: str
    default_is_code: bool
    meaning: str


@dataclass(frozen=True)
class Command:
    """A command and, for a click group, its subcommands (each a Command of its own)."""

    prog: str
    help: str
    rows: list[Row]
    subcommands: list[Command]


def read_command(command: click.Command, prog: str | None = None, help: str = "") -> Command:
    """The command's parameters as declared: defaults are the declared ones and each option's
    environment variable is its envvar, so the user's own variables never reach the docs."""
    prog = prog or command.name or ""
    rows = [_row(param) for param in command.params if not _is_help(param)]
    subcommands: list[Command] = []
    if isinstance(command, click.Group):
        with click.Context(command, info_name=prog) as ctx:
            for name in command.list_commands(ctx):
                sub = command.commands[name]
                subcommands.append(read_command(sub, f"{prog} {name}", sub.short_help or ""))
    return Command(prog=prog, help=help, rows=rows, subcommands=subcommands)


def _is_help(param: click.Parameter) -> bool:
    return isinstance(param, click.Option) and "--help" in param.opts


def _row(param: click.Parameter) -> Row:
    env = param.envvar if isinstance(param.envvar, str) else None
    meaning = " ".join((getattr(param, "help", None) or "").split())
    if env:
        # A help text that restates its variable in brackets ("[MUSICGEN_X, default 1]"): the
        # table has columns for both.
        meaning = re.sub(r"\s*\[" + re.escape(env) + r"\b[^\]]*\]", "", meaning)
    stated, meaning = _stated_default(meaning)
    if stated is not None:
        default, is_code = stated, _is_value(stated, param.default)
    else:
        default, is_code = _shown_default(param)
    if is_code and meaning == default:
        meaning = ""  # a help text that is only the default says nothing more
    if isinstance(param.type, click.Choice):
        choices = ", ".join(f"`{choice}`" for choice in param.type.choices)
        meaning = f"{meaning}; one of {choices}" if meaning else f"one of {choices}"
    if getattr(param, "multiple", False) and "repeat" not in meaning.lower():
        meaning = f"{meaning} (repeatable)" if meaning else "repeatable"
    return Row(_invocation(param), env, default, is_code, meaning)


def _stated_default(text: str) -> tuple[str | None, str]:
    """A "(default: X)" or "(default X)" the help text states, and the text without it."""
    for found in re.finditer(r"\(default:?\s", text):
        depth = 0
        for end in range(found.start(), len(text)):
            depth += {"(": 1, ")": -1}.get(text[end], 0)
            if depth == 0:
                stated = text[found.end() : end].strip()
                rest = (text[: found.start()].rstrip() + " " + text[end + 1 :].lstrip()).strip()
                return stated, re.sub(r"\s+([,;.])", r"\1", rest)
    return None, text


def _is_value(stated: str, default: Any) -> bool:
    """Whether a default the help text states is the parameter's own default value, written
    out (shown as code) rather than a description of it."""
    if stated == str(default):
        return True
    try:
        return isinstance(default, int | float) and float(stated) == default
    except ValueError:
        return False


def _shown_default(param: click.Parameter) -> tuple[str, bool]:
    """The default as the table shows it, and whether it is a literal value (shown as code)."""
    default = param.default
    if not isinstance(default, str | int | float | Path | list | tuple):
        default = None  # click's marker for an option without a default
    if isinstance(param, click.Option) and param.is_flag:
        if param.secondary_opts:
            return ("on" if default else "off"), False
        return "", False  # a flag is on when given
    if default is None and isinstance(param, click.Argument):
        return "", False  # an optional argument is simply left out
    if default is None:
        return ("", False) if getattr(param, "multiple", False) else (NOT_SET, False)
    if isinstance(default, list | tuple):
        return (", ".join(str(item) for item in default), True) if default else ("", False)
    if isinstance(default, Path) or (isinstance(default, str) and os.path.isabs(default)):
        # A path inside the checkout is shown relative to it, the same on every machine.
        path = Path(default)
        if path.is_relative_to(REPO_ROOT):
            return f"{path.relative_to(REPO_ROOT).as_posix()}/", True
    if isinstance(default, str) and not default:
        return '""', True
    return str(default), True


def _invocation(param: click.Parameter) -> str:
    if isinstance(param, click.Argument):
        name = param.metavar or (param.name or "").upper()
        return name if param.required or name.startswith("[") else f"[{name}]"
    assert isinstance(param, click.Option)
    flags = ", ".join(param.opts)
    if param.is_flag:
        return ", ".join([flags, *param.secondary_opts])
    metavar = param.metavar or (param.name or "").upper()
    return f"{flags} {' '.join([metavar] * param.nargs)}"


# ---------------------------------------------------------------------------------------------
# Markdown


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def _code(text: str) -> str:
    return f"`` {text} ``" if "`" in text else f"`{text}`"


def options_markdown(command: Command) -> str:
    """A table of the command's arguments, then a section per subcommand (recursively)."""
    blocks: list[str] = []
    if command.rows:
        with_env = any(row.env for row in command.rows)
        header = ["Option", "Environment", "Default", "Meaning"] if with_env else [
            "Option", "Default", "Meaning"
        ]
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for row in command.rows:
            cells = [_code(row.invocation)]
            if with_env:
                cells.append(_code(row.env) if row.env else "")
            default = _code(row.default) if row.default_is_code else row.default
            cells += [default, row.meaning]
            lines.append("| " + " | ".join(_cell(cell) for cell in cells) + " |")
        blocks.append("\n".join(lines))
    for sub in command.subcommands:
        section = [f"### `{sub.prog}`", " ".join(sub.help.split()), options_markdown(sub)]
        blocks.append("\n\n".join(part for part in section if part))
    return "\n\n".join(blocks)


# ---------------------------------------------------------------------------------------------
# Terraform variables


def _hcl_value(value: Any) -> Any:
    """python-hcl2's value without its bookkeeping keys and the quotes it keeps on strings."""
    if isinstance(value, dict):
        return {
            _hcl_value(k): _hcl_value(v) for k, v in value.items() if not str(k).startswith("__")
        }
    if isinstance(value, list):
        return [_hcl_value(item) for item in value]
    if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] == '"':
        return _HCL_ESCAPE.sub(lambda m: _HCL_ESCAPES[m.group(1)], value[1:-1])
    return value


# python-hcl2 keeps a literal string's escapes as written (e.g. [\"a\"]).
_HCL_ESCAPES = {'"': '"', "\\": "\\", "n": "\n", "t": "\t", "r": "\r"}
_HCL_ESCAPE = re.compile(r'\\(["\\ntr])')


def _hcl_expression(value: Any) -> str:
    """A type or expression as written in HCL (python-hcl2 wraps some in ${...})."""
    text = str(value)
    if text.startswith("${") and text.endswith("}"):
        text = text[2:-1]
    return text


def variables_markdown(variables_tf: Path) -> str:
    with variables_tf.open() as handle:
        blocks = hcl2.load(handle).get("variable", [])
    lines = ["| Variable | Type | Default | Description |", "|---|---|---|---|"]
    for block in blocks:
        for label, body in block.items():
            name = _hcl_value(label)
            body = _hcl_value(body)
            kind = _hcl_expression(body.get("type", "any"))
            if "default" in body:
                value = body["default"]
                shown = value if isinstance(value, str) and value.startswith("${") else None
                default = _code(
                    _hcl_expression(shown) if shown else json.dumps(value, ensure_ascii=False)
                )
            else:
                default = "required"
            cells = [_code(name), _code(kind), default, body.get("description", "")]
            lines.append("| " + " | ".join(_cell(str(cell)) for cell in cells) + " |")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# The files


def _worker_options() -> str:
    from worker.cli import command

    return options_markdown(read_command(command))


def _launcher_options() -> str:
    from launcher.cli import cli

    return options_markdown(read_command(cli))


def _terraform_variables() -> str:
    return variables_markdown(REPO_ROOT / "terraform" / "variables.tf")


# file -> {marker name: what goes between its markers}
SECTIONS: dict[str, dict[str, Callable[[], str]]] = {
    "docs/worker.md": {"worker-options": _worker_options},
    "docs/launcher.md": {"launcher-options": _launcher_options},
    "docs/deploy.md": {"terraform-variables": _terraform_variables},
}


class MarkerError(Exception):
    pass


def begin_marker(name: str) -> str:
    return f"<!-- BEGIN {name}: generated by `make docs` from the code; do not edit -->"


def end_marker(name: str) -> str:
    return f"<!-- END {name} -->"


def fill(text: str, name: str, content: str) -> str:
    """`text` with everything between the two markers named `name` replaced by `content`."""
    begin, end = begin_marker(name), end_marker(name)
    if text.count(begin) != 1 or text.count(end) != 1:
        raise MarkerError(f"needs exactly one pair of markers {begin!r} ... {end!r}")
    head, rest = text.split(begin)
    _, tail = rest.split(end)
    # Blank lines around the content, so a Markdown table neither swallows nor is cut by a marker.
    return f"{head}{begin}\n\n{content}\n\n{end}{tail}"


def generated(root: Path = REPO_ROOT) -> dict[Path, str]:
    """Every docs file as `make docs` writes it."""
    files: dict[Path, str] = {}
    for relative, sections in SECTIONS.items():
        path = root / relative
        text = path.read_text(encoding="utf-8")
        for name, build in sections.items():
            try:
                text = fill(text, name, build())
            except MarkerError as error:
                raise MarkerError(f"{relative}: {error}") from None
        files[path] = text
    return files


def main(argv: list[str] | None = None, root: Path = REPO_ROOT) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.docs", description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if stale")
    args = parser.parse_args(argv)
    try:
        files = generated(root)
    except MarkerError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    changed = [path for path, text in files.items() if path.read_text(encoding="utf-8") != text]
    for path in changed:
        shown = path.relative_to(root).as_posix()
        if args.check:
            print(f"{shown} is stale: run make docs", file=sys.stderr)
        else:
            path.write_text(files[path], encoding="utf-8")
            print(f"updated {shown}")
    return 1 if args.check and changed else 0


if __name__ == "__main__":
    raise SystemExit(main())
