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
from collections.abc import Collection, Mapping, Sequence
from typing import Any, Literal

from llama_operator import api
from llama_operator.api import conditions
from llama_operator.api.events import Event
from llama_operator.operations import health

PRIMARY = "primary"
FALLBACK_ACTIVE = conditions.FALLBACK_ACTIVE
FALLBACKS_PLANNED = conditions.FALLBACKS_PLANNED
# What moves traffic off the primary: status.failover.reason, and the FallbackActive
# condition's reason while a fallback serves.
Cause = Literal["Unavailable", "Failing", "Unschedulable", "Overloaded"]

# The variant name of fallback ``index``: fallback-0, fallback-1, ... (``api`` makes it).
name_of = api.fallback_variant


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
        return api.fallback_index(self.active)


@dataclasses.dataclass(frozen=True)
class Trigger:
    """Why traffic should leave the primary now, and what was seen."""

    cause: Cause
    detail: str


@dataclasses.dataclass(frozen=True)
class _Primary:
    """The primary as this tick reads it, with the times its periods are counted from."""

    trigger: Trigger | None
    healthy: bool  # every replica ready, none failing or unschedulable, not overloaded
    healthy_since: str | None  # api.stamp: since when healthy without a break
    overloaded_since: str | None  # api.stamp: since when overloaded without a break


@dataclasses.dataclass(frozen=True)
class _Traffic:
    """Where traffic goes, as the steps of ``decide`` move it (status.failover's fields)."""

    fallback: int | None  # the index of the fallback traffic is on; None: the primary
    started: tuple[int, ...]  # cold fallbacks started for this failover
    reason: str
    message: str
    since: str | None
    events: tuple[Event, ...] = ()

    @property
    def active(self) -> str:
        """The variant traffic is on, as status.failover.active names it."""
        return PRIMARY if self.fallback is None else api.fallback_variant(self.fallback)

    def moved(
        self, to: int | None, *, reason: str, wall: str, message: str, event: Event
    ) -> _Traffic:
        """Traffic on fallback ``to`` (None: the primary) from ``wall`` on, with ``event`` to
        say so. Back on the primary, the cold fallbacks started for the failover go back
        to zero."""
        return _Traffic(
            fallback=to,
            started=() if to is None else self.started,
            reason=reason,
            message=message,
            since=wall,
            events=(*self.events, event),
        )


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
    """Where the entry point serves from now, and what each fallback runs.

    In order: read the primary (its trigger, and since when it is healthy or overloaded);
    carry over where traffic was; move it from the primary or from the active fallback;
    then each fallback's replicas, status.failover and the conditions.
    """
    if not fallbacks:
        return Decision(
            active=PRIMARY,
            replicas=(),
            status=None,
            active_model=primary_model,
            removed=(FALLBACK_ACTIVE,),
        )
    state = previous or api.FailoverStatus()
    seen = _read_primary(
        policy=policy, state=state, primary=primary, overloaded=overloaded, now=now
    )
    by_index = {f.index: f for f in fallbacks}
    traffic = _carried_over(state=state, by_index=by_index, primary=primary, wall=wall)
    if traffic.fallback is None:
        traffic = _from_primary(
            traffic, trigger=seen.trigger, healthy=seen.healthy, fallbacks=fallbacks, wall=wall
        )
    else:
        traffic = _from_fallback(
            traffic,
            current=by_index[traffic.fallback],
            seen=seen,
            policy=policy,
            primary=primary,
            primary_model=primary_model,
            fallbacks=fallbacks,
            now=now,
            wall=wall,
        )
    replicas = _replicas(fallbacks, started=traffic.started)
    status = _status(traffic, seen=seen, fallbacks=fallbacks, replicas=replicas)
    model = primary_model if traffic.fallback is None else by_index[traffic.fallback].model
    return Decision(
        active=traffic.active,
        replicas=replicas,
        status=status.model_dump(mode="json", exclude_none=True),
        active_model=model,
        events=traffic.events,
        checks=(_condition(status, primary_model, seen.trigger),),
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
        where = ", ".join(
            f"{api.fallback_variant(f.index)} ({f.model}) on pool {f.pool}" for f in fallbacks
        )
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


# The steps of ``decide``, in the order it takes them.


def _read_primary(
    *,
    policy: api.Failover,
    state: api.FailoverStatus,
    primary: health.Health,
    overloaded: bool,
    now: float,
) -> _Primary:
    """The primary's trigger, and since when it is healthy or overloaded without a break."""
    at = api.stamp(now)  # periods are timed from these: to the millisecond
    overloaded_since = (
        (state.overloadedSince or at) if overloaded and policy.overloadQueuePerReplica else None
    )
    healthy = primary.healthy and overloaded_since is None
    return _Primary(
        trigger=_trigger(
            policy=policy,
            primary=primary,
            overloaded_since=overloaded_since,
            grace=api.parse_duration(policy.gracePeriod),
            now=now,
        ),
        healthy=healthy,
        healthy_since=(state.primaryHealthySince or at) if healthy else None,
        overloaded_since=overloaded_since,
    )


def _trigger(
    *,
    policy: api.Failover,
    primary: health.Health,
    overloaded_since: str | None,
    grace: float,
    now: float,
) -> Trigger | None:
    if policy.onUnavailable and primary.desired > 0 and primary.ready == 0:
        return Trigger("Unavailable", "the primary has no ready replica")
    if policy.onFailing and primary.failing is not None:
        return Trigger("Failing", primary.failing)
    since = primary.unschedulable_since
    if policy.onUnschedulable and since is not None and now - since >= grace:
        said = primary.unschedulable or "no node can take its pods"
        return Trigger(
            "Unschedulable", f"primary pods unschedulable for {policy.gracePeriod}: {said}"
        )
    if overloaded_since is not None and now - _epoch(overloaded_since, now) >= grace:
        return Trigger(
            "Overloaded",
            f"more than {policy.overloadQueuePerReplica:g} waiting requests per ready replica "
            f"for {policy.gracePeriod}",
        )
    return None


def _carried_over(
    *,
    state: api.FailoverStatus,
    by_index: Mapping[int, Candidate],
    primary: health.Health,
    wall: str,
) -> _Traffic:
    """Where traffic was (status.failover), or the primary when that is no longer a choice."""
    index = api.fallback_index(state.active)
    if state.active != PRIMARY and (index is None or index not in by_index or primary.desired == 0):
        # The spec no longer has it, or the endpoint was scaled to zero: no traffic is
        # expected, so nothing to fail over for.
        return _Traffic(fallback=None, started=(), reason="", message="", since=wall)
    return _Traffic(
        fallback=index,
        started=tuple(state.started),
        reason=state.reason,
        message=state.message,
        since=state.since,
    )


def _from_primary(
    traffic: _Traffic,
    *,
    trigger: Trigger | None,
    healthy: bool,
    fallbacks: Sequence[Candidate],
    wall: str,
) -> _Traffic:
    """On the primary: a trigger moves traffic to the first ready fallback, or starts a
    cold one while none is ready."""
    if trigger is None:
        # With a healthy primary, the trigger went away before a fallback was needed.
        return dataclasses.replace(traffic, message="", started=() if healthy else traffic.started)
    ready = _ready(fallbacks)
    if not ready:
        return _start_cold(traffic, trigger=trigger, fallbacks=fallbacks)
    to = ready[0]
    name = api.fallback_variant(to.index)
    message = (
        f"{trigger.cause}: {trigger.detail}; traffic moved to {name} ({to.model}, {to.ready} ready)"
    )
    return traffic.moved(
        to.index,
        reason=trigger.cause,
        wall=wall,
        message=message,
        event=Event("Warning", "FailedOver", message),
    )


def _start_cold(traffic: _Traffic, *, trigger: Trigger, fallbacks: Sequence[Candidate]) -> _Traffic:
    """No fallback ready: the next cold one starts (when one may now); traffic stays."""
    started, events = traffic.started, traffic.events
    start = _next_cold(fallbacks, started)
    if start is not None:
        started = (*started, start.index)
        events = (
            *events,
            Event(
                "Normal",
                "StartingFallback",
                f"{trigger.cause}: {trigger.detail}; starting the cold fallback "
                f"{api.fallback_variant(start.index)} ({start.model})",
            ),
        )
    message = f"{trigger.cause}: {trigger.detail}; " + _none_ready(fallbacks, started)
    return dataclasses.replace(traffic, started=started, events=events, message=message)


def _from_fallback(
    traffic: _Traffic,
    *,
    current: Candidate,
    seen: _Primary,
    policy: api.Failover,
    primary: health.Health,
    primary_model: str,
    fallbacks: Sequence[Candidate],
    now: float,
    wall: str,
) -> _Traffic:
    """On a fallback: back on the primary once it has been healthy for holdDown, on
    another variant when this one lost its last ready pod, else stay and say until when."""
    hold_down = api.parse_duration(policy.holdDown)
    healthy_for = None if seen.healthy_since is None else now - _epoch(seen.healthy_since, now)
    if healthy_for is not None and healthy_for >= hold_down:
        message = (
            f"the primary has been healthy for spec.failover.holdDown ({policy.holdDown}): "
            f"traffic is back on it ({primary_model})"
        )
        return traffic.moved(
            None,
            reason="",
            wall=wall,
            message=message,
            event=Event("Normal", "FailedBack", message),
        )
    if not current.servable or current.ready == 0:
        return _handed_over(
            traffic, current=current, primary=primary, fallbacks=fallbacks, wall=wall
        )
    if healthy_for is not None:
        message = (
            f"{traffic.reason}: traffic on {traffic.active} ({current.model}); the primary is "
            f"healthy again, back on it in {max(0, int(hold_down - healthy_for))}s unless it "
            "falters"
        )
    else:
        message = (
            f"{traffic.reason}: traffic on {traffic.active} ({current.model}); back on the "
            f"primary once it has been healthy for spec.failover.holdDown ({policy.holdDown})"
        )
    return dataclasses.replace(traffic, message=message)


def _handed_over(
    traffic: _Traffic,
    *,
    current: Candidate,
    primary: health.Health,
    fallbacks: Sequence[Candidate],
    wall: str,
) -> _Traffic:
    """The active fallback lost its last ready pod: the next ready fallback, else the
    primary if it has a ready pod, else it stays (nothing is better)."""
    lost = f"{api.fallback_variant(current.index)} has no ready pod" + (
        f" ({current.reason})" if current.reason else ""
    )
    others = [f for f in _ready(fallbacks) if f.index != current.index]
    if others:
        to = others[0]
        name = api.fallback_variant(to.index)
        message = f"{lost}: traffic moved to {name} ({to.model})"
        return traffic.moved(
            to.index,
            reason=traffic.reason,
            wall=wall,
            message=message,
            event=Event("Warning", "FailedOver", message),
        )
    if primary.ready > 0:
        message = f"{lost}: traffic is back on the primary, which has a ready pod"
        return traffic.moved(
            None,
            reason="",
            wall=wall,
            message=message,
            event=Event("Warning", "FailedBack", message),
        )
    return dataclasses.replace(
        traffic, message=f"{lost}, and nothing else is ready: traffic stays on it"
    )


def _replicas(fallbacks: Sequence[Candidate], *, started: Collection[int]) -> tuple[int, ...]:
    # A fallback that may not serve runs no pod, even one started for this failover.
    return tuple(
        0 if not f.servable else max(1, f.configured) if f.index in started else f.configured
        for f in fallbacks
    )


def _status(
    traffic: _Traffic,
    *,
    seen: _Primary,
    fallbacks: Sequence[Candidate],
    replicas: Sequence[int],
) -> api.FailoverStatus:
    rows = [
        api.FallbackStatus(
            name=api.fallback_variant(f.index),
            model=f.model,
            replicas=replicas[i],
            readyReplicas=f.ready,
            servable=f.servable,
            reason=f.reason,
            pool=f.pool,
        )
        for i, f in enumerate(fallbacks)
    ]
    return api.FailoverStatus(
        active=traffic.active,
        reason=traffic.reason if traffic.fallback is not None else "",
        message=traffic.message,
        since=traffic.since,
        primaryHealthySince=seen.healthy_since,
        overloadedSince=seen.overloaded_since,
        started=list(traffic.started),
        fallbacks=rows,
    )


def _condition(
    state: api.FailoverStatus, primary_model: str, trigger: Trigger | None
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


# What the steps share.


def _ready(fallbacks: Sequence[Candidate]) -> list[Candidate]:
    """The fallbacks traffic may move to now, in spec order."""
    return [f for f in fallbacks if f.servable and f.ready > 0]


def _next_cold(fallbacks: Sequence[Candidate], started: Collection[int]) -> Candidate | None:
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


def _none_ready(fallbacks: Sequence[Candidate], started: Collection[int]) -> str:
    servable = [f for f in fallbacks if f.servable]
    if not servable:
        why = "; ".join(f"{api.fallback_variant(f.index)}: {f.reason}" for f in fallbacks)
        return f"no fallback may serve ({why}): traffic stays on the primary"
    loading = [
        api.fallback_variant(f.index) for f in servable if f.index in started or f.configured > 0
    ]
    return (
        f"no fallback is ready yet ({', '.join(loading) or 'none started'}): traffic stays on "
        "the primary until one is"
    )


def _epoch(text: str | None, default: float) -> float:
    found = api.epoch(text)
    return default if found is None else found
