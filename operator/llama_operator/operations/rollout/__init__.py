"""Canary rollouts: the pure state machine that decides, on every reconcile, what runs.

Inputs are the rollout policy (``spec.rollout``), the rollout state in
``status.rollout`` (so a restarted operator continues where it was), what the
primary and canary Deployments report, whether a canary pod crashed, a judgement of
the canary's metrics made this tick (``canary_analysis.judge``), a manual action from the
``llamaops.dev/rollout`` annotation, and the clock. The output is a ``Decision``:
which mode the reconcile renders in, the replica split, the traffic weight, the new
``status.rollout``, conditions and Events. No I/O.

Revisions are hashes of the primary Deployment's pod template as the operator
renders it (``builders.template_revision``): the live primary carries its own in an
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

Here: ``decide``, which picks the transition from what it observes, and the steps of a
rollout in progress (``_advance``). ``states``: the inputs and the ``Decision``, and each
state a rollout moves to with what it renders (re-exported here under their old names).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any

from llama_operator import api
from llama_operator.api.events import Event
from llama_operator.operations import health
from llama_operator.operations.rollout import states

ACTION_ANNOTATION = f"{api.GROUP}/rollout"
Action = states.Action
ACTIONS: tuple[Action, ...] = ("promote", "next", "abort", "retry")
Mode = states.Mode
Variant = states.Variant
Observed = states.Observed
Decision = states.Decision
split = states.split
effective_weight = states.effective_weight
IN_PROGRESS = api.ROLLOUT_IN_PROGRESS
# The canary is in traffic and, until it is promoted, its metrics are judged.
JUDGED: frozenset[api.RolloutPhase] = api.ROLLOUT_UNDER_TEST & states.IN_TRAFFIC
HISTORY = 10  # analysis runs kept in status.rollout.analysis
ROLLOUT = states.ROLLOUT
ROLLED_BACK = states.ROLLED_BACK


def policy_of(spec: api.LlamaDeploymentSpec) -> api.Rollout:
    """spec.rollout, or the default policy (a canary) when it is omitted; its analysis
    with the thresholds spec.slo supplies (``api.analysis_for``)."""
    policy = spec.rollout if spec.rollout is not None else api.Rollout()
    if not policy.steps:
        # "steps: []" is what the v0.3.0 CRD stored for a rollout that named none.
        policy = policy.model_copy(update={"steps": api.default_steps()})
    analysis = api.analysis_for(spec)
    if analysis is not policy.analysis:
        policy = policy.model_copy(update={"analysis": analysis})
    return policy


def previous_of(raw: Any) -> api.RolloutStatus | None:
    """status.rollout, when present and readable by this version."""
    if not isinstance(raw, Mapping):
        return None
    try:
        return api.RolloutStatus.model_validate(dict(raw), strict=False)
    except ValueError:
        return None


def decide(policy: api.Rollout, previous: api.RolloutStatus | None, o: Observed) -> Decision:
    """The rollout's next state and what to render for it.

    Three cases, by what the primary runs against the newest spec: no canary is possible
    (Rolling, or no primary to compare with), the spec is what the primary runs, or the
    spec is newer than it.
    """
    if policy.strategy == "Rolling" or not o.primary.exists or o.primary.revision is None:
        return _without_canary(policy, previous, o)
    if o.desired_revision == o.primary.revision:
        return _at_live_revision(policy, previous, o)
    return _toward_new_revision(policy, previous, o)


def _without_canary(
    policy: api.Rollout, previous: api.RolloutStatus | None, o: Observed
) -> Decision:
    """Rolling, or the primary Deployment (or its revision) is gone: the spec goes to the
    primary directly, cancelling a rollout under way."""
    if previous is None or not _unfinished(previous):
        return states.direct(previous)
    why = (
        "spec.rollout.strategy is Rolling"
        if policy.strategy == "Rolling"
        else "the primary Deployment is gone"
    )
    return states.ended(
        previous,
        o,
        phase="Cancelled",
        reason="Cancelled",
        message=f"{why}: the newest spec is applied to the primary directly",
    )


def _at_live_revision(
    policy: api.Rollout, previous: api.RolloutStatus | None, o: Observed
) -> Decision:
    """The newest spec is what the primary runs: a promotion finishing, a rollout
    cancelled by the spec going back, or nothing to do."""
    live = o.primary.revision
    if previous is not None and previous.phase == "Promoting" and previous.canaryRevision == live:
        if _rolled_out(o.primary, o.replicas):
            message = f"revision {live} promoted: every primary pod runs it"
            return states.ended(previous, o, phase="Completed", reason="Promoted", message=message)
        return states.promoting(policy, previous, o)
    if previous is not None and _unfinished(previous):
        return states.ended(
            previous,
            o,
            phase="Cancelled",
            reason="SpecReverted",
            message=f"the spec is back at the stable revision {live}",
        )
    return states.direct(previous)


def _toward_new_revision(
    policy: api.Rollout, previous: api.RolloutStatus | None, o: Observed
) -> Decision:
    """The newest spec is not what the primary runs: go on with its rollout, hold it
    rolled back, start one, or apply it directly to a primary that is not serving."""
    in_progress = previous is not None and previous.phase in IN_PROGRESS
    rolled_back = previous is not None and previous.phase == "RolledBack"
    if previous is not None and previous.canaryRevision == o.desired_revision:
        if previous.phase == "RolledBack":
            if o.action == "retry":
                return states.start(policy, previous, o, retry=True)
            return states.hold(previous, o)
        if in_progress:
            return _advance(policy, previous, o)
    if in_progress or (_serving(o.primary) and o.replicas > 0):
        return states.start(policy, previous, o, retry=False)
    if _settling(o.primary) and o.replicas > 0 and not rolled_back:
        # Serving, but the Deployment controller has not caught up with the latest
        # Deployment spec (an autoscaler's or our own replica change): a moment later it
        # is serving; applying the change directly now would skip the canary.
        return Decision(
            mode="hold",
            status=None,
            stable_replicas=o.replicas,
            checks=states.checks_of(previous),
            removed=(ROLLED_BACK,) if previous is None or previous.phase != "RolledBack" else (),
        )
    if previous is not None and rolled_back:
        return states.ended(
            previous,
            o,
            phase="Cancelled",
            reason="AppliedDirectly",
            message="the primary is not serving: the newest spec is applied to it directly",
        )
    return states.direct(previous)


def _unfinished(previous: api.RolloutStatus) -> bool:
    """A rollout in progress, or a change held rolled back: it is ended (Cancelled) when
    the spec goes to the primary another way."""
    return previous.phase in IN_PROGRESS or previous.phase == "RolledBack"


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
        and previous.phase in JUDGED
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


def _advance(policy: api.Rollout, previous: api.RolloutStatus, o: Observed) -> Decision:
    """One tick of a rollout in progress for the newest spec.

    In order: a promotion goes on; an abort or a crashed canary rolls back; a Starting
    canary waits to be Ready; this tick's judgement is recorded; a promote action, or a
    canary with no ready pod, ends the tick; the step moves on when its pause is over with
    evidence (or on the next action); the status says where the rollout stands.
    """
    state = previous.model_copy(update={"steps": len(policy.steps)})
    if previous.phase == "Promoting":
        return states.promoting(policy, state, o)
    if o.action == "abort":
        return states.rolled_back(
            state, o, reason="ManualAbort", detail="aborted by the llamaops.dev/rollout annotation"
        )
    if o.canary_failure is not None:
        return states.rolled_back(state, o, reason="CanaryFailed", detail=o.canary_failure)
    tick = _Tick(state)
    if state.phase == "Starting":
        started = _start_up(policy, state, o)
        if isinstance(started, Decision):
            return started
        tick = started
    judged = _judged(policy, tick, o)
    if isinstance(judged, Decision):
        return judged
    if o.action == "promote":
        return states.to_promoting(
            policy,
            judged.state,
            o,
            why="promoted by the llamaops.dev/rollout annotation",
            events=judged.events,
        )
    if o.canary.ready < 1:
        return _unavailable(policy, judged.state, o, judged.events)
    timing = _timing(policy, judged.state, o)
    if o.action == "next" or (timing.due and timing.evidence and not policy.paused):
        if judged.state.step + 1 >= len(policy.steps):
            return states.to_promoting(
                policy, judged.state, o, why="every step passed", events=judged.events
            )
        judged, timing = _next_step(policy, judged, timing, o)
    state = _standing(policy, judged.state, timing, o)
    return states.render(policy, state, o, events=judged.events)


@dataclasses.dataclass(frozen=True)
class _Tick:
    """A rollout in progress part-way through ``_advance``: its state and the Events so far."""

    state: api.RolloutStatus
    events: tuple[Event, ...] = ()


@dataclasses.dataclass(frozen=True)
class _Timing:
    """Where the current step's pause stands."""

    step: api.RolloutStep
    pause: float | None  # seconds; None: the step waits for a manual action
    elapsed: float  # seconds at this step
    due: bool  # the pause is over
    evidence: bool  # a judgement passed at this step, or none is needed (minRequests 0)


def _start_up(policy: api.Rollout, state: api.RolloutStatus, o: Observed) -> Decision | _Tick:
    """A Starting canary: rolled back when not Ready in time, promoted on request, waited
    for until Ready; once Ready, at step 1."""
    started = _epoch(state.startedAt, o.now)
    timeout = api.parse_duration(policy.readyTimeout)
    # A deadline only counts once the controller has seen this revision's template:
    # until then it may be left over from the template the canary ran before.
    stuck = (
        o.canary.deadline_exceeded and o.canary.current and o.canary.revision == o.desired_revision
    )
    if stuck or o.now - started >= timeout:
        return states.rolled_back(
            state,
            o,
            reason="CanaryNotReady",
            detail=(
                f"the canary was not Ready within spec.rollout.readyTimeout "
                f"({policy.readyTimeout}): {o.canary.ready}/{state.canaryReplicas} ready"
            ),
        )
    if o.action == "promote":
        return states.to_promoting(
            policy, state, o, why="promoted by the llamaops.dev/rollout annotation"
        )
    if not _canary_ready(o.canary, o.desired_revision, state.canaryReplicas):
        return states.render(policy, state, o)
    return _Tick(
        _at_step(state, 0, o),
        (Event("Normal", "CanaryReady", f"the canary is Ready: step 1/{len(policy.steps)}"),),
    )


def _judged(policy: api.Rollout, tick: _Tick, o: Observed) -> Decision | _Tick:
    """This tick's judgement (if any) kept in status.rollout.analysis: a pass counts for
    the step; a failure counts towards failureLimit, where the rollout is rolled back."""
    judgement = o.judgement
    if judgement is None:
        return tick
    run = api.AnalysisRun(
        time=o.wall,
        step=tick.state.step,
        result=judgement.result,
        canary=judgement.canary,
        stable=judgement.stable,
        message=judgement.message,
    )
    runs = [*tick.state.analysis, run][-HISTORY:]
    state = tick.state.model_copy(update={"analysis": runs})
    if judgement.result == "Passed":
        state = state.model_copy(update={"stepPasses": state.stepPasses + 1})
    if judgement.result != "Failed":
        return _Tick(state, tick.events)
    failures = state.failures + 1
    state = state.model_copy(update={"failures": failures})
    limit = policy.analysis.failureLimit
    if failures >= limit:
        return states.rolled_back(state, o, reason="AnalysisFailed", detail=judgement.message)
    warning = Event(
        "Warning", "AnalysisFailed", f"judgement {failures}/{limit} failed: {judgement.message}"
    )
    return _Tick(state, (*tick.events, warning))


def _timing(policy: api.Rollout, state: api.RolloutStatus, o: Observed) -> _Timing:
    step = policy.steps[min(state.step, len(policy.steps) - 1)]
    elapsed = o.now - _epoch(state.stepStartedAt, o.now)
    pause = api.parse_duration(step.pause) if step.pause is not None else None
    return _Timing(
        step=step,
        pause=pause,
        elapsed=elapsed,
        due=pause is not None and elapsed >= pause,
        evidence=state.stepPasses >= 1 or policy.analysis.minRequests == 0,
    )


def _next_step(
    policy: api.Rollout, tick: _Tick, timing: _Timing, o: Observed
) -> tuple[_Tick, _Timing]:
    """On to the next step (not the last: that promotes), its pause starting now."""
    state = _at_step(tick.state, tick.state.step + 1, o)
    nxt = policy.steps[state.step]
    passed = Event(
        "Normal",
        "StepPassed",
        f"step {state.step}/{len(policy.steps)} passed; step {state.step + 1}: "
        f"{nxt.weight}% of traffic on the canary",
    )
    pause = api.parse_duration(nxt.pause) if nxt.pause else None
    return (
        _Tick(state, (*tick.events, passed)),
        dataclasses.replace(timing, step=nxt, pause=pause, elapsed=0.0, due=False),
    )


def _standing(
    policy: api.Rollout, state: api.RolloutStatus, timing: _Timing, o: Observed
) -> api.RolloutStatus:
    """The phase, reason and message of a rollout that waits at its step."""
    step = timing.step
    where = f"step {state.step + 1}/{len(policy.steps)}, {step.weight}% of traffic on the canary"
    verdicts = (
        f"{state.stepPasses} passed judgement(s) at this step, "
        f"{state.failures}/{policy.analysis.failureLimit} failed in all"
    )
    phase: api.RolloutPhase
    reason: states.StepReason
    if policy.paused:
        phase, reason = "Paused", "Paused"
        message = f"{where}: paused by spec.rollout.paused (analysis goes on); {verdicts}"
    elif timing.pause is None:
        phase, reason = "Paused", "WaitingForPromote"
        message = (
            f"{where}: this step has no pause; annotate llamaops.dev/rollout=next or =promote "
            f"to go on; {verdicts}"
        )
    elif timing.due and not timing.evidence:
        phase, reason = "Paused", "Inconclusive"
        message = (
            f"{where}: the pause is over but no judgement passed yet: fewer than "
            f"spec.rollout.analysis.minRequests ({policy.analysis.minRequests}) canary "
            "requests per window. It goes on once enough requests arrive; annotate "
            "llamaops.dev/rollout=next or =promote to go on without"
        )
    else:
        phase, reason = "Progressing", "Step"
        left = max(0, math.ceil((timing.pause or 0) - timing.elapsed))
        message = f"{where}, {left}s of {step.pause} left; {verdicts}"
    return states.with_phase(state, o, phase=phase, reason=reason, message=message)


def _unavailable(
    policy: api.Rollout, state: api.RolloutStatus, o: Observed, events: Sequence[Event]
) -> Decision:
    """A canary in traffic that lost every ready pod (no crash its pods explain): the
    steps wait and the stable takes back all replicas; after readyTimeout of it, abort."""
    since = state.lastTransitionTime if state.reason == "CanaryUnavailable" else None
    timeout = api.parse_duration(policy.readyTimeout)
    if since is not None and o.now - _epoch(since, o.now) >= timeout:
        return states.rolled_back(
            state,
            o,
            reason="CanaryNotReady",
            detail=(
                f"the canary had no ready pod for spec.rollout.readyTimeout ({policy.readyTimeout})"
            ),
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
    return states.render(policy, state, o, events=tuple(events))


def _at_step(state: api.RolloutStatus, index: int, o: Observed) -> api.RolloutStatus:
    return state.model_copy(
        update={"step": index, "stepStartedAt": api.stamp(o.now), "stepPasses": 0}
    )


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


# The canary's pods are read by the pod-health reader, beside the primary's.
pod_failure = health.canary_failure
