"""The worker's layering, read from its source: cli -> runner -> scheduler -> engine, no cycles,
and no worker module importing a test (or the launcher)."""

import ast
from pathlib import Path

import pytest

WORKER = Path(__file__).resolve().parent.parent / "worker"
# Higher layers may import lower ones, never the reverse, not even through other modules.
LAYERS = ["engine", "scheduler", "runner", "cli"]


def imports_of(path: Path) -> set[str]:
    """Every module `path` imports, anywhere in it (also inside functions and TYPE_CHECKING
    blocks), as dotted names; relative imports resolved inside the worker package."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = f"worker.{base}" if base else "worker"
            found.add(base)
            # `from . import aws` imports the module worker.aws.
            found |= {f"{base}.{alias.name}" for alias in node.names}
    return found


def worker_graph() -> dict[str, set[str]]:
    modules = {path.stem: path for path in WORKER.glob("*.py") if path.stem != "__init__"}
    return {
        name: {
            imported.removeprefix("worker.")
            for imported in imports_of(path)
            if imported.startswith("worker.") and imported.removeprefix("worker.") in modules
        }
        - {name}
        for name, path in modules.items()
    }


def reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        for neighbour in graph[todo.pop()] - seen:
            seen.add(neighbour)
            todo.append(neighbour)
    return seen


def cycles(graph: dict[str, set[str]]) -> list[str]:
    return sorted(name for name in graph if name in reachable(graph, name))


def test_the_graph_is_read_from_relative_absolute_and_lazy_imports(tmp_path):
    source = tmp_path / "m.py"
    source.write_text(
        "from . import aws\nfrom .store import Store\nimport worker.page\n"
        "def f():\n    from .engine import Engine\n"
    )
    assert {"worker.aws", "worker.store", "worker.page", "worker.engine"} <= imports_of(source)
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c"]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_worker_module_imports_itself_back():
    assert cycles(worker_graph()) == []


@pytest.mark.parametrize("lower, higher", [
    (LAYERS[i], LAYERS[j]) for i in range(len(LAYERS)) for j in range(i + 1, len(LAYERS))
])
def test_a_lower_layer_never_reaches_a_higher_one(lower, higher):
    assert higher not in reachable(worker_graph(), lower)


def test_only_the_entry_points_import_the_cli():
    graph = worker_graph()
    assert {name for name in graph if "cli" in graph[name]} <= {"__main__"}


def test_the_layers_are_connected_as_drawn():
    graph = worker_graph()
    assert "runner" in reachable(graph, "cli")
    assert "scheduler" in graph["runner"]
    # The scheduler needs no model: it reaches the engine's data types, never the engine.
    assert "engine" not in reachable(graph, "scheduler")


def test_no_worker_module_imports_a_test_or_the_launcher():
    for path in WORKER.glob("*.py"):
        outside = {name for name in imports_of(path) if name.split(".")[0] in ("tests", "launcher")}
        assert outside == set(), path.name
