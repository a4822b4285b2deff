"""`make docs`: the option tables in docs/ come from the argparse parsers and terraform's
variables.tf, written between marker comments so the prose around them stays hand-written.

`python -m tools.docs` rewrites the files; `python -m tools.docs --check` changes nothing and
exits 1 naming each stale file (tests/test_docs.py runs the same comparison)."""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from unittest import mock

import hcl2

REPO_ROOT = Path(__file__).resolve().parent.parent
NOT_SET = "not set"


# ---------------------------------------------------------------------------------------------
# Reading a parser


@dataclass(frozen=True)
class Row:
    """One argument of a parser as the docs show it."""

    invocation: str
    env: str | None
    default: str
    default_is_code: bool
    meaning: str


@dataclass(frozen=True)
class Command:
    """A parser and, for argparse subparsers, its subcommands (each a Command of its own)."""

    prog: str
    help: str
    rows: list[Row]
    subcommands: list[Command]


class _Probe(dict):
    """Stands in for os.environ while a parser is built: every variable reads as a marker naming
    it, so an option whose default comes from the environment shows which variable it reads."""

    def __getitem__(self, name: str) -> str:
        return f"{{env:{name}}}"

    def get(self, name: str, default: Any = None) -> str:
        return self[name]

    def __contains__(self, name: object) -> bool:
        return True


_PROBED = re.compile(r"\{env:([A-Za-z_][A-Za-z0-9_]*)\}")


@contextmanager
def _environment(environ: Mapping[str, str]) -> Iterator[None]:
    with mock.patch.object(os, "environ", environ):
        yield


def read_command(build_parser: Callable[[], argparse.ArgumentParser]) -> Command:
    """The parser's arguments with their defaults as an empty environment gives them (the
    user's own variables never leak into the docs) and the variable each default reads."""
    with _environment({}):
        plain = build_parser()
    with _environment(_Probe()):
        probed = build_parser()
    return _command(plain, probed, help="")


def _command(plain: argparse.ArgumentParser, probed: argparse.ArgumentParser, help: str) -> Command:
    probed_actions = {_key(action): action for action in probed._actions}
    rows: list[Row] = []
    subcommands: list[Command] = []
    for action in plain._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        twin = probed_actions.get(_key(action), action)
        if isinstance(action, argparse._SubParsersAction):
            helps = {choice.dest: choice.help or "" for choice in action._choices_actions}
            for name, subparser in action.choices.items():
                subcommands.append(
                    _command(subparser, twin.choices[name], help=helps.get(name, ""))
                )
            continue
        rows.append(_row(action, twin, plain.prog))
    return Command(prog=plain.prog, help=help, rows=rows, subcommands=subcommands)


def _key(action: argparse.Action) -> tuple[str, ...]:
    return tuple(action.option_strings) or (action.dest,)


def _row(action: argparse.Action, probed: argparse.Action, prog: str) -> Row:
    found = _PROBED.search(str(probed.default))
    env = found.group(1) if found else None
    meaning = _expanded_help(action, prog)
    if env:
        # A help text that restates its variable in brackets ("[MUSICGEN_X, default 1]"): the
        # table has columns for both.
        meaning = re.sub(r"\s*\[" + re.escape(env) + r"\b[^\]]*\]", "", meaning)
    stated, meaning = _stated_default(meaning)
    if isinstance(action, argparse.BooleanOptionalAction) and stated == str(action.default):
        stated = None  # the "(default: False)" some Python versions append to its help
    if stated is not None:
        default, is_code = stated, _is_value(stated, action.default)
    else:
        default, is_code = _shown_default(action)
    if is_code and meaning == default:
        meaning = ""  # a help text that is only the default says nothing more
    if action.choices is not None and not isinstance(action.choices, Mapping):
        choices = ", ".join(f"`{choice}`" for choice in action.choices)
        meaning = f"{meaning}; one of {choices}" if meaning else f"one of {choices}"
    repeatable = argparse._AppendAction | argparse._ExtendAction | argparse._CountAction
    if isinstance(action, repeatable) and "repeat" not in meaning.lower():
        meaning = f"{meaning} (repeatable)" if meaning else "repeatable"
    return Row(_invocation(action), env, default, is_code, meaning)


def _expanded_help(action: argparse.Action, prog: str) -> str:
    """The help text with its %(default)s-style fields filled in, as `--help` prints it."""
    if not action.help or action.help is argparse.SUPPRESS:
        return ""
    params = {k: v for k, v in vars(action).items() if v is not argparse.SUPPRESS}
    params["prog"] = prog
    if params.get("choices") is not None:
        params["choices"] = ", ".join(str(choice) for choice in params["choices"])
    return " ".join((action.help % params).split())


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
    """Whether a default the help text states is the parser's own default value, written out
    (shown as code) rather than a description of it."""
    if stated == str(default):
        return True
    try:
        return isinstance(default, int | float) and float(stated) == default
    except ValueError:
        return False


def _shown_default(action: argparse.Action) -> tuple[str, bool]:
    """The default as the table shows it, and whether it is a literal value (shown as code)."""
    default = action.default
    if isinstance(action, argparse.BooleanOptionalAction) and isinstance(default, bool):
        return ("on" if default else "off"), False
    if action.nargs == 0 or (default is None and not action.option_strings):
        # A flag is on when given; an optional positional is simply left out.
        return "", False
    if default is None or default is argparse.SUPPRESS:
        return NOT_SET, False
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


def _invocation(action: argparse.Action) -> str:
    if not action.option_strings:
        name = action.metavar or action.dest
        return f"[{name}]" if action.nargs in ("?", "*") else name
    flags = ", ".join(action.option_strings)
    if action.nargs == 0:
        return flags
    metavar = action.metavar or action.dest.upper()
    if isinstance(metavar, tuple):
        metavar = " ".join(metavar)
    shapes = {
        None: metavar,
        "?": f"[{metavar}]",
        "*": f"[{metavar} ...]",
        "+": f"{metavar} [{metavar} ...]",
    }
    shape = shapes.get(action.nargs) if not isinstance(action.nargs, int) else None
    if shape is None:
        shape = " ".join([metavar] * action.nargs) if isinstance(action.nargs, int) else metavar
    return f"{flags} {shape}"


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
    from worker.cli import build_parser

    return options_markdown(read_command(build_parser))


def _launcher_options() -> str:
    from launcher.cli import build_parser

    return options_markdown(read_command(build_parser))


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
