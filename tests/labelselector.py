"""Kubernetes label-selector semantics, for tests that check what a rendered selector
(a NetworkPolicy's podSelector) picks among the pods the operator renders."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def matches(selector: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    """Every matchLabels pair and every matchExpressions requirement (In, NotIn, Exists,
    DoesNotExist) holds for ``labels``; an empty selector matches everything."""
    if any(labels.get(key) != value for key, value in (selector.get("matchLabels") or {}).items()):
        return False
    for requirement in selector.get("matchExpressions") or []:
        key, values = requirement["key"], requirement.get("values") or []
        held = {
            "In": key in labels and labels[key] in values,
            "NotIn": key not in labels or labels[key] not in values,
            "Exists": key in labels,
            "DoesNotExist": key not in labels,
        }[requirement["operator"]]
        if not held:
            return False
    return True
