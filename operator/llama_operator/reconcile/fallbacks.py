"""The fallbacks phase: each spec.fallbacks[i] planned and gated, and where traffic goes.

After the rollout step, before the render. Each fallback is planned and sized like the
primary (``desired_state``, over the primary's placement policy) and passes its own
licence and gated-access gates (``serving_gates``): one that may not serve is reported
with the reason, and gets no pods. Then ``operations.failover`` decides where the entry
point serves from (the primary, or the first fallback that can while it cannot) and what
each fallback runs. The CLI plans the fallbacks the same way (``plan_fallbacks``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, MutableMapping, Sequence
from typing import Any

from llama_operator import api
from llama_operator.licensing import terms
from llama_operator.operations import failover, health
from llama_operator.planning import config, pools
from llama_operator.reconcile import desired_state, drift, inputs, observe, serving_gates, status
from llama_operator.serving import builders


@dataclasses.dataclass(frozen=True)
class Backup:
    """One fallback: its plan and children when it can have them, and how it is."""

    candidate: failover.Candidate
    wanted: desired_state.Desired | None = None  # its plan, licence and spec, when planned
    live: bool = False  # its Deployment exists


@dataclasses.dataclass(frozen=True)
class Failover:
    """The fallbacks phase's result."""

    backups: tuple[Backup, ...]
    switched: failover.Decision  # where the entry point serves from


def decide(
    seen: observe.Observed,
    wanted: desired_state.Desired,
    *,
    settings: config.OperatorConfig,
    readers: inputs.Readers,
    cluster: inputs.Cluster,
    memory: inputs.Memory,
    clock: inputs.Clock,
) -> Failover:
    """The fallbacks, planned and gated, and the failover decision over them."""
    meta = seen.meta
    backups = fallbacks(
        wanted,
        name=meta.name,
        namespace=meta.namespace,
        uid=meta.uid,
        raw_spec=seen.raw_spec,
        settings=settings,
        available=seen.available,
        fetch=readers.fetch,
        card=readers.card,
        access=readers.access,
        lookup=cluster.lookup,
        generations=memory.generations,
        primary=wanted.detection,
        api_key=readers.api_key,
    )
    switched = failover.decide(
        policy=api.failover_policy(wanted.spec),
        previous=seen.previous.failover,
        primary=seen.primary_health or health.Health(desired=seen.replicas, ready=0),
        primary_model=wanted.spec.model.id,
        fallbacks=[b.candidate for b in backups],
        overloaded=_overloaded(wanted, seen, queue=readers.queue),
        now=clock.seconds,
        wall=clock.now,
    )
    return Failover(backups=tuple(backups), switched=switched)


def fallbacks(  # noqa: PLR0913 - shared with the CLI, which has no Cluster
    wanted: desired_state.Desired,
    *,
    name: str,
    namespace: str,
    uid: str,
    raw_spec: Mapping[str, Any],
    settings: config.OperatorConfig,
    available: Sequence[pools.Pool],
    fetch: inputs.HubFetch | None,
    card: inputs.CardFetch | None,
    access: inputs.AccessCheck | None,
    lookup: inputs.Lookup,
    generations: MutableMapping[str, int],
    primary: terms.Detection,
    api_key: inputs.KeyCheck | None = None,
) -> list[Backup]:
    """Each spec.fallbacks[i], planned and sized like the primary (its placement policy),
    with its own licence and gated-access gates: a fallback that may not serve is
    reported with the reason, and gets no pods. The primary's re-planning does not apply:
    re-planning a serving fallback would restart it."""
    result = []
    accepted = wanted.spec.license is not None and wanted.spec.license.accept
    for index, fallback in enumerate(wanted.spec.fallbacks):
        variant = api.fallback_variant(index)
        raw = _fallback_spec(raw_spec, fallback)
        live = lookup("Deployment", namespace, f"{name}-{variant}")
        base = failover.Candidate(
            index=index,
            model=fallback.model.id,
            configured=fallback.replicas,
            ready=status.counts(live).ready,
        )
        try:
            planned = desired_state.desired(
                name=f"{name}-{variant}",
                namespace=namespace,
                uid=uid,
                raw_spec=raw,
                settings=settings,
                available=available,
                fetch=fetch,
                card=card,
                clamp_limits=True,
            )
        except desired_state.PlanningError as exc:
            reason = _fallback_fields(f"{exc.failure.reason}: {exc.failure.message}", index)
            result.append(
                Backup(dataclasses.replace(base, servable=False, reason=reason, planned=False))
            )
            continue
        if fallback.license is None and accepted and planned.detection.id == primary.id:
            # The same licence the primary's acceptance covers: accepted for it too.
            raw = {**raw, "license": {"accept": True}}
            planned = dataclasses.replace(planned, spec=api.parse_spec(raw))
        gate = _gate(
            planned,
            index=index,
            live=live,
            name=name,
            namespace=namespace,
            uid=uid,
            settings=settings,
            access=access,
            api_key=api_key,
            generations=generations,
        )
        candidate = dataclasses.replace(
            base,
            servable=gate.hold is None,
            reason=_fallback_fields(gate.hold or "", index),
            pool=planned.plan.pool,
        )
        result.append(Backup(candidate, planned, live=live is not None))
    return result


def _gate(
    planned: desired_state.Desired,
    *,
    index: int,
    live: Mapping[str, Any] | None,
    name: str,
    namespace: str,
    uid: str,
    settings: config.OperatorConfig,
    access: inputs.AccessCheck | None,
    api_key: inputs.KeyCheck | None,
    generations: MutableMapping[str, int],
) -> serving_gates.Gate:
    """Fallback ``index``'s own gates, with no status of its own to carry over."""
    pods = next(
        o
        for o in children_of(
            planned,
            name=name,
            namespace=namespace,
            uid=uid,
            index=index,
            settings=settings,
            replicas=planned.spec.replicas,
        )
        if o["kind"] == "Deployment"
    )
    return serving_gates.gates(
        planned,
        name=f"{name}-{api.fallback_variant(index)}",
        namespace=namespace,
        previous={},
        serving=live is not None,
        # Access to a gated model is checked when its pods are about to change.
        creating_pods=drift.differs(live, pods, generations=generations),
        access=access,
        settings=settings,
        api_key=api_key,
    )


def plan_fallbacks(
    wanted: desired_state.Desired,
    *,
    name: str,
    namespace: str,
    uid: str,
    raw_spec: Mapping[str, Any],
    settings: config.OperatorConfig,
    available: Sequence[pools.Pool],
    fetch: inputs.HubFetch | None,
    card: inputs.CardFetch | None,
) -> list[Backup]:
    """The fallbacks as a first reconcile plans them, offline (the CLI): nothing runs
    yet, and no token is checked."""
    return fallbacks(
        wanted,
        name=name,
        namespace=namespace,
        uid=uid,
        raw_spec=raw_spec,
        settings=settings,
        available=available,
        fetch=fetch,
        card=card,
        access=None,
        lookup=lambda kind, ns, obj_name: None,
        generations={},
        primary=wanted.detection,
    )


def children_of(
    planned: desired_state.Desired,
    *,
    name: str,
    namespace: str,
    uid: str,
    index: int,
    settings: config.OperatorConfig,
    replicas: int,
) -> list[dict[str, Any]]:
    """The children of fallback ``index`` (``<name>-fallback-N``) at ``replicas``."""
    return builders.fallback_objects(
        name=name,
        namespace=namespace,
        uid=uid,
        index=index,
        spec=planned.spec,
        plan=planned.plan,
        pool=planned.pool,
        settings=settings,
        detection=planned.detection,
        replicas=replicas,
    )


def _fallback_spec(raw_spec: Mapping[str, Any], fallback: api.Fallback) -> dict[str, Any]:
    """The primary's spec with the fallback's model: the same engine choice, image and
    placement policy (optimize, pools, concurrency), but not the primary's pins (its
    quantization, tensor-parallel degree, context, memory fraction are for its model)
    nor its model cache (a claim holds the primary's weights); no rollout, autoscaling,
    traffic or fallbacks of its own. The endpoint's security is the primary's: the same API
    key, network rules and input limits (a token limit held to the fallback's context)."""
    shared = {"engine", "image", "auth", "network", "limits"}
    raw = {key: value for key, value in raw_spec.items() if key in shared}
    placement = raw_spec.get("placement")
    if isinstance(placement, Mapping):
        policy = {"optimize", "pools", "concurrentSequences"}
        raw["placement"] = {k: v for k, v in placement.items() if k in policy}
    raw["model"] = fallback.model.model_dump(mode="json", exclude_none=True)
    raw["replicas"] = fallback.replicas
    if fallback.license is not None:
        raw["license"] = fallback.license.model_dump(mode="json", exclude_none=True)
    return raw


def _fallback_fields(text: str, index: int) -> str:
    """Messages of the gates and the planner name the primary's fields; a fallback's are
    under spec.fallbacks[i]."""
    return (
        text.replace("spec.license.", f"spec.fallbacks[{index}].license.")
        .replace("spec.model.", f"spec.fallbacks[{index}].model.")
        .replace("spec.replicas", f"spec.fallbacks[{index}].replicas")
    )


def _overloaded(
    wanted: desired_state.Desired, seen: observe.Observed, *, queue: inputs.QueueRead | None
) -> bool:
    """Whether the primary's queue per ready replica is above the failover threshold now
    (read only when the threshold is set and fallbacks exist)."""
    threshold = api.failover_policy(wanted.spec).overloadQueuePerReplica
    if threshold is None or queue is None or not wanted.spec.fallbacks:
        return False
    primary = seen.primary_health
    if primary is None or primary.ready == 0:
        return False
    per_pod = queue(seen.meta.namespace, seen.meta.name, wanted.plan)
    return per_pod is not None and per_pod > threshold
