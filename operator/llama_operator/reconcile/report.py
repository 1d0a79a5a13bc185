"""The report phase: from what the phases decided and did to ``.status`` and Events.

The last phase of a reconcile. ``status.compute`` (pure) builds the whole desired status
from an ``Observation``, assembled here from the phases' results; ``status.diff`` turns it
into a merge patch against what status holds (empty when nothing changed: an unchanged
resource is reconciled without a single write). Events come in the order things happened
(the rollout action, the failover, the plan, the applies, the removals, the rollout, the
re-planning), then one per condition that newly went bad or recovered.

Status describes what runs: while a closed gate holds back a change to a serving
Deployment, or a canary (or a rolled-back change) keeps the primary on its stable
template, the plan and licence in status stay the stable ones (``shown``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from llama_operator import api
from llama_operator.api import conditions
from llama_operator.api.events import Event
from llama_operator.operations import adapters, failover, replanning
from llama_operator.reconcile import (
    adapter_loading,
    apply,
    converge,
    desired_state,
    fallbacks,
    inputs,
    observe,
    observed_capacity,
    rollout_step,
    serving_gates,
    serving_slo,
    status,
)
from llama_operator.serving import builders


@dataclasses.dataclass(frozen=True)
class Outcome:
    """What one reconcile leaves: the status patch and Events the handler writes, and
    what the operator's metrics count."""

    status_patch: dict[str, Any]
    events: list[Event]
    written: list[str]  # "Kind/name" applied because they changed
    phase: api.Phase
    failure: str | None  # the Planned=False reason, when the spec could not be planned
    refreshed: list[str] = dataclasses.field(default_factory=list)  # re-applied unchanged
    consume_action: bool = False  # remove the llamaops.dev/rollout annotation (acted on)


@dataclasses.dataclass(frozen=True)
class Shown:
    """What status says runs: the plan and licence, and whether the plan is news."""

    plan: api.Plan | None  # None: status.plan stays as it is
    license: dict[str, Any] | None  # None: status.license stays as it is
    new_plan: bool  # a Planned Event is due


def shown(
    seen: observe.Observed,
    planned: desired_state.Planned,
    *,
    gate: serving_gates.Gate,
    step: rollout_step.Step,
    applied: apply.Applied,
) -> Shown:
    """The plan and licence status shows after this reconcile."""
    plan = planned.plan
    if applied.held_back is not None and seen.primary is not None:
        # status describes what runs: the held plan and licence are not it (the
        # conditions say what is held and why).
        return Shown(plan=None, license=None, new_plan=False)
    if step.holds_primary:
        # The primary runs the stable revision: its plan and licence stay in status;
        # the canary's plan is in status.rollout.
        return Shown(plan=None, license=None, new_plan=False)
    new_plan = plan is not None and plan.model_dump(
        mode="json", exclude_none=True
    ) != seen.previous.raw.get("plan")
    return Shown(plan=plan, license=gate.license, new_plan=new_plan)


@dataclasses.dataclass(frozen=True)
class Served:
    """The results of the phases that ran because there was something to serve."""

    gate: serving_gates.Gate
    step: rollout_step.Step
    chosen: fallbacks.Failover
    applied: apply.Applied
    converged: converge.Converged
    shown: Shown
    capacity: observed_capacity.Capacity
    serving: serving_slo.Serving
    adapters: adapter_loading.Loading = adapter_loading.NOTHING


def report(
    seen: observe.Observed,
    planned: desired_state.Planned,
    *,
    served: Served | None,
    clock: inputs.Clock,
) -> Outcome:
    """The status patch and Events of this reconcile. ``served`` None: nothing could be
    served as planned (no child was touched)."""
    events = _served_events(served, planned=planned) if served is not None else []
    replanned = _replanned(planned.recovered, seen.previous, plan=planned.plan)
    if replanned.event is not None:
        events.append(replanned.event)
    new_status = status.compute(
        _observation(seen, planned, served=served, replanned=replanned, now=clock.now)
    )
    events.extend(condition_events(seen.previous.raw, new_status))
    written = (
        _written(applied=served.applied, converged=served.converged) if served is not None else []
    )
    return Outcome(
        status_patch=status.diff(seen.previous.raw, new_status),
        events=events,
        written=written,
        phase=new_status["phase"],
        failure=planned.failure.reason if planned.failure is not None else None,
        refreshed=list(served.applied.refreshed) if served is not None else [],
        consume_action=served.step.consume_action if served is not None else False,
    )


def _written(*, applied: apply.Applied, converged: converge.Converged) -> list[str]:
    """What was written because it changed: the applies, then the held primary's patch."""
    return [*applied.written, *((converged.resized,) if converged.resized else ())]


def _served_events(served: Served, *, planned: desired_state.Planned) -> list[Event]:
    """The Events of the phases that serve, in the order their phases ran."""
    events = [*served.step.events, *served.chosen.switched.events]
    if served.shown.new_plan and planned.plan is not None:
        events.append(Event("Normal", "Planned", planned.plan.reason))
    written = _written(applied=served.applied, converged=served.converged)
    if written:
        events.append(Event("Normal", "Applied", ", ".join(written)))
    if served.applied.drifted:
        events.append(
            Event(
                "Warning",
                "DriftReverted",
                f"{', '.join(served.applied.drifted)}: changed outside the operator while it "
                "was not running; the operator's fields were re-applied",
            )
        )
    if served.converged.removed:
        events.append(Event("Normal", "Removed", ", ".join(served.converged.removed)))
    if served.step.decision is not None:
        events.extend(served.step.decision.events)
    return events


def _observation(
    seen: observe.Observed,
    planned: desired_state.Planned,
    *,
    served: Served | None,
    replanned: _Replanned,
    now: str,
) -> status.Observation:
    """What ``status.compute`` builds status from; the phases' parts that did not run (no
    plan to serve) leave their slices of status as they are."""
    base = status.Observation(
        generation=seen.meta.generation,
        previous=seen.previous.raw,
        plan=None,
        failure=planned.failure,
        deployment=seen.primary,
        desired_replicas=seen.replicas,
        selector=builders.selector_string(name=seen.meta.name, variant="primary"),
        not_yet_active=observe.not_yet_active(seen.raw_spec),
        now=now,
        autoscaled=isinstance(seen.raw_spec.get("autoscaling"), Mapping),
        recovery=replanned.recovery,
        plan_history=replanned.history,
    )
    if served is None or planned.wanted is None:
        return base
    spec, decision = planned.wanted.spec, served.step.decision
    switched, converged = served.chosen.switched, served.converged
    return dataclasses.replace(
        base,
        plan=served.capacity.plan,
        deployment=converged.primary,
        desired_replicas=(
            decision.stable_replicas
            if decision is not None and decision.mode == "canary"
            else seen.replicas
        ),
        license=served.shown.license,
        checks=_checks(
            served,
            spec=spec,
            name=seen.meta.name,
            wanted_adapters=planned.wanted.adapter_decisions,
        ),
        removed=_removed(served, spec=spec),
        held_back=served.applied.held_back or (decision.held if decision is not None else None),
        external_scaler=converged.external_scaler,
        scaler_known=converged.scaler_known,
        rollout=(
            rollout_step.rollout_status(decision, wanted=planned.wanted)
            if decision is not None
            else None
        ),
        canary_replicas=converged.canary.replicas,
        canary_ready=converged.canary.ready,
        http_route=converged.http_route,
        route_known=converged.route_known,
        network_policy=converged.network_policy,
        network_policy_known=converged.policy_known,
        failover=switched.status,
        failover_known=True,
        active_model=switched.active_model,
        serving_fallback=_serving_fallback(switched),
        fallback_ready=_active_ready(switched),
        serving=served.serving.status,
        serving_known=served.serving.known,
        adapters=_adapters(planned.wanted, shown=served.shown, loading=served.adapters),
    )


def _adapters(
    wanted: desired_state.Desired, *, shown: Shown, loading: adapter_loading.Loading
) -> list[dict[str, Any]] | None:
    """status.adapters, with the plan: while status keeps the running plan (a held change, a
    canary on its way), it keeps the adapters that plan serves too. With runtime updates
    they change in the running pods whatever the template, and status says so at once."""
    if loading.statuses is not None:
        return [entry.model_dump(mode="json", exclude_none=True) for entry in loading.statuses]
    if shown.plan is None:
        return None
    return [
        d.status.model_dump(mode="json", exclude_none=True) for d in wanted.adapter_decisions.each
    ]


def _checks(
    served: Served,
    *,
    spec: api.LlamaDeploymentSpec,
    name: str,
    wanted_adapters: adapters.Decisions,
) -> tuple[conditions.Check, ...]:
    """The conditions to set, phase by phase."""
    decision, switched = served.step.decision, served.chosen.switched
    return (
        *served.gate.checks,
        *_autoscaling_checks(spec, served.applied.scaler_missing),
        *(decision.checks if decision is not None else ()),
        *_traffic_checks(spec, name, served.applied.route_missing),
        *switched.checks,
        *((switched.placement,) if switched.placement else ()),
        *((served.capacity.check,) if served.capacity.check is not None else ()),
        *((served.serving.check,) if served.serving.check is not None else ()),
        *_adapter_checks(wanted_adapters, served.adapters),
    )


def _adapter_checks(
    decisions: adapters.Decisions, loading: adapter_loading.Loading
) -> tuple[conditions.Check, ...]:
    """AdaptersReady: runtime loading's when it decides it, else the decision's."""
    check = loading.check if loading.check is not None else decisions.check
    return (check,) if check is not None else ()


def _removed(served: Served, *, spec: api.LlamaDeploymentSpec) -> tuple[str, ...]:
    """The condition types that no longer apply, phase by phase."""
    decision, switched, kv = served.step.decision, served.chosen.switched, served.capacity
    return (
        *served.gate.removed,
        *_autoscaling_removed(spec),
        *(decision.removed if decision is not None else ()),
        *switched.removed,
        *(() if spec.fallbacks else (conditions.FALLBACKS_PLANNED,)),
        *(() if spec.traffic and spec.traffic.gatewayRef else (conditions.TRAFFIC,)),
        *((conditions.KV_CACHE_CAPACITY,) if kv.known and kv.check is None else ()),
        *served.serving.removed,
        *(() if spec.adapters else (conditions.ADAPTERS_READY,)),
    )


@dataclasses.dataclass(frozen=True)
class _Replanned:
    """status.planHistory and status.recovery after this reconcile's re-planning (None:
    unchanged), and its Event."""

    history: Sequence[Mapping[str, Any]] | None = None
    recovery: Mapping[str, Any] | None = None
    event: Event | None = None


def _replanned(
    recovered: replanning.Outcome | None,
    previous: observe.Previous,
    *,
    plan: api.Plan | None,
) -> _Replanned:
    """status.planHistory and status.recovery after this reconcile's re-planning (None:
    unchanged), and its Event."""
    if recovered is None:
        return _Replanned()
    state = recovered.state.model_dump(mode="json", exclude_none=True)
    empty = not recovered.state.excludedPools and recovered.state.headroom == 0
    recovery_status = None if empty and not previous.raw.get("recovery") else state
    change = recovered.change
    if change is None:
        return _Replanned(recovery=recovery_status)
    landed = change.model_copy(update={"toPool": plan.pool if plan is not None else None})
    where = (
        f"now on pool {plan.pool}: {builders.plan_summary(plan=plan)}, maxModelLen "
        f"{plan.maxModelLen}"
        if plan is not None
        else "and no plan fits any more (see the Planned condition)"
    )
    history = replanning.merge_history(list(previous.plan_history), landed)
    return _Replanned(
        history=[e.model_dump(mode="json", exclude_none=True) for e in history],
        recovery=recovery_status,
        event=Event("Warning", "Replanned", f"{change.message}; {where}"),
    )


def _serving_fallback(switched: failover.Decision | None) -> str | None:
    if switched is None or switched.active == failover.PRIMARY:
        return None
    state = switched.status or {}
    return f"serving from {switched.active} ({switched.active_model}): {state.get('message', '')}"


def _active_ready(switched: failover.Decision | None) -> int:
    if switched is None or switched.index is None:
        return 0
    rows = (switched.status or {}).get("fallbacks") or []
    return int(rows[switched.index].get("readyReplicas") or 0) if switched.index < len(rows) else 0


def _traffic_checks(
    spec: api.LlamaDeploymentSpec, name: str, missing: str | None
) -> tuple[conditions.Check, ...]:
    """The Traffic condition: how the weights reach the Gateway, or why they cannot."""
    if spec.traffic is None or spec.traffic.gatewayRef is None:
        return ()
    ref = spec.traffic.gatewayRef
    gateway = f"{ref.namespace}/{ref.name}" if ref.namespace else ref.name
    if missing is not None:
        message = (
            f"the cluster does not serve {missing}: a canary's traffic is split by replica "
            "ratio behind the Service meanwhile; install the Gateway API CRDs for exact "
            "weights, or remove spec.traffic.gatewayRef"
        )
        return (conditions.Check(conditions.TRAFFIC, "False", "GatewayAPINotInstalled", message),)
    message = f"HTTPRoute {name} on Gateway {gateway} carries the variants' weights"
    return (conditions.Check(conditions.TRAFFIC, "True", "HTTPRoute", message),)


def _autoscaling_checks(
    spec: api.LlamaDeploymentSpec, missing: str | None
) -> tuple[conditions.Check, ...]:
    """The Autoscaling condition: who scales this endpoint, on what, or why nobody can."""
    a = spec.autoscaling
    if a is None:
        return ()
    target = f"target {a.effective_target():g} {a.metric} per replica"
    bounds = f"{a.minReplicas}..{a.maxReplicas} replicas"
    if a.engine == "builtin":
        message = f"the operator scales on {target}, every {a.intervalSeconds}s, {bounds}"
        return (conditions.Check(conditions.AUTOSCALING, "True", "Builtin", message),)
    kind = "ScaledObject" if a.engine == "keda" else "HorizontalPodAutoscaler"
    if missing is not None:
        fix = "install KEDA" if a.engine == "keda" else "check the autoscaling/v2 API"
        message = (
            f"the cluster does not serve {missing}: {fix}, or set spec.autoscaling.engine: "
            "builtin; replicas stay as spec.replicas says meanwhile"
        )
        return (conditions.Check(conditions.AUTOSCALING, "False", "ScalerNotInstalled", message),)
    if a.engine == "keda":
        message = f"KEDA scales on {target} through the ScaledObject, {bounds}"
    else:
        message = f"a HorizontalPodAutoscaler scales on {target}, {bounds}"
    return (conditions.Check(conditions.AUTOSCALING, "True", kind, message),)


def _autoscaling_removed(spec: api.LlamaDeploymentSpec) -> tuple[str, ...]:
    return (conditions.AUTOSCALING,) if spec.autoscaling is None else ()


# Condition types whose move to this status is a Warning Event (once, not every tick).
_WARN_WHEN = {
    conditions.PLANNED: "False",
    conditions.RECONCILED: "False",
    conditions.NOT_YET_ACTIVE: "True",
    conditions.LICENSE_ACCEPTED: "False",
    conditions.MODEL_ACCESSIBLE: "False",
    conditions.LICENSE_RESTRICTED: "True",
    conditions.AUTOSCALING: "False",
    conditions.AUTHENTICATED: "False",
    conditions.ENGINE_PROFILE: "False",
    conditions.POD_SECURITY: "False",
    conditions.ENGINE_ARGS: "False",
    conditions.FALLBACKS_PLANNED: "False",
    conditions.KV_CACHE_CAPACITY: "False",
    conditions.SLO_MET: "False",
    conditions.ADAPTERS_READY: "False",
}

# Condition types above whose message changes with every measurement: a Warning only when
# the status moves (one ObjectiveMissed per breach, not one per window).
_ON_TRANSITION_ONLY = {conditions.SLO_MET}


# Reasons of a condition above that are a choice or a state passed through, not a fault:
# no Warning for them (AdaptersReady AdapterLoading: every runtime adapter change passes
# through it until the next reconcile has loaded it).
_CHOSEN = {"AuthOptional", adapter_loading.LOADING}


# ...and those whose recovery from a warning is worth a Normal Event.
_RECOVERED_WHEN = {
    conditions.RECONCILED: "True",
    conditions.LICENSE_ACCEPTED: "True",
    conditions.MODEL_ACCESSIBLE: "True",
    conditions.AUTHENTICATED: "True",
    conditions.ENGINE_ARGS: "True",
    conditions.FALLBACKS_PLANNED: "True",
    conditions.KV_CACHE_CAPACITY: "True",
    conditions.SLO_MET: "True",
    conditions.ADAPTERS_READY: "True",
}


def condition_events(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[Event]:
    """Events for conditions that newly went bad, or recovered (not on every tick)."""
    result = []
    old_conditions = old.get("conditions") or []
    for type_, bad in _WARN_WHEN.items():
        after = conditions.find(new.get("conditions") or [], type_)
        before = conditions.find(old_conditions, type_)
        if after is None:
            continue
        changed = (
            before is None
            or before.get("status") != after["status"]
            or (type_ not in _ON_TRANSITION_ONLY and before.get("message") != after.get("message"))
        )
        if after["status"] == bad and changed and after.get("reason") not in _CHOSEN:
            result.append(Event("Warning", after["reason"], after["message"]))
        elif (
            _RECOVERED_WHEN.get(type_) == after["status"]
            and before is not None
            and before.get("status") == bad
        ):
            result.append(Event("Normal", after["reason"], after["message"]))
    return result


def unservable(
    failure: status.PlanningFailure,
    *,
    body: Mapping[str, Any],
    meta: observe.Meta,
    lookup: inputs.Lookup,
    clock: inputs.Clock,
) -> Outcome:
    """A LlamaDeployment whose name no child could have (``api.name_problem``): Planned
    False with reason InvalidName, nothing applied, read or deleted. A Deployment an older
    operator version left under this name is reported as it is, and goes with the
    LlamaDeployment (owner references) once it is deleted."""
    raw_spec = body.get("spec") or {}
    previous = body.get("status") or {}
    replicas = raw_spec.get("replicas", 1)
    new_status = status.compute(
        status.Observation(
            generation=meta.generation,
            previous=previous,
            plan=None,
            failure=failure,
            deployment=lookup("Deployment", meta.namespace, f"{meta.name}-{builders.PRIMARY}"),
            desired_replicas=replicas if isinstance(replicas, int) else 1,
            selector=builders.selector_string(name=meta.name, variant=builders.PRIMARY),
            not_yet_active=observe.not_yet_active(raw_spec),
            now=clock.now,
        )
    )
    return Outcome(
        status_patch=status.diff(previous, new_status),
        events=condition_events(previous, new_status),
        written=[],
        phase=new_status["phase"],
        failure=failure.reason,
    )
