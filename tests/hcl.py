"""Read Terraform and Packer HCL2 files with python-hcl2 into plain Python values."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import hcl2


def _clean(value: Any) -> Any:
    """Drop python-hcl2's bookkeeping keys and the quotes it keeps around literal strings."""
    if isinstance(value, dict):
        return {
            _clean(key): _clean(item)
            for key, item in value.items()
            if key not in ("__is_block__", "__comments__", "__inline_comments__")
        }
    if isinstance(value, list):
        return [_clean(item) for item in value]
    if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1]
    return value


def load(path: Path) -> dict[str, Any]:
    """The file's top-level blocks, e.g. ``load(p)["resource"]`` (a list of one-entry dicts)."""
    with path.open() as handle:
        return _clean(hcl2.load(handle))


def blocks(path: Path, kind: str) -> dict[str, Any]:
    """Blocks of one kind keyed by label: ``variable`` -> {name: body},
    ``resource``/``data`` -> {"type.name": body}."""
    found: dict[str, Any] = {}
    for entry in load(path).get(kind, []):
        for label, body in entry.items():
            if kind in ("resource", "data", "source"):
                for name, inner in body.items():
                    found[f"{label}.{name}"] = inner
            else:
                found[label] = body
    return found
