"""Re-planning the primary when its plan does not work out: GPU-pool fallback and
self-healing sizing. Pure: the recovery state in ``status.recovery``, the primary's
``health`` and the clock in; the next state and what changed out.

- **No free GPUs** (``spec.failover.replanOnUnschedulable``): pods of the primary that
  stay unschedulable for ``gracePeriod`` exclude the pool the plan is on, and the
  planner plans again on the next feasible one, in ``spec.placement.pools`` order (the
  user's preference), possibly at a precision the ``optimize`` policy allows. With
  ``retryPoolsAfter``, an excluded pool is tried again after that long, so the primary
  returns to the preferred pool once it has room.
- **Out of memory** (``replanOnOutOfMemory``): an OOM kill, or an engine exit whose last
  log lines say the GPU memory did not suffice, adds a step of headroom: the planner
  reserves ``HEADROOM_GIB`` more per GPU, which shortens the context, adds GPUs or
  quantizes further, within the placement policy. At most ``MAX_HEADROOM`` steps.

A spec change of what the plan is made from (model, engine, placement) starts afresh.
Every change is one ``api.PlanChange`` for ``status.planHistory``; the reconcile fills
in the pool the new plan landed on.
"""

from __future__ import annotations

import dataclasses
import hashlib

from llama_operator import api
from llama_operator.operations import health
from llama_operator.planning import planner

HEADROOM_GIB = 2.0  # more memory the planner leaves free per GPU, per headroom step
MAX_HEADROOM = 3
HISTORY = 10  # entries kept in status.planHistory


@dataclasses.dataclass(frozen=True)
class Outcome:
    state: api.RecoveryStatus
    change: api.PlanChange | None  # this reconcile's re-planning, toPool still unknown


policy_of = api.failover_policy


def decide(
    *,
    policy: api.Failover,
    state: api.RecoveryStatus | None,
    inputs_hash: str,
    plan: api.Plan | None,
    primary: health.Health | None,
    now: float,
    wall: str,
) -> Outcome:
    """Exclude the plan's pool, add headroom, or let an excluded pool be tried again.

    In order, the first that applies: an excluded pool is tried again; the plan's pool is
    excluded (no free GPUs); a step of headroom is added (out of memory).
    """
    if state is None or state.inputsHash != inputs_hash:
        state = api.RecoveryStatus(inputsHash=inputs_hash)
    retried = _pools_retried(policy=policy, state=state, plan=plan, now=now, wall=wall)
    if retried is not None:
        return retried
    if primary is None or plan is None:
        return Outcome(state, None)
    excluded = _pool_excluded(
        policy=policy, state=state, plan=plan, primary=primary, now=now, wall=wall
    )
    if excluded is not None:
        return excluded
    headroom = _headroom_added(
        policy=policy, state=state, plan=plan, primary=primary, now=now, wall=wall
    )
    if headroom is not None:
        return headroom
    return Outcome(state, None)


def _pools_retried(
    *,
    policy: api.Failover,
    state: api.RecoveryStatus,
    plan: api.Plan | None,
    now: float,
    wall: str,
) -> Outcome | None:
    """Excluded pools whose retryPoolsAfter has passed are planned on again."""
    if policy.retryPoolsAfter is None or not state.excludedPools:
        return None
    after = api.parse_duration(policy.retryPoolsAfter)
    kept = [x for x in state.excludedPools if now - (_epoch(x.since) or now) < after]
    if len(kept) == len(state.excludedPools):
        return None
    retried = [x.pool for x in state.excludedPools if x not in kept]
    change = api.PlanChange(
        time=wall,
        reason="PoolRetried",
        fromPool=plan.pool if plan is not None else None,
        message=f"pool(s) {', '.join(retried)} tried again after "
        f"spec.failover.retryPoolsAfter ({policy.retryPoolsAfter})",
    )
    return Outcome(
        state.model_copy(update={"excludedPools": kept, "lastChange": api.stamp(now)}),
        change,
    )


def _pool_excluded(
    *,
    policy: api.Failover,
    state: api.RecoveryStatus,
    plan: api.Plan,
    primary: health.Health,
    now: float,
    wall: str,
) -> Outcome | None:
    """The plan's pool is excluded once its pods stayed unschedulable for gracePeriod."""
    excluded = {x.pool for x in state.excludedPools}
    if (
        not policy.replanOnUnschedulable
        or primary.unschedulable_since is None
        or plan.pool in excluded
    ):
        return None
    last = _epoch(state.lastChange)
    # Counted from the last re-planning at the earliest: pods of the plan before it
    # may still be pending, and must not cost the new pool its grace period.
    since = max(primary.unschedulable_since, last if last is not None else 0.0)
    if now - since < api.parse_duration(policy.gracePeriod):
        return None
    said = primary.unschedulable or "pods unschedulable"
    entry = api.ExcludedPool(
        pool=plan.pool, since=api.stamp(now), reason="Unschedulable", message=said[:500]
    )
    change = api.PlanChange(
        time=wall,
        reason="Unschedulable",
        fromPool=plan.pool,
        message=f"pods unschedulable on pool {plan.pool} for more than "
        f"{policy.gracePeriod}: {said[:300]}",
    )
    return Outcome(
        state.model_copy(
            update={
                "excludedPools": [*state.excludedPools, entry],
                "lastChange": api.stamp(now),
            }
        ),
        change,
    )


def _headroom_added(
    *,
    policy: api.Failover,
    state: api.RecoveryStatus,
    plan: api.Plan,
    primary: health.Health,
    now: float,
    wall: str,
) -> Outcome | None:
    """A step of headroom for an out-of-memory exit newer than the last re-planning."""
    last = _epoch(state.lastChange)
    oom_at = primary.out_of_memory_at
    fresh = last is None or oom_at is None or oom_at > last
    if (
        not policy.replanOnOutOfMemory
        or primary.out_of_memory is None
        or not fresh
        or state.headroom >= MAX_HEADROOM
    ):
        return None
    headroom = state.headroom + 1
    change = api.PlanChange(
        time=wall,
        reason="OutOfMemory",
        fromPool=plan.pool,
        message=f"{primary.out_of_memory}: re-planned with {headroom * HEADROOM_GIB:g} GiB "
        f"more headroom per GPU (step {headroom}/{MAX_HEADROOM})",
    )
    return Outcome(
        state.model_copy(update={"headroom": headroom, "lastChange": api.stamp(now)}), change
    )


def apply(request: planner.Request, state: api.RecoveryStatus | None) -> planner.Request:
    """The planner request without the excluded pools and with the added headroom."""
    if state is None or (not state.excludedPools and state.headroom == 0):
        return request
    excluded = {x.pool for x in state.excludedPools}
    return dataclasses.replace(
        request,
        pools=tuple(p for p in request.pools if p.name not in excluded),
        headroom_gib=request.headroom_gib + state.headroom * HEADROOM_GIB,
    )


def inputs_hash(base: str, state: api.RecoveryStatus | None) -> str:
    """``Plan.inputsHash`` with the recovery state folded in (unchanged without one), so a
    kept plan is dropped once its pool is excluded or headroom is added."""
    if state is None or (not state.excludedPools and state.headroom == 0):
        return base
    extra = ",".join(sorted(x.pool for x in state.excludedPools)) + f"/{state.headroom}"
    return hashlib.sha256(f"{base}/{extra}".encode()).hexdigest()[:16]


def exhausted(state: api.RecoveryStatus | None) -> str:
    """For a NoFeasiblePlan message: what re-planning took away."""
    if state is None or (not state.excludedPools and state.headroom == 0):
        return ""
    parts = [
        f"pool {x.pool} excluded since {x.since} ({x.reason}: {x.message[:120]})"
        for x in state.excludedPools
    ]
    if state.headroom:
        parts.append(f"{state.headroom * HEADROOM_GIB:g} GiB per GPU of added headroom")
    return "; after re-planning: " + "; ".join(parts)


def merge_history(
    history: list[api.PlanChange] | None, entry: api.PlanChange
) -> list[api.PlanChange]:
    return [*(history or []), entry][-HISTORY:]


_epoch = api.epoch
