"""How the user started the launcher, so that the commands it suggests (`… launcher status`) are
the ones that work where the user typed them: `.venv/bin/python launcher`, `python -m launcher`
in an activated venv, or the console script `musicgen-launcher`. `command` decides, from what
the process was started with; nothing else in the launcher spells the program's name."""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

SCRIPT = "musicgen-launcher"


def command(
    argv0: str,
    executable: str,
    orig_argv: Sequence[str],
    cwd: Path,
    which: Callable[[str], str | None] = shutil.which,
) -> str:
    """The command line that starts the launcher again the same way, without its options."""
    if Path(argv0).name == SCRIPT:
        return _program(argv0, cwd, which)
    python = _program(executable, cwd, which)
    if "-m" in orig_argv[1:]:
        return f"{python} -m launcher"
    # `python launcher` runs the folder as a script: argv[0] is the path as the user typed it.
    return f"{python} {_shown(Path(argv0), cwd)}"


def current() -> str:
    """`command` for this process."""
    return command(sys.argv[0], sys.executable, getattr(sys, "orig_argv", sys.argv), Path.cwd())


def _program(path: str, cwd: Path, which: Callable[[str], str | None]) -> str:
    """A program as the user can type it here: its bare name when PATH finds this very file
    (an activated venv), else its path, relative to the current folder when inside it."""
    name = Path(path).name
    found = which(name)
    if found and _same(found, path):
        return name
    return _shown(Path(path), cwd)


def _same(a: str, b: str) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _shown(path: Path, cwd: Path) -> str:
    absolute = Path(os.path.normpath(path if path.is_absolute() else cwd / path))
    try:
        return str(absolute.relative_to(cwd))
    except ValueError:
        return str(absolute)
