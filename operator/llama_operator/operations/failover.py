"""Failover to a fallback model: the pure state machine that picks where traffic goes.

Inputs: the policy (``spec.failover``), the state in ``status.failover`` (so a
restarted operator keeps the same variant active), the primary's ``health``, the
fallbacks as they are (ready pods, whether they may serve at all), whether the primary
is overloaded, and the clock. Output: the variant the entry point serves from, each
fallback's replica count, ``status.failover``, the ``FallbackActive`` condition, the
``FallbacksPlanned`` condition (a fallback no pool can serve) and Events. No I/O.

Rules:
- **Triggers** (each switchable): the primary has no ready replica (``Unavailable``),
  a primary pod crash-loops or was OOM-killed (``Failing``), primary pods stay
  unschedulable for ``gracePeriod`` (``Unschedulable``), or its queue per ready replica
  stays above ``overloadQueuePerReplica`` for ``gracePeriod`` (``Overloaded``).
- **Switch** only to a fallback that may serve (licence accepted, model accessible) and
  has a ready pod, the first in spec order: the entry point never moves to a variant
  with no ready endpoint. With none ready, the first cold one (``replicas: 0``) is
  started (one at a time, in spec order) and traffic stays where it is meanwhile.
- **Fail back** once the primary has been healthy (every replica ready, none failing or
  unschedulable, not overloaded) for ``holdDown`` without a break: intermittent
  readiness restarts the count, so traffic does not flap. Cold fallbacks started for the
  failover go back to zero.
- An active fallback that loses its last ready pod hands over to the next ready one, or
  to the primary if that has a ready pod, or stays if nothing is better.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from llama_operator import api
from llama_operator.api import conditions
from llama_operator.api.events import Event
from llama_operator.operations import health

PRIMARY = "primary"
FALLBACK_ACTIVE = conditions.FALLBACK_ACTIVE
FALLBACKS_PLANNED = conditions.FALLBACKS_PLANNED


def name_of(index: int) -> str:
    """The variant name of fallback ``index``: fallback-0, fallback-1, ..."""
    return f"{api.FALLBACK_PREFIX}{index}"


@dataclasses.dataclass(frozen=True)
class Candidate:
    """A fallback as the failover sees it."""

    index: int
    model: str
    configured: int  # spec.fallbacks[i].replicas (0 = cold)
    ready: int = 0
    servable: bool = True
    reason: str = ""  # why it may not serve
    pool: str | None = None
    planned: bool = True  # False: no pool can serve it (the reason says why)


@dataclasses.dataclass(frozen=True)
class Decision:
    active: str  # "primary" or "fallback-N"
    replicas: tuple[int, ...]  # per fallback: what its Deployment runs now
    status: dict[str, Any] | None
    active_model: str
    events: tuple[Event, ...] = ()
    checks: tuple[conditions.Check, ...] = ()
    removed: tuple[str, ...] = ()
    placement: conditions.Check | None = None  # FallbacksPlanned (None: no fallbacks)

    @property
    def index(self) -> int | None:
        """The active fallback's index, or None on the primary."""
        return None if self.active == PRIMARY else int(self.active.rsplit("-", 1)[1])


policy_of = api.failover_policy


def previous_of(raw: Any) -> api.FailoverStatus | None:
    if not isinstance(raw, dict):
        return None
    try:
        return api.FailoverStatus.model_validate(raw, strict=False)
    except ValueError:
        return None


def decide(
    *,
    policy: api.Failover,
    previous: api.FailoverStatus | None,
    primary: health.Health,
    primary_model: str,
    fallbacks: Sequence[Candidate],
    overloaded: bool = False,
    now: float,
    wall: str,
) -> Decision:
    """Where the entry point serves from now, and what each fallback runs."""
    if not fallbacks:
        return Decision(
            active=PRIMARY,
            replicas=(),
            status=None,
            active_model=primary_model,
            removed=(FALLBACK_ACTIVE,),
        )
    state = previous or api.FailoverStatus()
    grace = api.parse_duration(policy.gracePeriod)
    at = api.stamp(now)  # periods are timed from these: to the millisecond
    overloaded_since = (
        (state.overloadedSince or at) if overloaded and policy.overloadQueuePerReplica else None
    )
    trigger = _trigger(policy, primary, overloaded_since, grace, now)
    healthy = primary.healthy and overloaded_since is None
    healthy_since = (state.primaryHealthySince or at) if healthy else None
    active, started = state.active, list(state.started)
    reason, message, since = state.reason, state.message, state.since
    events: list[Event] = []
    by_index = {f.index: f for f in fallbacks}
    current = by_index.get(_index(active)) if active != PRIMARY else None
    if active != PRIMARY and (current is None or primary.desired == 0):
        # The spec no longer has it, or the endpoint was scaled to zero: no traffic is
        # expected, so nothing to fail over for.
        active, started = PRIMARY, []
        reason, message, since = "", "", wall
    ready = [f for f in fallbacks if f.servable and f.ready > 0]

    if active == PRIMARY:
        if trigger is not None:
            cause, detail = trigger
            if ready:
                to = ready[0]
                active, reason, since = name_of(to.index), cause, wall
                message = (
                    f"{cause}: {detail}; traffic moved to {name_of(to.index)} ({to.model}, "
                    f"{to.ready} ready)"
                )
                events.append(Event("Warning", "FailedOver", message))
            else:
                start = _next_cold(fallbacks, started)
                if start is not None:
                    started.append(start.index)
                    events.append(
                        Event(
                            "Normal",
                            "StartingFallback",
                            f"{cause}: {detail}; starting the cold fallback "
                            f"{name_of(start.index)} ({start.model})",
                        )
                    )
                message = f"{cause}: {detail}; " + _none_ready(fallbacks, started)
        elif healthy and started:
            started = []  # the trigger went away before a fallback was needed
            message = ""
        elif trigger is None:
            message = ""
    else:
        assert current is not None
        held = healthy_since is not None and now - _epoch(healthy_since, now) >= api.parse_duration(
            policy.holdDown
        )
        if held:
            message = (
                f"the primary has been healthy for spec.failover.holdDown ({policy.holdDown}): "
                f"traffic is back on it ({primary_model})"
            )
            events.append(Event("Normal", "FailedBack", message))
            active, reason, since, started = PRIMARY, "", wall, []
        elif not current.servable or current.ready == 0:
            others = [f for f in ready if f.index != current.index]
            lost = f"{name_of(current.index)} has no ready pod" + (
                f" ({current.reason})" if current.reason else ""
            )
            if others:
                to = others[0]
                active, since = name_of(to.index), wall
                message = f"{lost}: traffic moved to {name_of(to.index)} ({to.model})"
                events.append(Event("Warning", "FailedOver", message))
            elif primary.ready > 0:
                message = f"{lost}: traffic is back on the primary, which has a ready pod"
                events.append(Event("Warning", "FailedBack", message))
                active, reason, since, started = PRIMARY, "", wall, []
            else:
                message = f"{lost}, and nothing else is ready: traffic stays on it"
        elif healthy_since is not None:
            left = api.parse_duration(policy.holdDown) - (now - _epoch(healthy_since, now))
            message = (
                f"{reason}: traffic on {active} ({current.model}); the primary is healthy "
                f"again, back on it in {max(0, int(left))}s unless it falters"
            )
        else:
            message = (
                f"{reason}: traffic on {active} ({current.model}); back on the primary once "
                f"it has been healthy for spec.failover.holdDown ({policy.holdDown})"
            )

    # A fallback that may not serve runs no pod, even one started for this failover.
    replicas = tuple(
        0 if not f.servable else max(1, f.configured) if f.index in started else f.configured
        for f in fallbacks
    )
    rows = [
        api.FallbackStatus(
            name=name_of(f.index),
            model=f.model,
            replicas=replicas[i],
            readyReplicas=f.ready,
            servable=f.servable,
            reason=f.reason,
            pool=f.pool,
        )
        for i, f in enumerate(fallbacks)
    ]
    status = api.FailoverStatus(
        active=active,
        reason=reason if active != PRIMARY else "",
        message=message,
        since=since,
        primaryHealthySince=healthy_since,
        overloadedSince=overloaded_since,
        started=started,
        fallbacks=rows,
    )
    model = primary_model if active == PRIMARY else by_index[_index(active)].model
    return Decision(
        active=active,
        replicas=replicas,
        status=status.model_dump(mode="json", exclude_none=True),
        active_model=model,
        events=tuple(events),
        checks=(_condition(status, primary_model, model, trigger),),
        placement=placement_check(fallbacks),
    )


def placement_check(fallbacks: Sequence[Candidate]) -> conditions.Check:
    """``FallbacksPlanned``: whether every fallback has a plan, i.e. a pool can serve it.

    A fallback no pool can serve gets no pods and is never failed over to, which nothing
    else would show until the primary fails. The primary and the other fallbacks are not
    touched by it.
    """
    unplanned = [f for f in fallbacks if not f.planned]
    if not unplanned:
        where = ", ".join(f"{name_of(f.index)} ({f.model}) on pool {f.pool}" for f in fallbacks)
        return conditions.Check(
            FALLBACKS_PLANNED, "True", "AllPlanned", f"every fallback has a plan: {where}"
        )
    which = "; ".join(
        f"spec.fallbacks[{f.index}] ({f.model}) cannot be placed: {f.reason}" for f in unplanned
    )
    return conditions.Check(
        FALLBACKS_PLANNED,
        "False",
        "FallbackNotPlanned",
        f"{which}. {'It gets' if len(unplanned) == 1 else 'They get'} no pods and traffic never "
        "fails over to "
        + ("it" if len(unplanned) == 1 else "them")
        + "; the primary and the other fallbacks are unaffected. Fix: a fallback model that "
        "fits a pool spec.placement.pools allows (fallbacks are planned with the primary's "
        "placement policy: optimize, pools, concurrentSequences), a GPU pool that can serve "
        "it in the operator config, or remove it from spec.fallbacks",
    )


def _trigger(
    policy: api.Failover,
    primary: health.Health,
    overloaded_since: str | None,
    grace: float,
    now: float,
) -> tuple[str, str] | None:
    if policy.onUnavailable and primary.desired > 0 and primary.ready == 0:
        return "Unavailable", "the primary has no ready replica"
    if policy.onFailing and primary.failing is not None:
        return "Failing", primary.failing
    since = primary.unschedulable_since
    if policy.onUnschedulable and since is not None and now - since >= grace:
        said = primary.unschedulable or "no node can take its pods"
        return "Unschedulable", f"primary pods unschedulable for {policy.gracePeriod}: {said}"
    if overloaded_since is not None and now - _epoch(overloaded_since, now) >= grace:
        return (
            "Overloaded",
            f"more than {policy.overloadQueuePerReplica:g} waiting requests per ready replica "
            f"for {policy.gracePeriod}",
        )
    return None


def _next_cold(fallbacks: Sequence[Candidate], started: list[int]) -> Candidate | None:
    """The next cold fallback to start, in spec order, one at a time: none while one
    started earlier is still loading, or while a warm one that may serve is starting."""
    if any(f.servable and f.index in started and f.ready == 0 for f in fallbacks):
        return None
    if any(f.servable and f.configured > 0 and f.ready == 0 for f in fallbacks):
        return None
    for f in fallbacks:
        if f.servable and f.configured == 0 and f.index not in started:
            return f
    return None


def _none_ready(fallbacks: Sequence[Candidate], started: list[int]) -> str:
    servable = [f for f in fallbacks if f.servable]
    if not servable:
        why = "; ".join(f"{name_of(f.index)}: {f.reason}" for f in fallbacks)
        return f"no fallback may serve ({why}): traffic stays on the primary"
    loading = [name_of(f.index) for f in servable if f.index in started or f.configured > 0]
    return (
        f"no fallback is ready yet ({', '.join(loading) or 'none started'}): traffic stays on "
        "the primary until one is"
    )


def _condition(
    state: api.FailoverStatus, primary_model: str, model: str, trigger: tuple[str, str] | None
) -> conditions.Check:
    if state.active != PRIMARY:
        return conditions.Check(
            FALLBACK_ACTIVE, "True", state.reason or "FallbackActive", state.message
        )
    if trigger is not None:
        return conditions.Check(FALLBACK_ACTIVE, "False", "NoFallbackReady", state.message)
    return conditions.Check(
        FALLBACK_ACTIVE, "False", "PrimaryServing", f"the primary ({primary_model}) serves"
    )


def _index(active: str) -> int:
    try:
        return int(active.rsplit("-", 1)[1])
    except (IndexError, ValueError):
        return -1


def _epoch(text: str | None, default: float) -> float:
    found = api.epoch(text)
    return default if found is None else found
