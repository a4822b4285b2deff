"""Whether a bucket policy's explicit Deny applies to a request, as IAM evaluates one; moto stores
bucket policies but enforces none, so the applied policy is evaluated here.

IAM User Guide, "Policy evaluation logic": an explicit Deny in any applicable policy wins. "IAM
JSON policy elements": a statement applies when its Principal, Action and Resource (or, for
NotResource, anything but the listed resources) match, wildcards `*` and `?` included, and every
condition holds: the keys of one condition operator, and the operators, are ANDed; `Null`
"true" holds when the key is absent from the request, "false" when present; `Bool` compares
"true"/"false". Only what the project's policies use is implemented; anything else raises.
"""

from __future__ import annotations

from collections.abc import Mapping
from fnmatch import fnmatchcase
from typing import Any


def _listed(value: Any) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


def _principal_matches(statement: Mapping[str, Any], principal_arn: str) -> bool:
    principal = statement.get("Principal", "*")
    if principal == "*":
        return True
    return any(p == "*" or p == principal_arn for p in _listed(principal.get("AWS", [])))


def _resource_matches(statement: Mapping[str, Any], resource: str) -> bool:
    if "NotResource" in statement:
        return not any(fnmatchcase(resource, p) for p in _listed(statement["NotResource"]))
    return any(fnmatchcase(resource, p) for p in _listed(statement["Resource"]))


def _conditions_hold(conditions: Mapping[str, Mapping[str, Any]], context: Mapping[str, str | None]) -> bool:
    for operator, keys in conditions.items():
        for key, expected in keys.items():
            (wanted,) = _listed(expected)
            present = context.get(key) is not None
            if operator == "Null":
                if present != (wanted.lower() == "false"):
                    return False
            elif operator == "Bool":
                if not present or str(context[key]).lower() != wanted.lower():
                    return False
            else:
                raise NotImplementedError(f"condition operator {operator}")
    return True


def explicitly_denied(policy: Mapping[str, Any], principal_arn: str, action: str, resource: str,
                      context: Mapping[str, str | None]) -> bool:
    """Whether a Deny statement of `policy` applies to `principal_arn` doing `action` on
    `resource`, the request carrying the condition keys in `context` (None: absent)."""
    for statement in policy["Statement"]:
        if statement["Effect"] != "Deny":
            continue
        if not _principal_matches(statement, principal_arn):
            continue
        if not any(fnmatchcase(action, a) for a in _listed(statement["Action"])):
            continue
        if _resource_matches(statement, resource) and _conditions_hold(statement.get("Condition", {}), context):
            return True
    return False
