"""The states of a canary rollout, and what each renders.

Pipeline position: below ``rollout.decide``, which picks the transition from what it
observes (``Observed``: the primary and canary Deployments, the clock, a judgement, an
action) and calls one of these to build it: ``start`` a canary, ``render`` one in
progress, ``to_promoting`` / ``promoting``, ``rolled_back`` then ``hold``, ``ended``
(Completed or Cancelled), or ``direct`` (no rollout). Each returns the ``Decision`` the
reconcile renders: the mode, the replica split (``split``), the traffic weight, the new
``status.rollout``, the Rollout and RolledBack conditions, and Events. Pure: no I/O.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any, Literal

from llama_operator import api
from llama_operator.api import conditions
from llama_operator.api.events import Event
from llama_operator.operations import canary_analysis

Action = Literal["promote", "next", "abort", "retry"]
Mode = Literal["direct", "canary", "promote", "hold"]
# Phases in which the canary is in traffic: past Starting, it gets its step's weight.
IN_TRAFFIC: frozenset[api.RolloutPhase] = api.ROLLOUT_IN_PROGRESS - {"Starting"}
ROLLOUT = conditions.ROLLOUT
ROLLED_BACK = conditions.ROLLED_BACK
# status.rollout.reason (and the Rollout condition's) while the rollout is under way ...
StepReason = Literal[
    "CanaryStarting",
    "Step",
    "Paused",
    "WaitingForPromote",
    "Inconclusive",
    "CanaryUnavailable",
    "Promoting",
]
# ... when it was rolled back (the RolledBack condition's reason too) ...
RollbackReason = Literal["ManualAbort", "CanaryFailed", "CanaryNotReady", "AnalysisFailed"]
# ... and when it ended otherwise (also the reason of the Event that says so).
EndReason = Literal["Promoted", "Cancelled", "SpecReverted", "AppliedDirectly"]
Reason = StepReason | RollbackReason | EndReason


@dataclasses.dataclass(frozen=True)
class Variant:
    """What one Deployment (primary or canary) reports."""

    exists: bool = False
    revision: str | None = None  # the pod-template revision it was applied with
    replicas: int = 0
    ready: int = 0
    updated: int = 0
    current: bool = False  # the Deployment controller has seen its latest template
    deadline_exceeded: bool = False


@dataclasses.dataclass(frozen=True)
class Observed:
    desired_revision: str  # of the newest spec
    primary: Variant
    canary: Variant
    replicas: int  # spec.replicas: the whole endpoint's
    gateway: bool  # an HTTPRoute carries the weights (else the replica ratio does)
    now: float  # seconds since the epoch
    wall: str  # the same instant, RFC 3339
    canary_failure: str | None = None  # a crashed or OOM-killed canary pod, described
    judgement: canary_analysis.Judgement | None = None  # of the canary, measured this tick
    action: Action | None = None


@dataclasses.dataclass(frozen=True)
class Decision:
    mode: Mode
    status: dict[str, Any] | None  # status.rollout to write; None leaves it as it is
    canary_replicas: int = 0
    stable_replicas: int = 0
    weight: int = 0  # percent of the route's traffic on the canary (gateway mode)
    both: bool = False  # the entry Service selects the canary's pods too
    events: tuple[Event, ...] = ()
    checks: tuple[conditions.Check, ...] = ()
    removed: tuple[str, ...] = ()
    held: str | None = None  # why the newest spec is not what the primary runs

    @property
    def canary_exists(self) -> bool:
        return self.mode in ("canary", "promote")


def split(replicas: int, weight: int) -> tuple[int, int]:
    """(canary, stable) replicas: the canary's nearest to ``weight`` percent, at least one
    each, and together the endpoint's count (one more when that is 1: a canary beside a
    single stable pod gets half the traffic, which status reports as the effective weight)."""
    total = max(replicas, 1)
    canary = min(max(1, math.floor(total * weight / 100 + 0.5)), max(total - 1, 1))
    return canary, max(1, total - canary)


def effective_weight(*, gateway: bool, weight: int, canary_ready: int, stable_ready: int) -> float:
    """Percent of requests the canary actually gets."""
    if canary_ready <= 0:
        return 0.0
    if gateway:
        return float(weight)
    return round(100.0 * canary_ready / (canary_ready + stable_ready), 1)


def direct(previous: api.RolloutStatus | None) -> Decision:
    """No rollout: the primary takes the newest template itself."""
    removed: tuple[str, ...] = (ROLLED_BACK,)
    if previous is None:
        removed = (ROLLOUT, ROLLED_BACK)
    return Decision(mode="direct", status=None, removed=removed, checks=checks_of(previous))


def start(
    policy: api.Rollout, previous: api.RolloutStatus | None, o: Observed, *, retry: bool
) -> Decision:
    """A canary of the newest spec, Starting beside the stable (a first start, a restart
    for a newer spec, or the ``retry`` action)."""
    canary, _ = split(o.replicas, policy.steps[0].weight)
    message = (
        f"canary of revision {o.desired_revision} created from the latest spec beside the "
        f"stable revision {o.primary.revision}; waiting up to {policy.readyTimeout} for it to "
        "be Ready"
    )
    state = api.RolloutStatus(
        phase="Starting",
        reason="CanaryStarting",
        message=message,
        stableRevision=o.primary.revision,
        canaryRevision=o.desired_revision,
        step=0,
        steps=len(policy.steps),
        weight=0,
        effectiveWeight=0.0,
        canaryReplicas=canary,
        stableReplicas=max(o.replicas, 1),
        startedAt=api.stamp(o.now),
        stepStartedAt=None,
        lastTransitionTime=o.wall,
    )
    if retry:
        reason, text = "RolloutRetried", f"retrying revision {o.desired_revision}: {message}"
    elif previous is not None and previous.phase in api.ROLLOUT_IN_PROGRESS:
        reason = "RolloutRestarted"
        text = f"the spec changed during the rollout of {previous.canaryRevision}: {message}"
    else:
        reason, text = "RolloutStarted", message
    return render(policy, state, o, events=(Event("Normal", reason, text),))


def to_promoting(
    policy: api.Rollout,
    state: api.RolloutStatus,
    o: Observed,
    *,
    why: str,
    events: Sequence[Event] = (),
) -> Decision:
    """Promoting begins: every step passed, or the ``promote`` action."""
    message = (
        f"{why}: the primary takes revision {state.canaryRevision}; the canary serves until "
        "every primary pod runs it"
    )
    state = with_phase(state, o, phase="Promoting", reason="Promoting", message=message)
    return render(policy, state, o, events=(*events, Event("Normal", "Promoting", message)))


def promoting(policy: api.Rollout, state: api.RolloutStatus, o: Observed) -> Decision:
    """Promoting goes on until every primary pod runs the canary's template."""
    message = (
        f"the primary takes revision {state.canaryRevision}: {o.primary.updated}/"
        f"{max(o.replicas, 1)} updated, {o.primary.ready} ready; the canary serves until it is done"
    )
    state = with_phase(state, o, phase="Promoting", reason="Promoting", message=message)
    return render(policy, state, o)


def rolled_back(
    state: api.RolloutStatus, o: Observed, *, reason: RollbackReason, detail: str
) -> Decision:
    """The canary is gone and traffic back on the stable; the change is then held."""
    message = (
        f"revision {state.canaryRevision} rolled back at step "
        f"{state.step + 1}/{state.steps} ({reason}): {detail}"
    )
    state = with_phase(state, o, phase="RolledBack", reason=reason, message=message).model_copy(
        update={"weight": 0, "effectiveWeight": 0.0, "canaryReplicas": 0}
    )
    decision = hold(state, o)
    return dataclasses.replace(
        decision, events=(Event("Warning", "RolledBack", message + _RETRY_HINT),)
    )


_RETRY_HINT = (
    "; traffic is back on the stable revision. The change is not retried until the spec "
    "changes again (or annotate llamaops.dev/rollout=retry)"
)


def hold(state: api.RolloutStatus, o: Observed) -> Decision:
    """A rolled-back change, held until the spec changes again (or ``retry``)."""
    held = state.message + _RETRY_HINT
    # No canary beside it: the primary follows spec.replicas, 0 included (scaled to zero).
    status = state.model_copy(update={"stableReplicas": o.replicas})
    return Decision(
        mode="hold",
        status=_dump(status),
        stable_replicas=o.replicas,
        checks=checks_of(status),
        held=held,
    )


def ended(
    previous: api.RolloutStatus,
    o: Observed,
    *,
    phase: api.RolloutPhase,
    reason: EndReason,
    message: str,
) -> Decision:
    """The rollout is over (Completed or Cancelled): the primary takes the newest spec."""
    state = with_phase(previous, o, phase=phase, reason=reason, message=message).model_copy(
        update={
            "weight": 0,
            "effectiveWeight": 0.0,
            "canaryReplicas": 0,
            "stableReplicas": max(o.replicas, 1),
        }
    )
    events = () if previous.phase == phase else (Event("Normal", reason, message),)
    return Decision(
        mode="direct",
        status=_dump(state),
        stable_replicas=max(o.replicas, 1),
        events=events,
        checks=checks_of(state),
        removed=(ROLLED_BACK,),
    )


def render(
    policy: api.Rollout, state: api.RolloutStatus, o: Observed, *, events: Sequence[Event] = ()
) -> Decision:
    """The replica split, weights and conditions of an in-progress state."""
    step = policy.steps[min(state.step, len(policy.steps) - 1)]
    in_traffic = state.phase in IN_TRAFFIC
    canary, stable = split(o.replicas, step.weight)
    if state.phase == "Starting":
        stable = max(o.replicas, 1)  # the stable shrinks only once the canary serves
    if state.phase == "Promoting" or state.reason == "CanaryUnavailable":
        stable = max(o.replicas, 1)
    weight = step.weight if in_traffic else 0
    effective = effective_weight(
        gateway=o.gateway,
        weight=weight,
        canary_ready=o.canary.ready if in_traffic else 0,
        stable_ready=o.primary.ready,
    )
    state = state.model_copy(
        update={
            "weight": weight,
            "effectiveWeight": effective,
            "canaryReplicas": canary,
            "stableReplicas": stable,
        }
    )
    return Decision(
        mode="promote" if state.phase == "Promoting" else "canary",
        status=_dump(state),
        canary_replicas=canary,
        stable_replicas=stable,
        weight=weight,
        both=in_traffic and not o.gateway,
        events=tuple(events),
        checks=checks_of(state),
        removed=(ROLLED_BACK,),
    )


def checks_of(state: api.RolloutStatus | None) -> tuple[conditions.Check, ...]:
    """The Rollout condition (and RolledBack, once rolled back) of ``state``."""
    if state is None:
        return ()
    if state.phase in api.ROLLOUT_IN_PROGRESS:
        return (conditions.Check(ROLLOUT, "True", state.reason or state.phase, state.message),)
    rollout = conditions.Check(ROLLOUT, "False", state.phase, state.message)
    if state.phase == "RolledBack":
        return (rollout, conditions.Check(ROLLED_BACK, "True", state.reason, state.message))
    return (rollout,)


def with_phase(
    state: api.RolloutStatus,
    o: Observed,
    *,
    phase: api.RolloutPhase,
    reason: Reason,
    message: str,
) -> api.RolloutStatus:
    """``state`` in ``phase``; its lastTransitionTime moves only when the phase changes."""
    update: dict[str, Any] = {"phase": phase, "reason": reason, "message": message}
    if phase != state.phase:
        update["lastTransitionTime"] = o.wall
    return state.model_copy(update=update)


def _dump(state: api.RolloutStatus) -> dict[str, Any]:
    return state.model_dump(mode="json", exclude_none=True)
