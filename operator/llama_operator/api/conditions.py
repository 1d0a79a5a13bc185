"""Status conditions, Kubernetes-style: one per type, transitions timestamped.

``set`` returns a new list in which the condition of the given type is replaced,
keeping ``lastTransitionTime`` unless ``status`` actually changed, so a reconcile
that learns nothing new produces an identical list (and therefore no write).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any, Literal

PLANNED = "Planned"
# Whether the last reconcile ran to its end: False with the error while it raises.
RECONCILED = "Reconciled"
AVAILABLE = "Available"
READY = "Ready"
NOT_YET_ACTIVE = "NotYetActive"
LICENSE_ACCEPTED = "LicenseAccepted"
LICENSE_RESTRICTED = "LicenseRestricted"
MODEL_ACCESSIBLE = "ModelAccessible"
AUTHENTICATED = "Authenticated"
ENGINE_PROFILE = "EngineProfile"
ENGINE_ARGS = "EngineArgs"
POD_SECURITY = "PodSecurity"
AUTOSCALING = "Autoscaling"
ROLLOUT = "Rollout"
ROLLED_BACK = "RolledBack"
TRAFFIC = "Traffic"
FALLBACK_ACTIVE = "FallbackActive"
FALLBACKS_PLANNED = "FallbacksPlanned"
# Whether the KV cache the running engine reports is what the plan promised
# (operations.capacity, docs/concepts/observed-capacity.md).
KV_CACHE_CAPACITY = "KVCacheCapacity"
# Whether the primary's last window met spec.slo (operations.slo, docs/concepts/slo.md):
# True WithinObjectives, False ObjectiveMissed, Unknown NoTraffic or NotMeasured.
SLO_MET = "SLOMet"
# Whether every spec.adapters entry is served (operations.adapters,
# docs/concepts/adapters.md): True AllServed; False BaseModelMismatch, LicenseNotAccepted,
# AdapterUnavailable, AdapterRankUnsupported or AdapterRevisionUnsupported for the first
# adapter held back, the message naming each.
ADAPTERS_READY = "AdaptersReady"

# Order in which types are listed in status (stable output, stable diffs).
ORDER = (
    PLANNED,
    RECONCILED,
    LICENSE_ACCEPTED,
    MODEL_ACCESSIBLE,
    AUTHENTICATED,
    ENGINE_PROFILE,
    ENGINE_ARGS,
    POD_SECURITY,
    ADAPTERS_READY,
    AVAILABLE,
    READY,
    KV_CACHE_CAPACITY,
    SLO_MET,
    ROLLOUT,
    ROLLED_BACK,
    FALLBACKS_PLANNED,
    FALLBACK_ACTIVE,
    TRAFFIC,
    AUTOSCALING,
    LICENSE_RESTRICTED,
    NOT_YET_ACTIVE,
)

Status = Literal["True", "False", "Unknown"]


@dataclasses.dataclass(frozen=True)
class Check:
    """A condition a decision asks to be set: every gate and operation returns these, and
    status.compute turns them into ``.status.conditions`` (here, not in any one decision
    module, so that none depends on another for it)."""

    type: str
    status: Status
    reason: str
    message: str


def find(conditions: Iterable[Mapping[str, Any]], type_: str) -> Mapping[str, Any] | None:
    for condition in conditions:
        if condition.get("type") == type_:
            return condition
    return None


def set_condition(
    conditions: Iterable[Mapping[str, Any]],
    *,
    type_: str,
    status: Status,
    reason: str,
    message: str,
    generation: int | None,
    now: str,
) -> list[dict[str, Any]]:
    current = [dict(c) for c in conditions]
    previous = find(current, type_)
    changed = previous is None or previous.get("status") != status
    condition: dict[str, Any] = {
        "type": type_,
        "status": status,
        "reason": reason,
        "message": message,
        "lastTransitionTime": now if changed else previous.get("lastTransitionTime", now),  # type: ignore[union-attr]
    }
    if generation is not None:
        condition["observedGeneration"] = generation
    result = [c for c in current if c.get("type") != type_] + [condition]
    return sort(result)


def remove(conditions: Iterable[Mapping[str, Any]], type_: str) -> list[dict[str, Any]]:
    return [dict(c) for c in conditions if c.get("type") != type_]


def sort(conditions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    def key(condition: Mapping[str, Any]) -> tuple[int, str]:
        type_ = str(condition.get("type", ""))
        return (ORDER.index(type_) if type_ in ORDER else len(ORDER), type_)

    return sorted(conditions, key=key)


def is_true(conditions: Iterable[Mapping[str, Any]], type_: str) -> bool:
    condition = find(conditions, type_)
    return condition is not None and condition.get("status") == "True"
