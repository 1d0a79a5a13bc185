"""Whether a live child is what the operator last applied: its content hash and generation.

Pure. Every child the operator renders carries the hash of its content in an annotation
(``builders.HASH_ANNOTATION``); a live child with another hash, or a generation past the
one our own last apply produced (``inputs.Memory.generations``), was changed by someone
else. The gates ask this of the serving Deployments (is a pod about to change?), the apply
phase of every child (must it be applied?).
"""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping
from typing import Any

from llama_operator.serving import builders


def differs(
    live: Mapping[str, Any] | None,
    obj: Mapping[str, Any],
    *,
    generations: MutableMapping[str, int],
) -> bool:
    """Whether applying ``obj`` would change the live child: there is none, its content
    hash differs, or someone else edited it since this process applied it."""
    child = f"{obj['kind']}/{obj['metadata']['name']}"
    return (
        live is None
        or live_hash(live) != live_hash(obj)
        or edited_by_others(live, child, generations)
    )


def edited_by_others(
    live: Mapping[str, Any], child: str, generations: MutableMapping[str, int]
) -> bool:
    live_generation = (live.get("metadata") or {}).get("generation")
    ours = generations.get(child)
    if not isinstance(live_generation, int) or ours is None:
        # Kinds without a generation (Services): the hash alone decides. Not applied by
        # this process yet: unknown, and apply.write_reason applies it once to find out.
        return False
    # Only a newer generation is an edit: an older one is a watch that has not caught
    # up with our own apply yet.
    return live_generation > ours


def reverted(before: Mapping[str, Any] | None, applied_generation: object) -> bool:
    """Whether an apply of unchanged content moved the generation: the live spec had
    been edited, and the apply put our fields back."""
    live_generation = ((before or {}).get("metadata") or {}).get("generation")
    return (
        isinstance(live_generation, int)
        and isinstance(applied_generation, int)
        and applied_generation > live_generation
    )


def live_hash(obj: Mapping[str, Any]) -> str | None:
    annotations = (obj.get("metadata") or {}).get("annotations") or {}
    value = annotations.get(builders.HASH_ANNOTATION)
    return str(value) if value is not None else None
