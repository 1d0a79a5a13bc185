"""The rollout step: this reconcile's move of a canary rollout (``operations.rollout``).

After the gates, before the fallbacks: only an open gate decides about rollouts (no
canary of a change that may not be served; a rollout under way waits while a gate is
closed). Gathers what ``rollout.decide`` needs: the primary and canary Deployments as
watched, a manual action from the ``llamaops.dev/rollout`` annotation (acted on once per
object version), a crashed pod of the canary under test, and a judgement of the canary's
metrics (``inputs.Readers.measure``). The decision's mode then shapes the render, the
apply and the converge phases.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, MutableMapping
from typing import Any

from llama_operator import api
from llama_operator.api import conditions
from llama_operator.api.events import Event
from llama_operator.operations import canary_analysis, rollout
from llama_operator.reconcile import desired_state, inputs, observe, serving_gates, status
from llama_operator.serving import builders


@dataclasses.dataclass(frozen=True)
class Step:
    """The rollout step's result."""

    decision: rollout.Decision | None  # None: a closed gate decided nothing
    # The manual action consumed: None (no annotation, or one already acted on), "" (acted
    # on), or a warning (an unknown action, removed all the same).
    consumed: str | None = None

    @property
    def consume_action(self) -> bool:
        """Whether to remove the llamaops.dev/rollout annotation (it was acted on)."""
        return self.consumed is not None

    @property
    def events(self) -> tuple[Event, ...]:
        if self.consumed:
            return (Event("Warning", "UnknownRolloutAction", self.consumed),)
        return ()

    @property
    def holds_primary(self) -> bool:
        """Whether the primary keeps the stable template (a canary runs, or a rolled-back
        change is held): its plan and licence stay in status."""
        return self.decision is not None and self.decision.mode in ("canary", "hold")


def step(
    seen: observe.Observed,
    wanted: desired_state.Desired,
    *,
    gate: serving_gates.Gate,
    cluster: inputs.Cluster,
    readers: inputs.Readers,
    memory: inputs.Memory,
    clock: inputs.Clock,
) -> Step:
    """The rollout decision for this reconcile, and the manual action consumed."""
    if gate.hold is not None:
        # A closed gate decides nothing about rollouts: no canary of a change that may
        # not be served, and a rollout under way stays as it is until the gate opens.
        return Step(decision=None)
    meta, previous = seen.meta, seen.previous
    before = previous.rollout
    revision = builders.revision_of(wanted.primary_deployment()) or ""
    primary = cluster.lookup("Deployment", meta.namespace, f"{meta.name}-primary")
    canary = cluster.lookup("Deployment", meta.namespace, f"{meta.name}-{builders.CANARY}")
    policy = rollout.policy_of(wanted.spec)
    action, consumed = _action(meta, handled=memory.handled)
    failure = _canary_failure(canary, before, revision=revision, meta=meta, cluster=cluster)
    judgement = _judgement(
        wanted, previous, revision=revision, meta=meta, policy=policy, measure=readers.measure
    )
    decision = rollout.decide(
        policy,
        before,
        rollout.Observed(
            desired_revision=revision,
            primary=_variant(primary),
            canary=_variant(canary),
            replicas=wanted.spec.replicas,
            gateway=_routed(wanted.spec, previous=previous),
            now=clock.seconds,
            wall=clock.now,
            canary_failure=failure,
            judgement=judgement,
            action=action,
        ),
    )
    return Step(decision=decision, consumed=consumed)


def _action(
    meta: observe.Meta, *, handled: MutableMapping[str, str]
) -> tuple[rollout.Action | None, str | None]:
    """The manual action to act on now, and what was consumed (``Step.consumed``)."""
    written = rollout.action_of(meta.annotations)
    action = rollout.parse_action(written)
    if written is None:
        return action, None
    # Once per object version: a stale copy still carrying the annotation (the watch
    # has not caught up with its removal) must not act twice ("next" would skip a step).
    version = f"{meta.resource_version}/{written}"
    if handled.get(meta.uid) == version:
        return None, None
    handled[meta.uid] = version
    consumed = (
        ""
        if action is not None
        else f"{rollout.ACTION_ANNOTATION}={written!r} is not an action: use one of "
        + ", ".join(rollout.ACTIONS)
        + "; the annotation was removed"
    )
    return action, consumed


def _canary_failure(
    canary: Mapping[str, Any] | None,
    before: api.RolloutStatus | None,
    *,
    revision: str,
    meta: observe.Meta,
    cluster: inputs.Cluster,
) -> str | None:
    """Why the canary under test cannot serve (a crashed pod), read from its pods."""
    in_progress = before is not None and before.phase in api.ROLLOUT_UNDER_TEST
    if canary is None or not in_progress:
        return None
    # This revision's pods only: a crashed pod of an older canary template (the spec
    # changed mid-rollout) says nothing about the newest one.
    pods = cluster.client.list_pods(
        namespace=meta.namespace,
        labels={
            **builders.selector(name=meta.name, variant=builders.CANARY),
            builders.REVISION_LABEL: revision,
        },
    )
    return rollout.pod_failure(pods)


def _judgement(
    wanted: desired_state.Desired,
    previous: observe.Previous,
    *,
    revision: str,
    meta: observe.Meta,
    policy: api.Rollout,
    measure: inputs.Measure | None,
) -> canary_analysis.Judgement | None:
    """A judgement of the canary against the stable pods, when one is due."""
    stable_plan = previous.plan_as_written
    if (
        measure is None
        or not rollout.should_measure(previous.rollout, revision)
        or stable_plan.get("engine") not in ("vllm", "tgi")
    ):
        return None
    return measure(
        inputs.MeasureRequest(
            namespace=meta.namespace,
            name=meta.name,
            uid=meta.uid,
            revision=revision,
            canary_engine=wanted.plan.engine,
            stable_engine=stable_plan["engine"],
            analysis=policy.analysis,
            canary_engine_version=wanted.plan.engineVersion,
            stable_engine_version=_version_of(stable_plan),
        )
    )


def _routed(spec: api.LlamaDeploymentSpec, *, previous: observe.Previous) -> bool:
    """Whether a Gateway carries the canary's traffic by weight."""
    traffic = spec.traffic
    # A Gateway the cluster cannot route for (no Gateway API: the HTTPRoute apply was
    # refused) carries no canary traffic: split by replica ratio behind the Service.
    routed = traffic is not None and traffic.gatewayRef is not None
    refused = conditions.find(previous.conditions, conditions.TRAFFIC)
    if refused is not None and refused.get("reason") == "GatewayAPINotInstalled":
        routed = False
    return routed


def _variant(deployment: Mapping[str, Any] | None) -> rollout.Variant:
    if deployment is None:
        return rollout.Variant()
    c = status.counts(deployment)
    return rollout.Variant(
        exists=True,
        revision=builders.revision_of(deployment),
        replicas=c.replicas,
        ready=c.ready,
        updated=c.updated,
        current=c.current,
        deadline_exceeded=c.deadline_exceeded,
    )


def _version_of(plan: Mapping[str, Any]) -> str | None:
    """``engineVersion`` of a plan read from status (absent in plans written before 0.7)."""
    version = plan.get("engineVersion")
    return version if isinstance(version, str) else None


def rollout_status(
    decision: rollout.Decision, *, wanted: desired_state.Desired
) -> dict[str, Any] | None:
    """status.rollout after ``decision`` (None leaves it as it is), with the canary's plan
    while a canary is what the rollout is about."""
    if decision.status is None or decision.mode == "direct":
        return decision.status
    return {
        **decision.status,
        "canaryPlan": wanted.plan.model_dump(mode="json", exclude_none=True),
    }
