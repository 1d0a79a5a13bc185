"""The apply phase: server-side apply of every rendered child that changed.

After the render, before the converge. Only a child whose content hash differs from what
is live, that someone else edited, or that this process has not applied yet is applied
(``write_reason``); an unchanged resource is reconciled without a single write. A closed
gate holds back the serving Deployments (and, while one serves, everything that describes
it). An optional kind the cluster does not serve (the Gateway API's HTTPRoute, KEDA's
ScaledObject) is reported missing instead of failing the reconcile. What this process
applied is remembered in ``inputs.Memory`` for the next reconcile.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, MutableMapping, Sequence
from typing import Any, Literal

from llama_operator.api import conditions
from llama_operator.clients import k8s
from llama_operator.licensing import gating
from llama_operator.reconcile import drift, inputs, observe, serving_gates
from llama_operator.serving import builders

# Kinds the operator writes but does not watch: watching every ConfigMap in the cluster
# to find our few costs far more than one no-op apply now and then. Their last applied
# hash is remembered in process; they are re-applied when it changes, and every
# REAPPLY_SECONDS anyway, which restores one deleted or edited by hand.
UNWATCHED_KINDS = frozenset(
    {"ConfigMap", "ScaledObject", "HorizontalPodAutoscaler", "HTTPRoute", "NetworkPolicy"}
)
REAPPLY_SECONDS = 300.0
# Kinds of CRDs a cluster may not have installed: a 404 on their apply is reported.
OPTIONAL_KINDS = frozenset({"ScaledObject", "HorizontalPodAutoscaler", "HTTPRoute"})
EXTERNAL_SCALER_KINDS = frozenset({"ScaledObject", "HorizontalPodAutoscaler"})

WriteReason = Literal["change", "refresh"]


@dataclasses.dataclass(frozen=True)
class Applied:
    """The apply phase's result."""

    written: tuple[str, ...]  # "Kind/name" applied because they changed
    refreshed: tuple[str, ...]  # applied unchanged: the periodic re-apply of unwatched kinds
    drifted: tuple[str, ...]  # refreshed after a start, and found edited (DriftReverted)
    held_back: str | None  # why a change to a serving Deployment was not applied
    route_missing: str | None  # the cluster does not serve the Gateway API
    scaler_missing: str | None  # an external scaler kind the cluster does not serve
    primary: Mapping[str, Any] | None  # the primary Deployment, as its apply answered


@dataclasses.dataclass(frozen=True)
class _Write:
    result: Mapping[str, Any]  # what the API server stored
    reverted: bool  # the apply moved the generation: it undid someone else's edit


def apply(
    seen: observe.Observed,
    objects: Sequence[dict[str, Any]],
    *,
    gate: serving_gates.Gate,
    cluster: inputs.Cluster,
    memory: inputs.Memory,
    clock: inputs.Clock,
) -> Applied:
    """Apply what changed (or is due), in render order."""
    reasons = _reasons(seen, objects, cluster=cluster, memory=memory, clock=clock)
    serving = seen.primary is not None
    written: list[str] = []
    refreshed: list[str] = []
    drifted: list[str] = []
    held_back: str | None = None
    route_missing: str | None = None
    scaler_missing: str | None = None
    primary = seen.primary
    for obj in objects:
        reason = reasons[id(obj)]
        if reason is None:
            continue
        kind, child = obj["kind"], f"{obj['kind']}/{obj['metadata']['name']}"
        # A closed gate: no serving Deployment is created or changed. While one serves,
        # nothing else changes either, so the /licenses its pods mount and the
        # annotations keep describing what actually runs. The NetworkPolicy is the
        # exception: it describes no pod, and who may connect is never held back.
        if gate.hold is not None and (kind == "Deployment" or serving) and kind != "NetworkPolicy":
            if reason == "change":
                held_back = gate.hold
            continue
        write = _apply_one(
            obj, namespace=seen.meta.namespace, cluster=cluster, memory=memory, clock=clock
        )
        if write is None:
            if kind == "HTTPRoute":
                route_missing = f"{obj['apiVersion']} {kind}"
            else:
                scaler_missing = f"{obj['apiVersion']} {kind}"
            continue  # the cluster does not serve the kind: reported, the rest applies
        if reason == "refresh" and write.reverted:
            drifted.append(child)
        (written if reason == "change" else refreshed).append(child)
        if kind == "Deployment" and obj["metadata"]["name"] == seen.primary_name:
            primary = write.result
    route_missing, scaler_missing = _still_missing(
        objects,
        reasons=reasons,
        previous=seen.previous,
        route_missing=route_missing,
        scaler_missing=scaler_missing,
    )
    return Applied(
        written=tuple(written),
        refreshed=tuple(refreshed),
        drifted=tuple(drifted),
        held_back=held_back,
        route_missing=route_missing,
        scaler_missing=scaler_missing,
        primary=primary,
    )


def _reasons(
    seen: observe.Observed,
    objects: Sequence[dict[str, Any]],
    *,
    cluster: inputs.Cluster,
    memory: inputs.Memory,
    clock: inputs.Clock,
) -> dict[int, WriteReason | None]:
    """``write_reason`` of each object, by its id()."""
    recorded = _recorded(seen.meta.name, seen.previous)
    return {
        id(obj): write_reason(
            obj,
            seen.meta.namespace,
            lookup=cluster.lookup,
            generations=memory.generations,
            unwatched=memory.unwatched,
            now=clock.monotonic(),
            # status records what was applied before (the licence, the external
            # scaler): a child it does not name is new, one it names and this process
            # has not seen is a restart's first sight.
            new=f"{obj['kind']}/{obj['metadata']['name']}" not in recorded,
        )
        for obj in objects
    }


def _apply_one(
    obj: dict[str, Any],
    *,
    namespace: str,
    cluster: inputs.Cluster,
    memory: inputs.Memory,
    clock: inputs.Clock,
) -> _Write | None:
    """Server-side apply ``obj`` and remember it; None when the cluster does not serve its
    (optional) kind."""
    kind, obj_name = obj["kind"], obj["metadata"]["name"]
    child = f"{kind}/{obj_name}"
    # Read before the apply: the watch may deliver the apply's own result to the
    # index while the apply's answer is still on its way here.
    before = None if kind in UNWATCHED_KINDS else cluster.lookup(kind, namespace, obj_name)
    try:
        result = cluster.client.apply(obj)
    except k8s.APIError as exc:
        if kind not in OPTIONAL_KINDS or exc.status != 404:
            raise
        # Tried again when the object changes or REAPPLY_SECONDS pass, like a
        # refresh, not on every resync (the status says it is missing meanwhile).
        memory.unwatched[child] = (drift.live_hash(obj), clock.monotonic())
        return None
    applied_generation = (result.get("metadata") or {}).get("generation")
    # Services have no generation: 0 still records that this process applied it.
    memory.generations[child] = applied_generation if isinstance(applied_generation, int) else 0
    if kind in UNWATCHED_KINDS:
        memory.unwatched[child] = (drift.live_hash(obj), clock.monotonic())
    return _Write(result=result, reverted=drift.reverted(before, applied_generation))


def _still_missing(
    objects: Sequence[dict[str, Any]],
    *,
    reasons: Mapping[int, WriteReason | None],
    previous: observe.Previous,
    route_missing: str | None,
    scaler_missing: str | None,
) -> tuple[str | None, str | None]:
    """The HTTPRoute and external scaler kinds the cluster does not serve: refused now,
    or refused earlier (status says so) and not tried again this time."""
    # An optional kind refused earlier and not tried again this time is still missing.
    untried = {
        obj["kind"]: f"{obj['apiVersion']} {obj['kind']}"
        for obj in objects
        if obj["kind"] in OPTIONAL_KINDS and reasons[id(obj)] is None
    }
    if "HTTPRoute" in untried and _refused(previous, conditions.TRAFFIC):
        route_missing = untried["HTTPRoute"]
    for kind in EXTERNAL_SCALER_KINDS & untried.keys():
        if _refused(previous, conditions.AUTOSCALING):
            scaler_missing = untried[kind]
    return route_missing, scaler_missing


def _refused(previous: observe.Previous, type_: str) -> bool:
    """Whether status says the cluster refused the optional kind behind condition ``type_``."""
    found = conditions.find(previous.conditions, type_)
    return found is not None and found.get("reason") in (
        "GatewayAPINotInstalled",
        "ScalerNotInstalled",
    )


def write_reason(
    obj: Mapping[str, Any],
    namespace: str,
    *,
    lookup: inputs.Lookup,
    generations: MutableMapping[str, int],
    unwatched: Mapping[str, tuple[str | None, float]],
    now: float,
    new: bool,
) -> WriteReason | None:
    """Why ``obj`` must be applied: it differs from what is live ("change"), or an unwatched
    child is due for its periodic re-apply ("refresh": neither an Event nor counted as an
    apply in the metrics, which would otherwise show churn); else None."""
    kind, obj_name = obj["kind"], obj["metadata"]["name"]
    if kind in UNWATCHED_KINDS:
        last = unwatched.get(f"{kind}/{obj_name}")
        if (last is None and new) or (last is not None and last[0] != drift.live_hash(obj)):
            return "change"
        # Never applied by this process (a restart) or applied long ago: the live object is
        # unknown, so apply it quietly; server-side apply of the same content changes nothing.
        if last is None or now - last[1] >= REAPPLY_SECONDS:
            return "refresh"
        return None
    if drift.differs(lookup(kind, namespace, obj_name), obj, generations=generations):
        return "change"
    if f"{kind}/{obj_name}" not in generations:
        # Not applied by this process (a restart): its hash annotation says what we last
        # applied, not what is live now, because an edit made while no operator ran leaves
        # annotations alone. Apply once: server-side apply of the same content changes
        # nothing, and restores our fields where they were edited.
        return "refresh"
    return None


def _recorded(name: str, previous: observe.Previous) -> set[str]:
    """Unwatched children that status says were applied already ("Kind/name"): the
    licence ConfigMap, the external scaler, the HTTPRoute, a canary's licence."""
    known = set()
    if previous.license:
        known.add(f"ConfigMap/{gating.config_map_name(name)}")
    scaler = previous.external_scaler
    if scaler is not None:
        known.add(f"{scaler.get('kind')}/{scaler.get('name')}")
    if previous.http_route is not None:
        known.add(f"HTTPRoute/{previous.http_route}")
    if previous.network_policy is not None:
        known.add(f"NetworkPolicy/{previous.network_policy}")
    if previous.canary_running:
        canary_license = builders.license_config_map_name(name=name, variant=builders.CANARY)
        known.add(f"ConfigMap/{canary_license}")
    return known
