"""The built-in autoscaler's decision: how many replicas, from what the pods report.

Pure: a function of (policy, observations, current replicas, previous state, clock),
so the same decision can later split replicas between variants (canary, fallback),
and a simulation or a test can replay any trace through it. The scrape loop in
``runtime.autoscaling_loop`` feeds it; ``State`` is kept in ``status.autoscaling``
(times are wall clock, seconds since the epoch) so a restarted operator continues with
the same stabilisation window.

The formula (docs/concepts/autoscaling.md):

    load        = sum of the metric over the ready pods that were scraped,
                  plus, for each ready pod that could not be scraped, the highest value
                  seen (a pod without metrics is never counted as idle)
    floor       = ceil(running / capacity)            (metric "queue" only)
    recommended = clamp(max(ceil(load / target), floor), minReplicas, maxReplicas)

Why the floor: a queue is empty whenever the replicas keep up, however close to full
they run, so the queue alone would recommend the minimum and, one window later,
scale a busy endpoint down until a queue builds again (a sawtooth). The floor keeps
enough replicas for the requests being served: ``running`` is the requests the pods
run now (counted like the load), ``capacity`` how many one replica runs when it is
saturated, learned from the pods that have a queue (a pod with waiting requests is
running all it can; smoothed over evaluations). Until a saturated pod has been seen
there is no floor.

- Up, at once: when ``recommended`` > current replicas, i.e. as soon as the load per
  current replica exceeds the target; by at most ``scaleUpStep`` replicas a decision.
- Down, only after the window: to the highest recommendation of the last
  ``scaleDownDelaySeconds``, and only when the recommendations cover that whole window
  and every ready pod was scraped. A noisy but steady load therefore never flaps: a
  dip must last the whole window before it counts.
- Bounds: replicas outside [minReplicas, maxReplicas] are brought back at once.
- No ready pod scraped at all: nothing is decided (missing data never scales down).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from llama_operator import api

Reason = Literal["ScaleUp", "ScaleDown", "Bounds", "Steady", "Stabilizing", "NoMetrics"]
# How many replica changes status.autoscaling keeps.
HISTORY = 10
# Floating-point slack, so a load of exactly N x target recommends N, not N + 1.
_EPSILON = 1e-9


@dataclasses.dataclass(frozen=True)
class Policy:
    """What ``spec.autoscaling`` asks of the decision."""

    min_replicas: int
    max_replicas: int
    target: float
    scale_up_step: int
    window_seconds: float
    running_floor: bool = False  # the queue metric: keep replicas for what is running

    @classmethod
    def of(cls, spec: api.Autoscaling) -> Policy:
        return cls(
            min_replicas=spec.minReplicas,
            max_replicas=spec.maxReplicas,
            target=spec.effective_target(),
            scale_up_step=spec.scaleUpStep,
            window_seconds=float(spec.scaleDownDelaySeconds),
            running_floor=spec.metric == "queue",
        )


@dataclasses.dataclass(frozen=True)
class Sample:
    """One ready serving pod's metric value; None when it could not be scraped.

    ``running`` is the requests the pod runs now, when known (the queue metric's floor).
    """

    pod: str
    value: float | None
    running: float | None = None


@dataclasses.dataclass(frozen=True)
class State:
    """Recommendations of the stabilisation window, run-length encoded.

    ``recommendations`` holds (since, replicas) pairs, oldest first: the recommendation
    was ``replicas`` from ``since`` until the next pair. The first pair may start before
    the window; that is how a full window of history is proven.
    """

    recommendations: tuple[tuple[float, int], ...] = ()
    capacity: float | None = None  # requests one saturated replica runs (learned)

    def as_status(self) -> list[list[float | int]]:
        return [[round(since, 3), replicas] for since, replicas in self.recommendations]

    @classmethod
    def from_status(cls, value: Any) -> State:
        """Tolerant of anything: a malformed status just starts an empty window."""
        pairs: list[tuple[float, int]] = []
        if isinstance(value, list):
            for item in value:
                if (
                    isinstance(item, list | tuple)
                    and len(item) == 2
                    and isinstance(item[0], int | float)
                    and isinstance(item[1], int | float)
                    and float(item[1]).is_integer()
                ):
                    pairs.append((float(item[0]), int(item[1])))
        pairs.sort()
        return cls(tuple(pairs))

    def with_capacity(self, value: Any) -> State:
        """This state with the capacity kept in status (ignored unless a positive number)."""
        ok = isinstance(value, int | float) and not isinstance(value, bool) and value > 0
        return dataclasses.replace(self, capacity=float(value) if ok else None)


@dataclasses.dataclass(frozen=True)
class Decision:
    replicas: int  # what the replicas should be now
    recommended: int | None  # this evaluation's recommendation (None: no metrics)
    load: float | None  # the summed metric the recommendation was made from
    reason: Reason
    message: str
    state: State

    @property
    def per_replica(self) -> float | None:
        return None if self.load is None or self.replicas == 0 else self.load / self.replicas


def recommend(policy: Policy, load: float) -> int:
    """clamp(ceil(load / target), min, max)."""
    wanted = math.ceil(load / policy.target - _EPSILON) if load > 0 else 0
    return max(policy.min_replicas, min(policy.max_replicas, wanted))


def decide(
    *,
    policy: Policy,
    samples: Sequence[Sample],
    current: int,
    state: State,
    now: float,
) -> Decision:
    """The replicas to run now; see the module docstring for the rules."""
    if current < policy.min_replicas or current > policy.max_replicas:
        bounded = max(policy.min_replicas, min(policy.max_replicas, current))
        return Decision(
            bounded,
            None,
            None,
            "Bounds",
            f"{current} replicas is outside [{policy.min_replicas}, {policy.max_replicas}]",
            state,
        )
    if not any(s.value is not None for s in samples):
        what = f"none of {len(samples)} ready pods could be scraped" if samples else "no ready pod"
        return Decision(current, None, None, "NoMetrics", f"{what}: replicas kept", state)
    seen = _recommendation(policy=policy, samples=samples, state=state, now=now)
    if seen.recommended > current:
        replicas = min(seen.recommended, current + policy.scale_up_step)
        return Decision(replicas, seen.recommended, seen.load, "ScaleUp", seen.inputs, seen.state)
    if seen.recommended == current:
        return Decision(current, seen.recommended, seen.load, "Steady", seen.inputs, seen.state)
    return _down(policy=policy, seen=seen, current=current, now=now)


@dataclasses.dataclass(frozen=True)
class _Recommendation:
    """This evaluation's recommendation, what it was made from, and the window with it."""

    recommended: int
    load: float
    missing: int  # ready pods that could not be scraped
    inputs: str  # the numbers, for the message
    state: State


def _recommendation(
    *, policy: Policy, samples: Sequence[Sample], state: State, now: float
) -> _Recommendation:
    """The load over the ready pods (a pod not scraped counts as the busiest one), the
    replicas it needs (at least the running floor), remembered in the window."""
    scraped = [s.value for s in samples if s.value is not None]
    missing = len(samples) - len(scraped)
    load = sum(scraped) + missing * max(scraped)
    recommended = recommend(policy, load)
    floor_note = ""
    if policy.running_floor:
        state, floor, floor_note = _running_floor(samples, state)
        recommended = max(recommended, min(floor, policy.max_replicas))
    state = _remember(state, recommended, now, policy.window_seconds)
    inputs = (
        f"load {load:g} over {len(samples)} ready pod(s) ({missing} not scraped), "
        f"target {policy.target:g} per replica{floor_note}: {recommended} recommended"
    )
    return _Recommendation(
        recommended=recommended, load=load, missing=missing, inputs=inputs, state=state
    )


def _down(*, policy: Policy, seen: _Recommendation, current: int, now: float) -> Decision:
    """Fewer replicas recommended: down to the window's highest recommendation, once the
    window is full and every ready pod was scraped; until then, stabilizing."""
    window_start = now - policy.window_seconds
    pairs = seen.state.recommendations
    covered = bool(pairs) and pairs[0][0] <= window_start
    stabilized = max(replicas for _, replicas in pairs)
    if seen.missing:
        return Decision(
            current,
            seen.recommended,
            seen.load,
            "Stabilizing",
            f"{seen.inputs}; not scaling down while {seen.missing} ready pod(s) cannot be scraped",
            seen.state,
        )
    if not covered or stabilized >= current:
        return Decision(
            current,
            seen.recommended,
            seen.load,
            "Stabilizing",
            f"{seen.inputs}; the window's highest recommendation is {stabilized}"
            + ("" if covered else f" and the window of {policy.window_seconds:g}s is not full"),
            seen.state,
        )
    return Decision(
        stabilized,
        seen.recommended,
        seen.load,
        "ScaleDown",
        f"{seen.inputs}; highest over the last {policy.window_seconds:g}s: {stabilized}",
        seen.state,
    )


def _running_floor(samples: Sequence[Sample], state: State) -> tuple[State, int, str]:
    """The replicas the running requests need, with the capacity learned so far."""
    saturated = [
        s.running for s in samples if s.value and s.value > 0 and s.running and s.running > 0
    ]
    if saturated:
        seen = sum(saturated) / len(saturated)
        # Smoothed: one brief queue at low concurrency (a burst of long prompts) must not
        # swing the floor; a capacity seen again and again wins within a few evaluations.
        learned = seen if state.capacity is None else 0.7 * state.capacity + 0.3 * seen
        state = dataclasses.replace(state, capacity=learned)
    known = [s.running for s in samples if s.running is not None]
    if state.capacity is None or not known:
        return state, 0, ""
    # A pod whose running count is unknown is assumed as busy as the busiest one.
    running = sum(known) + (len(samples) - len(known)) * max(known)
    floor = math.ceil(running / state.capacity - _EPSILON) if running > 0 else 0
    return state, floor, f", {running:g} running at {state.capacity:g} per saturated replica"


def _remember(state: State, recommended: int, now: float, window: float) -> State:
    """Append ``recommended`` (run-length) and drop what ended before the window."""
    pairs = [p for p in state.recommendations if p[0] <= now]  # a clock that went back
    if not pairs or pairs[-1][1] != recommended:
        pairs.append((now, recommended))
    window_start = now - window
    # Keep the last pair that began at or before the window's start (it covers the
    # start) and every pair after it.
    first = 0
    for index, (since, _) in enumerate(pairs):
        if since <= window_start:
            first = index
    return State(tuple(pairs[first:]), state.capacity)


def history_entry(
    decision: Decision, *, current: int, now: str, metric: str, target: float
) -> dict[str, Any]:
    """One replica change as kept in ``status.autoscaling.decisions``."""
    entry: dict[str, Any] = {
        "time": now,
        "fromReplicas": current,
        "toReplicas": decision.replicas,
        "reason": decision.reason,
        "metric": metric,
        "target": target,
        "message": decision.message,
    }
    if decision.load is not None:
        entry["load"] = round(decision.load, 4)
    return entry


def merge_history(previous: Any, entry: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The last ``HISTORY`` decisions, newest last."""
    kept = (
        [dict(e) for e in previous if isinstance(e, Mapping)] if isinstance(previous, list) else []
    )
    return [*kept, dict(entry)][-HISTORY:]
