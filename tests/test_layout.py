"""The tests' own layout: shared fakes and fixtures live in tests/support/, tests/conftest.py and
the helper modules beside it, never in a test module that others import (pytest would then
collect that module's tests twice over, and a fixture's home would depend on import order)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent


def is_test_module(name: str) -> bool:
    return name.split(".")[-1].startswith("test_")


def imported_modules(path: Path, root: Path = TESTS.parent) -> list[tuple[int, str]]:
    """Every module `path` (a file under `root`) imports, with its line, as dotted names
    resolved against its package (`from tests import test_x` counts as `tests.test_x`)."""
    package = ".".join(path.relative_to(root).parent.parts)
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parent, *([base] if base else [])])
            found.append((node.lineno, base))
            found += [(node.lineno, f"{base}.{alias.name}") for alias in node.names]
    return found


def test_imported_modules_resolves_every_form(tmp_path: Path) -> None:
    sample = tmp_path / "tests" / "support" / "sample.py"
    sample.parent.mkdir(parents=True)
    sample.write_text(
        "import tests.test_a\n"
        "from tests import test_b, engines\n"
        "from tests.test_c import helper\n"
        "from ..test_d import thing\n"
        "from . import test_e\n"
        "from tests.support import launcher\n"
    )
    found = {name for _, name in imported_modules(sample, tmp_path) if is_test_module(name)}
    assert found == {
        "tests.test_a",
        "tests.test_b",
        "tests.test_c",
        "tests.test_d",
        "tests.support.test_e",
    }


@pytest.mark.parametrize(
    "path",
    sorted(TESTS.rglob("*.py")),
    ids=lambda path: str(path.relative_to(TESTS)),
)
def test_no_module_imports_a_test_module(path: Path) -> None:
    imports = [
        f"{path.relative_to(TESTS)}:{line}: {name}"
        for line, name in imported_modules(path)
        if is_test_module(name) and name.startswith("tests.")
    ]
    assert imports == [], "move what is shared into tests/support/ or tests/conftest.py"
