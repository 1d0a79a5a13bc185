"""Canary rollouts: the pure state machine that decides, on every reconcile, what runs.

Inputs are the rollout policy (``spec.rollout``), the rollout state in
``status.rollout`` (so a restarted operator continues where it was), what the
primary and canary Deployments report, whether a canary pod crashed, a judgement of
the canary's metrics made this tick (``canary_analysis.judge``), a manual action from the
``llamaops.dev/rollout`` annotation, and the clock. The output is a ``Decision``:
which mode the reconcile renders in, the replica split, the traffic weight, the new
``status.rollout``, conditions and Events. No I/O.

Revisions are hashes of the primary Deployment's pod template as the operator
renders it (``builders.revision``): the live primary carries its own in an
annotation, the newest spec gives the desired one. They differ exactly when a change
would restart the serving pods, which is what a canary protects.

Modes, as the reconcile renders them:
- ``direct``: no rollout; the primary takes the newest template itself (a plain
  rolling update). Also what a Rolling strategy, a first start, and an endpoint that
  is not serving get: there is nothing to protect, and a broken endpoint must be
  fixable without a canary.
- ``canary``: the primary keeps its template (only its replica count changes) and
  ``<name>-canary`` runs the newest one.
- ``promote``: the primary takes the canary's template; the canary keeps serving
  until every primary pod runs it, so traffic never meets zero ready endpoints.
- ``hold``: a rolled-back change: the primary keeps its template and all replicas,
  the canary is gone, and the change waits until the spec changes again (or the
  ``retry`` action).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from llama_operator import api
from llama_operator.api import conditions
from llama_operator.api.events import Event
from llama_operator.operations import canary_analysis, health

ACTION_ANNOTATION = f"{api.GROUP}/rollout"
Action = Literal["promote", "next", "abort", "retry"]
ACTIONS: tuple[Action, ...] = ("promote", "next", "abort", "retry")
Mode = Literal["direct", "canary", "promote", "hold"]
IN_PROGRESS = api.ROLLOUT_IN_PROGRESS
HISTORY = 10  # analysis runs kept in status.rollout.analysis
ROLLOUT = conditions.ROLLOUT
ROLLED_BACK = conditions.ROLLED_BACK


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


def policy_of(spec: api.LlamaDeploymentSpec) -> api.Rollout:
    """spec.rollout, or the default policy (a canary) when it is omitted."""
    policy = spec.rollout if spec.rollout is not None else api.Rollout()
    if not policy.steps:
        # "steps: []" is what the v0.3.0 CRD stored for a rollout that named none.
        policy = policy.model_copy(update={"steps": api.default_steps()})
    return policy


def previous_of(raw: Any) -> api.RolloutStatus | None:
    """status.rollout, when present and readable by this version."""
    if not isinstance(raw, Mapping):
        return None
    try:
        return api.RolloutStatus.model_validate(dict(raw), strict=False)
    except ValueError:
        return None


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


def decide(policy: api.Rollout, previous: api.RolloutStatus | None, o: Observed) -> Decision:
    """The rollout's next state and what to render for it."""
    in_progress = previous is not None and previous.phase in IN_PROGRESS
    live = o.primary.revision
    rolled_back = previous is not None and previous.phase == "RolledBack"
    if policy.strategy == "Rolling" or not o.primary.exists or live is None:
        if in_progress or rolled_back:
            assert previous is not None
            why = (
                "spec.rollout.strategy is Rolling"
                if policy.strategy == "Rolling"
                else "the primary Deployment is gone"
            )
            return _ended(
                previous,
                o,
                "Cancelled",
                "Cancelled",
                f"{why}: the newest spec is applied to the primary directly",
            )
        return _direct(previous)
    if o.desired_revision == live:
        if (
            previous is not None
            and previous.phase == "Promoting"
            and previous.canaryRevision == live
        ):
            if _rolled_out(o.primary, o.replicas):
                message = f"revision {live} promoted: every primary pod runs it"
                return _ended(previous, o, "Completed", "Promoted", message)
            return _promoting(policy, previous, o)
        if in_progress or rolled_back:
            assert previous is not None
            return _ended(
                previous,
                o,
                "Cancelled",
                "SpecReverted",
                f"the spec is back at the stable revision {live}",
            )
        return _direct(previous)
    if previous is not None and previous.canaryRevision == o.desired_revision:
        if previous.phase == "RolledBack":
            if o.action == "retry":
                return _start(policy, previous, o, retry=True)
            return _hold(previous, o)
        if in_progress:
            return _advance(policy, previous, o)
    if in_progress or (_serving(o.primary) and o.replicas > 0):
        return _start(policy, previous, o, retry=False)
    if _settling(o.primary) and o.replicas > 0 and not rolled_back:
        # Serving, but the Deployment controller has not caught up with the latest
        # Deployment spec (an autoscaler's or our own replica change): a moment later it
        # is serving; applying the change directly now would skip the canary.
        return Decision(
            mode="hold",
            status=None,
            stable_replicas=o.replicas,
            checks=_conditions(previous),
            removed=(ROLLED_BACK,) if previous is None or previous.phase != "RolledBack" else (),
        )
    if rolled_back:
        assert previous is not None
        return _ended(
            previous,
            o,
            "Cancelled",
            "AppliedDirectly",
            "the primary is not serving: the newest spec is applied to it directly",
        )
    return _direct(previous)


def _serving(primary: Variant) -> bool:
    # Only an endpoint that serves on a settled template is protected by a canary; one
    # with no ready pod, or stuck, is fixed by applying the change directly.
    return (
        primary.ready >= 1
        and primary.current
        and primary.updated >= primary.replicas  # not in the middle of a rolling update
        and not primary.deadline_exceeded
    )


def _settling(primary: Variant) -> bool:
    return (
        primary.ready >= 1
        and not primary.current
        and primary.updated >= primary.replicas
        and not primary.deadline_exceeded
    )


def _canary_ready(canary: Variant, revision: str, replicas: int) -> bool:
    # The canary Deployment must run this revision on every pod: after a restart from a
    # newer spec, pods of the older canary template are still ready for a while.
    want = max(replicas, 1)
    return (
        canary.revision == revision
        and canary.current
        and canary.replicas <= canary.updated  # no pod of an older template left
        and canary.updated >= want
        and canary.ready >= want
    )


def should_measure(previous: api.RolloutStatus | None, desired_revision: str) -> bool:
    """Whether this tick may judge the canary: it is in traffic, for the newest spec."""
    return (
        previous is not None
        and previous.phase in ("Progressing", "Paused")
        and previous.canaryRevision == desired_revision
    )


def _rolled_out(primary: Variant, replicas: int) -> bool:
    want = replicas  # 0 (scaled to zero meanwhile): done once the controller caught up
    return (
        primary.current
        and primary.replicas <= primary.updated  # no pod of the old template left
        and primary.updated >= want
        and primary.ready >= want
    )


def _direct(previous: api.RolloutStatus | None) -> Decision:
    removed: tuple[str, ...] = (ROLLED_BACK,)
    if previous is None:
        removed = (ROLLOUT, ROLLED_BACK)
    return Decision(mode="direct", status=None, removed=removed, checks=_conditions(previous))


def _start(
    policy: api.Rollout, previous: api.RolloutStatus | None, o: Observed, *, retry: bool
) -> Decision:
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
    elif previous is not None and previous.phase in IN_PROGRESS:
        reason = "RolloutRestarted"
        text = f"the spec changed during the rollout of {previous.canaryRevision}: {message}"
    else:
        reason, text = "RolloutStarted", message
    return _render(policy, state, o, events=(Event("Normal", reason, text),))


def _advance(policy: api.Rollout, previous: api.RolloutStatus, o: Observed) -> Decision:
    """One tick of a rollout in progress for the newest spec."""
    state = previous.model_copy(update={"steps": len(policy.steps)})
    events: list[Event] = []
    if previous.phase == "Promoting":
        return _promoting(policy, state, o)
    if o.action == "abort":
        return _rolled_back(
            state, o, "ManualAbort", "aborted by the llamaops.dev/rollout annotation"
        )
    if o.canary_failure is not None:
        return _rolled_back(state, o, "CanaryFailed", o.canary_failure)
    if state.phase == "Starting":
        started = _epoch(state.startedAt, o.now)
        timeout = api.parse_duration(policy.readyTimeout)
        # A deadline only counts once the controller has seen this revision's template:
        # until then it may be left over from the template the canary ran before.
        stuck = (
            o.canary.deadline_exceeded
            and o.canary.current
            and o.canary.revision == o.desired_revision
        )
        if stuck or o.now - started >= timeout:
            return _rolled_back(
                state,
                o,
                "CanaryNotReady",
                f"the canary was not Ready within spec.rollout.readyTimeout "
                f"({policy.readyTimeout}): {o.canary.ready}/{state.canaryReplicas} ready",
            )
        if o.action == "promote":
            return _to_promoting(
                policy, state, o, "promoted by the llamaops.dev/rollout annotation"
            )
        if not _canary_ready(o.canary, o.desired_revision, state.canaryReplicas):
            return _render(policy, state, o)
        state = _at_step(state, 0, o)
        events.append(
            Event("Normal", "CanaryReady", f"the canary is Ready: step 1/{len(policy.steps)}")
        )
    step = policy.steps[min(state.step, len(policy.steps) - 1)]
    judgement = o.judgement
    if judgement is not None:
        run = api.AnalysisRun(
            time=o.wall,
            step=state.step,
            result=judgement.result,
            canary=judgement.canary,
            stable=judgement.stable,
            message=judgement.message,
        )
        runs = [*state.analysis, run][-HISTORY:]
        state = state.model_copy(update={"analysis": runs})
        if judgement.result == "Failed":
            failures = state.failures + 1
            state = state.model_copy(update={"failures": failures})
            limit = policy.analysis.failureLimit
            if failures >= limit:
                return _rolled_back(state, o, "AnalysisFailed", judgement.message)
            events.append(
                Event(
                    "Warning",
                    "AnalysisFailed",
                    f"judgement {failures}/{limit} failed: {judgement.message}",
                )
            )
        elif judgement.result == "Passed":
            state = state.model_copy(update={"stepPasses": state.stepPasses + 1})
    if o.action == "promote":
        return _to_promoting(
            policy, state, o, "promoted by the llamaops.dev/rollout annotation", events
        )
    if o.canary.ready < 1:
        return _unavailable(policy, state, o, events)
    elapsed = o.now - _epoch(state.stepStartedAt, o.now)
    pause = api.parse_duration(step.pause) if step.pause is not None else None
    evidence = state.stepPasses >= 1 or policy.analysis.minRequests == 0
    due = pause is not None and elapsed >= pause
    if o.action == "next" or (due and evidence and not policy.paused):
        if state.step + 1 >= len(policy.steps):
            return _to_promoting(policy, state, o, "every step passed", events)
        state = _at_step(state, state.step + 1, o)
        nxt = policy.steps[state.step]
        events.append(
            Event(
                "Normal",
                "StepPassed",
                f"step {state.step}/{len(policy.steps)} passed; step {state.step + 1}: "
                f"{nxt.weight}% of traffic on the canary",
            )
        )
        step, pause, due = nxt, (api.parse_duration(nxt.pause) if nxt.pause else None), False
        elapsed = 0.0
    where = f"step {state.step + 1}/{len(policy.steps)}, {step.weight}% of traffic on the canary"
    verdicts = (
        f"{state.stepPasses} passed judgement(s) at this step, "
        f"{state.failures}/{policy.analysis.failureLimit} failed in all"
    )
    if policy.paused:
        phase, reason = "Paused", "Paused"
        message = f"{where}: paused by spec.rollout.paused (analysis goes on); {verdicts}"
    elif pause is None:
        phase, reason = "Paused", "WaitingForPromote"
        message = (
            f"{where}: this step has no pause; annotate llamaops.dev/rollout=next or =promote "
            f"to go on; {verdicts}"
        )
    elif due and not evidence:
        phase, reason = "Paused", "Inconclusive"
        message = (
            f"{where}: the pause is over but no judgement passed yet: fewer than "
            f"spec.rollout.analysis.minRequests ({policy.analysis.minRequests}) canary "
            "requests per window. It goes on once enough requests arrive; annotate "
            "llamaops.dev/rollout=next or =promote to go on without"
        )
    else:
        phase, reason = "Progressing", "Step"
        left = max(0, math.ceil((pause or 0) - elapsed))
        message = f"{where}, {left}s of {step.pause} left; {verdicts}"
    state = _phase(state, phase, reason, message, o)
    return _render(policy, state, o, events=tuple(events))


def _unavailable(
    policy: api.Rollout, state: api.RolloutStatus, o: Observed, events: Sequence[Event]
) -> Decision:
    """A canary in traffic that lost every ready pod (no crash its pods explain): the
    steps wait and the stable takes back all replicas; after readyTimeout of it, abort."""
    since = state.lastTransitionTime if state.reason == "CanaryUnavailable" else None
    timeout = api.parse_duration(policy.readyTimeout)
    if since is not None and o.now - _epoch(since, o.now) >= timeout:
        return _rolled_back(
            state,
            o,
            "CanaryNotReady",
            f"the canary had no ready pod for spec.rollout.readyTimeout ({policy.readyTimeout})",
        )
    message = (
        f"step {state.step + 1}/{len(policy.steps)}: the canary has no ready pod; the steps "
        f"wait and the stable serves with every replica (rolled back after "
        f"{policy.readyTimeout} of this)"
    )
    state = state.model_copy(
        update={
            "phase": "Paused",
            "reason": "CanaryUnavailable",
            "message": message,
            "lastTransitionTime": since or api.stamp(o.now),
        }
    )
    return _render(policy, state, o, events=tuple(events))


def _at_step(state: api.RolloutStatus, index: int, o: Observed) -> api.RolloutStatus:
    return state.model_copy(
        update={"step": index, "stepStartedAt": api.stamp(o.now), "stepPasses": 0}
    )


def _phase(
    state: api.RolloutStatus, phase: str, reason: str, message: str, o: Observed
) -> api.RolloutStatus:
    update: dict[str, Any] = {"phase": phase, "reason": reason, "message": message}
    if phase != state.phase:
        update["lastTransitionTime"] = o.wall
    return state.model_copy(update=update)


def _to_promoting(
    policy: api.Rollout,
    state: api.RolloutStatus,
    o: Observed,
    why: str,
    events: Sequence[Event] = (),
) -> Decision:
    message = (
        f"{why}: the primary takes revision {state.canaryRevision}; the canary serves until "
        "every primary pod runs it"
    )
    state = _phase(state, "Promoting", "Promoting", message, o)
    return _render(policy, state, o, events=(*events, Event("Normal", "Promoting", message)))


def _promoting(policy: api.Rollout, state: api.RolloutStatus, o: Observed) -> Decision:
    message = (
        f"the primary takes revision {state.canaryRevision}: {o.primary.updated}/"
        f"{max(o.replicas, 1)} updated, {o.primary.ready} ready; the canary serves until it is done"
    )
    state = _phase(state, "Promoting", "Promoting", message, o)
    return _render(policy, state, o)


def _rolled_back(state: api.RolloutStatus, o: Observed, reason: str, detail: str) -> Decision:
    message = (
        f"revision {state.canaryRevision} rolled back at step "
        f"{state.step + 1}/{state.steps} ({reason}): {detail}"
    )
    state = _phase(state, "RolledBack", reason, message, o).model_copy(
        update={"weight": 0, "effectiveWeight": 0.0, "canaryReplicas": 0}
    )
    decision = _hold(state, o)
    return dataclasses.replace(
        decision, events=(Event("Warning", "RolledBack", message + _RETRY_HINT),)
    )


_RETRY_HINT = (
    "; traffic is back on the stable revision. The change is not retried until the spec "
    "changes again (or annotate llamaops.dev/rollout=retry)"
)


def _hold(state: api.RolloutStatus, o: Observed) -> Decision:
    held = state.message + _RETRY_HINT
    # No canary beside it: the primary follows spec.replicas, 0 included (scaled to zero).
    status = state.model_copy(update={"stableReplicas": o.replicas})
    return Decision(
        mode="hold",
        status=_dump(status),
        stable_replicas=o.replicas,
        checks=_conditions(status),
        held=held,
    )


def _ended(
    previous: api.RolloutStatus, o: Observed, phase: str, reason: str, message: str
) -> Decision:
    state = _phase(previous, phase, reason, message, o).model_copy(
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
        checks=_conditions(state),
        removed=(ROLLED_BACK,),
    )


def _render(
    policy: api.Rollout, state: api.RolloutStatus, o: Observed, *, events: Sequence[Event] = ()
) -> Decision:
    """The replica split, weights and conditions of an in-progress state."""
    step = policy.steps[min(state.step, len(policy.steps) - 1)]
    in_traffic = state.phase in ("Progressing", "Paused", "Promoting")
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
        checks=_conditions(state),
        removed=(ROLLED_BACK,),
    )


def _conditions(state: api.RolloutStatus | None) -> tuple[conditions.Check, ...]:
    if state is None:
        return ()
    if state.phase in IN_PROGRESS:
        return (conditions.Check(ROLLOUT, "True", state.reason or state.phase, state.message),)
    rollout = conditions.Check(ROLLOUT, "False", state.phase, state.message)
    if state.phase == "RolledBack":
        return (rollout, conditions.Check(ROLLED_BACK, "True", state.reason, state.message))
    return (rollout,)


def _dump(state: api.RolloutStatus) -> dict[str, Any]:
    return state.model_dump(mode="json", exclude_none=True)


def _epoch(text: str | None, default: float) -> float:
    found = api.epoch(text)
    return default if found is None else found


def epoch(wall: str) -> float:
    """RFC 3339 (as the reconcile's ``now``) to seconds since the epoch."""
    return _epoch(wall, 0.0)


def action_of(annotations: Mapping[str, Any] | None) -> Action | str | None:
    """The manual action asked for, as written (``parse_action`` checks it)."""
    value = (annotations or {}).get(ACTION_ANNOTATION)
    return str(value).strip().lower() if value is not None else None


def parse_action(value: str | None) -> Action | None:
    for action in ACTIONS:
        if value == action:
            return action
    return None


# Container states that mean a canary pod cannot serve, whatever its readiness says now:
# the primary's (``health.CANNOT_RUN``) and, unlike the primary's, an image or config that
# cannot be had, since the new spec named them.
_BROKEN_WAITING = health.CANNOT_RUN | health.NO_IMAGE_OR_CONFIG


def pod_failure(pods: Sequence[Mapping[str, Any]]) -> str | None:
    """The first canary pod that crashed, was OOM-killed or cannot start, described.

    A canary is new: any restart of its engine is a failure (a stable pod may restart
    for reasons of its own; a canary that does during its first minutes will again).
    """
    for pod in pods:
        for container in health.containers(pod, init=True):
            if container.oom_killed():
                return (
                    f"{container.where} was OOMKilled (out of memory): the new spec does not "
                    "fit what it was planned on"
                )
            if container.waiting in _BROKEN_WAITING:
                detail = container.waiting_message
                return f"{container.where} is in {container.waiting}" + (
                    f" ({detail[:200]})" if detail else ""
                )
            last, restarts = container.last, container.restarts
            if last is not None and restarts > 0 and last.exit_code not in (None, 0):
                return (
                    f"{container.where} exited with code {last.exit_code}"
                    f" ({last.reason or 'Error'}) and restarted {restarts} time(s)"
                )
    return None
