"""From what was decided and observed to ``.status``: phase, counts, conditions.

Pure: the core of the report phase (``report`` assembles the ``Observation`` from the
other phases' results). ``compute`` builds the whole desired status from the planning
outcome and the live primary Deployment, condition by condition (``_planned``,
``_available``, ``_ready``, the phases' checks, ``_reconciled``, ``_not_yet_active``) and
then slice by slice (``_assemble``); ``diff`` turns it into a JSON merge patch against the
current status, empty when nothing changed, which is how an unchanged resource is
reconciled without a single write.

Phases:
- Pending: planned, but no serving pods exist yet.
- Progressing: pods exist but not all are ready, or a new template is rolling out.
- Ready: every desired replica is ready on the current template.
- Degraded: something serves but not as asked (a rejected edit left the last good
  plan running, a closed licence or access gate holds an edit back, a rolled-back
  change is held, a fallback serves in the primary's place, pods that were ready are
  failing, or the rollout timed out).
- Failed: nothing serves and the spec cannot be planned.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from llama_operator import api
from llama_operator.api import conditions


@dataclasses.dataclass(frozen=True)
class PlanningFailure:
    reason: str  # InvalidSpec, InvalidName, ModelFactsUnavailable, or a planner.PlanError reason
    message: str


RECONCILE_SUCCEEDED = "Succeeded"


def failed(
    previous: Mapping[str, Any], *, reason: str, message: str, generation: int | None, now: str
) -> dict[str, Any]:
    """The status after a reconcile that raised: ``Reconciled`` False with the error, and
    nothing else changed (what the reconcile decided before it failed is not known to be
    in place, so phase, plan and the other conditions stay as they were)."""
    conds = conditions.set_condition(
        previous.get("conditions") or [],
        type_=conditions.RECONCILED,
        status="False",
        reason=reason,
        message=message,
        generation=generation,
        now=now,
    )
    return {**previous, "conditions": conds}


@dataclasses.dataclass(frozen=True)
class Observation:
    generation: int | None
    previous: Mapping[str, Any]
    plan: api.Plan | None
    failure: PlanningFailure | None
    deployment: Mapping[str, Any] | None
    desired_replicas: int
    selector: str
    not_yet_active: Sequence[str]
    now: str
    license: Mapping[str, Any] | None = None  # status.license; None: keep the previous one
    checks: Sequence[conditions.Check] = ()  # licence and access conditions to set
    removed: Sequence[str] = ()  # condition types that no longer apply
    held_back: str | None = None  # why a serving Deployment was not created or changed
    external_scaler: Mapping[str, Any] | None = None  # status.externalScaler
    scaler_known: bool = False  # False: keep status.externalScaler as it is
    autoscaled: bool = False  # spec.autoscaling is set: replicas change routinely
    rollout: Mapping[str, Any] | None = None  # status.rollout; None: keep the previous one
    http_route: str | None = None  # status.httpRoute
    route_known: bool = False  # False: keep status.httpRoute as it is
    network_policy: str | None = None  # status.networkPolicy
    network_policy_known: bool = False  # False: keep status.networkPolicy as it is
    canary_replicas: int = 0  # pods of a canary in traffic, added to the reported counts
    canary_ready: int = 0
    failover: Mapping[str, Any] | None = None  # status.failover
    failover_known: bool = False  # False: keep status.failover as it is
    active_model: str | None = None  # status.activeModel; None keeps it
    serving_fallback: str | None = None  # why the entry point serves from a fallback
    fallback_ready: int = 0  # ready pods of the active fallback
    recovery: Mapping[str, Any] | None = None  # status.recovery; None keeps it
    plan_history: Sequence[Mapping[str, Any]] | None = None  # None keeps it
    serving: Mapping[str, Any] | None = None  # status.serving
    serving_known: bool = False  # False: keep status.serving as it is
    adapters: Sequence[Mapping[str, Any]] | None = None  # status.adapters; None keeps it


@dataclasses.dataclass(frozen=True)
class Counts:
    replicas: int
    ready: int
    updated: int
    current: bool  # the Deployment controller has seen the latest template
    deadline_exceeded: bool


def counts(deployment: Mapping[str, Any] | None) -> Counts:
    if deployment is None:
        return Counts(0, 0, 0, current=False, deadline_exceeded=False)
    status = deployment.get("status") or {}
    generation = (deployment.get("metadata") or {}).get("generation")
    observed = status.get("observedGeneration")
    exceeded = any(
        c.get("type") == "Progressing" and c.get("reason") == "ProgressDeadlineExceeded"
        for c in status.get("conditions") or []
    )
    return Counts(
        replicas=int(status.get("replicas") or 0),
        ready=int(status.get("readyReplicas") or 0),
        updated=int(status.get("updatedReplicas") or 0),
        # No generation at all (a bare API emulator) counts as current.
        current=generation is None or observed is None or observed >= generation,
        deadline_exceeded=exceeded,
    )


def phase(observation: Observation, c: Counts) -> api.Phase:
    if observation.failure is not None:
        return "Degraded" if observation.deployment is not None else "Failed"
    if observation.deployment is None:
        return "Pending"
    if observation.held_back is not None or observation.serving_fallback is not None:
        return "Degraded"
    desired = observation.desired_replicas
    if c.deadline_exceeded:
        return "Degraded"
    if c.ready >= desired and c.current and c.updated >= desired:
        return "Ready"
    if c.replicas == 0 and desired > 0:
        return "Pending"
    rolling = not c.current or c.updated < desired
    # With autoscaling, replicas below the desired count are routine (new pods loading
    # the model after a scale-up), not a sign of failing pods: the progress deadline
    # still turns a stuck scale-up Degraded.
    if 0 < c.ready < desired and not rolling and not observation.autoscaled:
        return "Degraded"
    return "Progressing"


def compute(observation: Observation) -> dict[str, Any]:
    """The complete desired status."""
    c = counts(observation.deployment)
    current_phase = phase(observation, c)
    conds: list[dict[str, Any]] = list(observation.previous.get("conditions") or [])
    conds = _planned(conds, observation)
    conds = _available(conds, observation, c=c)
    conds = _ready(conds, observation, c=c, current_phase=current_phase)
    conds = _checked(conds, observation)
    conds = _reconciled(conds, observation)
    conds = _not_yet_active(conds, observation)
    return _assemble(observation, c=c, current_phase=current_phase, conds=conds)


def _set(
    conds: list[dict[str, Any]],
    observation: Observation,
    *,
    type_: str,
    status: conditions.Status,
    reason: str,
    message: str,
) -> list[dict[str, Any]]:
    return conditions.set_condition(
        conds,
        type_=type_,
        status=status,
        reason=reason,
        message=message,
        generation=observation.generation,
        now=observation.now,
    )


def _planned(conds: list[dict[str, Any]], observation: Observation) -> list[dict[str, Any]]:
    """Planned: why the newest spec could not be planned, or the plan chosen."""
    if observation.failure is not None:
        message = observation.failure.message
        if observation.deployment is not None:
            message += "; the last good plan keeps serving unchanged"
        return _set(
            conds,
            observation,
            type_=conditions.PLANNED,
            status="False",
            reason=observation.failure.reason,
            message=message,
        )
    if observation.plan is not None:
        return _set(
            conds,
            observation,
            type_=conditions.PLANNED,
            status="True",
            reason="PlanChosen",
            message=observation.plan.reason,
        )
    return conds


def _available(
    conds: list[dict[str, Any]], observation: Observation, *, c: Counts
) -> list[dict[str, Any]]:
    """Available: whether any pod serves the entry point (a fallback's counts too)."""
    available: tuple[conditions.Status, str, str]
    if c.ready > 0:
        available = ("True", "MinimumReplicasAvailable", f"{c.ready} replica(s) ready")
    elif observation.serving_fallback is not None and observation.fallback_ready > 0:
        available = (
            "True",
            "FallbackAvailable",
            f"{observation.fallback_ready} fallback replica(s) ready; the primary has none",
        )
    elif observation.desired_replicas == 0 and observation.deployment is not None:
        available = ("False", "ScaledToZero", "spec.replicas is 0")
    else:
        available = ("False", "NoReadyReplicas", "no serving pod is ready yet")
    return _set(
        conds,
        observation,
        type_=conditions.AVAILABLE,
        status=available[0],
        reason=available[1],
        message=available[2],
    )


def _ready(
    conds: list[dict[str, Any]],
    observation: Observation,
    *,
    c: Counts,
    current_phase: api.Phase,
) -> list[dict[str, Any]]:
    """Ready: True in phase Ready; otherwise the phase, and why."""
    held = observation.held_back
    ready_message = {
        "Ready": f"{c.ready}/{observation.desired_replicas} replicas ready",
        "Pending": (
            f"no serving pods: {held}"
            if held is not None
            else "waiting for serving pods to be created and scheduled"
        ),
        "Progressing": (
            f"{c.ready}/{observation.desired_replicas} replicas ready; the first start "
            "downloads the model and can take a long time"
        ),
        "Degraded": (
            observation.serving_fallback
            if observation.serving_fallback is not None
            else f"the latest spec is held back, the running pods serve unchanged: {held}"
            if held is not None and observation.failure is None
            else "the Deployment exceeded its progress deadline"
            if c.deadline_exceeded
            else f"{c.ready}/{observation.desired_replicas} replicas ready"
            if observation.failure is None
            else "the latest spec could not be planned"
        ),
        "Failed": "the spec cannot be planned; see the Planned condition",
    }[current_phase]
    return _set(
        conds,
        observation,
        type_=conditions.READY,
        status="True" if current_phase == "Ready" else "False",
        reason="AllReplicasReady" if current_phase == "Ready" else current_phase,
        message=ready_message,
    )


def _checked(conds: list[dict[str, Any]], observation: Observation) -> list[dict[str, Any]]:
    """The conditions the phases decided (gates, rollout, failover, ...), and those that
    no longer apply removed."""
    for check in observation.checks:
        conds = _set(
            conds,
            observation,
            type_=check.type,
            status=check.status,
            reason=check.reason,
            message=check.message,
        )
    for type_ in observation.removed:
        conds = conditions.remove(conds, type_)
    return conds


def _reconciled(conds: list[dict[str, Any]], observation: Observation) -> list[dict[str, Any]]:
    # compute() is only ever called by a reconcile that ran to its end (one that raised
    # writes ``failed`` instead).
    return _set(
        conds,
        observation,
        type_=conditions.RECONCILED,
        status="True",
        reason=RECONCILE_SUCCEEDED,
        message="the last reconcile completed without error",
    )


def _not_yet_active(conds: list[dict[str, Any]], observation: Observation) -> list[dict[str, Any]]:
    """NotYetActive: spec fields set that this version accepts but does not act on."""
    if not observation.not_yet_active:
        return conditions.remove(conds, conditions.NOT_YET_ACTIVE)
    fields = ", ".join(f"spec.{name}" for name in observation.not_yet_active)
    return _set(
        conds,
        observation,
        type_=conditions.NOT_YET_ACTIVE,
        status="True",
        reason="FieldsNotActive",
        message=(
            f"{fields}: accepted and validated, but this operator version does not act on "
            "them yet; they take effect after an operator upgrade"
        ),
    )


def _assemble(
    observation: Observation,
    *,
    c: Counts,
    current_phase: api.Phase,
    conds: list[dict[str, Any]],
) -> dict[str, Any]:
    """The whole status: phase, counts and conditions, then each slice a phase decided
    (a slice not known this time keeps the previous value, which the diff leaves alone)."""
    previous = observation.previous
    plan = (
        observation.plan.model_dump(mode="json", exclude_none=True)
        if observation.plan
        else previous.get("plan")
    )
    result: dict[str, Any] = {
        "phase": current_phase,
        "plan": plan,
        # A canary's pods serve this endpoint too: /scale readers (an HPA, KEDA) count them.
        "replicas": c.replicas + observation.canary_replicas,
        "readyReplicas": c.ready + observation.canary_ready,
        "selector": observation.selector,
        "observedGeneration": observation.generation,
        "conditions": conditions.sort(conds),
    }
    license = observation.license if observation.license is not None else previous.get("license")
    if license is not None:
        result["license"] = dict(license)
    if observation.rollout is not None:
        result["rollout"] = dict(observation.rollout)
    if observation.failover_known:
        result["failover"] = dict(observation.failover) if observation.failover else None
    if observation.active_model is not None:
        result["activeModel"] = observation.active_model
    if observation.recovery is not None:
        result["recovery"] = dict(observation.recovery)
    if observation.plan_history is not None:
        result["planHistory"] = [dict(entry) for entry in observation.plan_history]
    if observation.route_known:
        result["httpRoute"] = observation.http_route
    if observation.network_policy_known:
        result["networkPolicy"] = observation.network_policy
    if observation.adapters is not None:
        result["adapters"] = [dict(entry) for entry in observation.adapters]
    if observation.serving_known:
        result["serving"] = dict(observation.serving) if observation.serving else None
    if observation.scaler_known:
        # None deletes the key from status (merge patch), once the scaler is gone.
        scaler = observation.external_scaler
        result["externalScaler"] = dict(scaler) if scaler is not None else None
    return result


def diff(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    """A JSON merge patch turning ``old`` into ``new``; empty when they are equal.

    Nested objects (the plan) are patched key by key with ``None`` deleting what the
    new value no longer has; lists (conditions) are replaced whole, as merge patch
    does. Top-level keys we do not manage are left alone.
    """
    return _patch(old, new, delete_missing=False)


def _patch(
    old: Mapping[str, Any], new: Mapping[str, Any], *, delete_missing: bool
) -> dict[str, Any]:
    patch: dict[str, Any] = {}
    for key, value in new.items():
        before = old.get(key)
        if isinstance(value, Mapping) and isinstance(before, Mapping):
            nested = _patch(before, value, delete_missing=True)
            if nested:
                patch[key] = nested
        elif before != value:
            patch[key] = value
    if delete_missing:
        for key in old:
            if key not in new:
                patch[key] = None
    return patch
