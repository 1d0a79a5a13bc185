"""Change detection for the built objects: the spec hash every child carries, and the
revision of a serving Deployment's pod template.

The last step of every builder in ``serving.builders`` (``with_hash``), read by the
reconciler (``HASH_ANNOTATION``, ``revision_of``) to skip writes that would change nothing
and to tell a change that restarts the serving pods (a new revision, which a canary
rollout protects) from one that does not. Pure.
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Mapping
from typing import Any

from llama_operator import api

HASH_ANNOTATION = f"{api.GROUP}/spec-hash"
REVISION_ANNOTATION = f"{api.GROUP}/revision"


def template_revision(deployment: dict[str, Any]) -> str:
    """Hash of a primary Deployment's pod template: what a rollout compares."""
    template = deployment["spec"]["template"]
    canonical = json.dumps(template, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:16]


def revision_of(deployment: Mapping[str, Any] | None) -> str | None:
    """The revision a live Deployment was applied with (None: none, or an older operator)."""
    annotations = ((deployment or {}).get("metadata") or {}).get("annotations") or {}
    value = annotations.get(REVISION_ANNOTATION)
    return str(value) if value else None


def spec_hash(obj: dict[str, Any]) -> str:
    """sha256 (first 16 hex digits) of the object's canonical JSON, minus its own hash."""
    canonical = json.dumps(_without_hash(obj), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:16]


def with_hash(obj: dict[str, Any]) -> dict[str, Any]:
    """A copy of the object with ``HASH_ANNOTATION`` set; the input is not changed."""
    result = _without_hash(obj)
    digest = spec_hash(result)
    metadata = result.setdefault("metadata", {})
    metadata.setdefault("annotations", {})[HASH_ANNOTATION] = digest
    return result


def _without_hash(obj: dict[str, Any]) -> dict[str, Any]:
    # An emptied annotations map is dropped as well, so an object hashes the same
    # whether it never had annotations or only ever had the hash.
    result = copy.deepcopy(obj)
    metadata = result.get("metadata")
    if isinstance(metadata, dict):
        annotations = metadata.get("annotations")
        if isinstance(annotations, dict):
            annotations.pop(HASH_ANNOTATION, None)
            if not annotations:
                del metadata["annotations"]
    return result
