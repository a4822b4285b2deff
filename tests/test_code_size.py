"""The product's code stays readable in one sitting: no function longer than a screenful or two
(80 lines) and no module longer than 500 lines, in the worker, the launcher and the contract."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("contract", "launcher", "worker")
MAX_FUNCTION_LINES = 80
MAX_MODULE_LINES = 500

MODULES = sorted(path for package in PACKAGES for path in (ROOT / package).rglob("*.py"))


def too_long_functions(source: str) -> list[tuple[str, int]]:
    """(name, lines) of every function or method in `source` longer than MAX_FUNCTION_LINES."""
    return [
        (node.name, node.end_lineno - node.lineno + 1)
        for node in ast.walk(ast.parse(source))
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
        and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES
    ]


def test_the_rule_sees_a_long_method_and_not_a_short_one() -> None:
    long_body = "\n".join(f"        x{i} = {i}" for i in range(MAX_FUNCTION_LINES))
    source = f"class A:\n    def long(self):\n{long_body}\n\n    def short(self):\n        return 1\n"
    assert too_long_functions(source) == [("long", MAX_FUNCTION_LINES + 1)]


@pytest.mark.parametrize("path", MODULES, ids=lambda path: str(path.relative_to(ROOT)))
def test_modules_and_functions_stay_short(path: Path) -> None:
    source = path.read_text()
    assert len(source.splitlines()) <= MAX_MODULE_LINES
    assert too_long_functions(source) == []
