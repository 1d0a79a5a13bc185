"""failover.decide: the fallback state machine, driven tick by tick.

Each test runs ``Sim``: an injected clock (epoch seconds and the matching RFC 3339
``wall``), the primary's health as the test sets it, and the fallbacks' Deployments as
the reconcile would observe them after applying the previous decision (a fallback has
as many ready pods as the test lets come up, never more than the replicas the last
decision asked for). Every tick's ``Decision.status`` is fed back as the next
``previous`` through ``previous_of``, the way status.failover carries it from one
reconcile to the next.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
from typing import Any

import hypothesis
import pytest
from hypothesis import strategies as st

from llama_operator import api
from llama_operator.api import conditions, events
from llama_operator.operations import failover, health

T0 = 1_750_000_000  # the clock's start, seconds since the epoch
PRIMARY_MODEL = "meta-llama/Llama-3.1-70B-Instruct"
SMALL = "meta-llama/Llama-3.1-8B-Instruct"
TINY = "Qwen/Qwen2.5-1.5B-Instruct"
GATED = "mistralai/Mistral-7B-Instruct-v0.3"
NOT_ACCEPTED = "licence llama3.1 not accepted: set spec.fallbacks[0].license.accept: true"
Event = events.Event
Check = conditions.Check


def wall(t: float) -> str:
    """The instant as the reconcile passes it (handlers: ``%Y-%m-%dT%H:%M:%SZ``)."""
    return datetime.datetime.fromtimestamp(t, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def policy(**fields: Any) -> api.Failover:
    return api.Failover.model_validate(fields)


# The primary as health.of would report it.
def healthy(desired: int = 2) -> health.Health:
    return health.Health(desired=desired, ready=desired)


def down(desired: int = 2) -> health.Health:
    return health.Health(desired=desired, ready=0)


def partial(desired: int = 2) -> health.Health:
    """Some replicas ready, none failing: no trigger, not healthy either."""
    return health.Health(desired=desired, ready=desired - 1)


CRASH = "pod chat-primary-a: container engine is in CrashLoopBackOff"
OOM = "pod chat-primary-a: container engine was OOMKilled"
NO_GPU = "0/3 nodes are available: 3 Insufficient nvidia.com/gpu."


def failing(why: str = CRASH, desired: int = 2) -> health.Health:
    return health.Health(desired=desired, ready=desired - 1, failing=why)


def unschedulable(since: float, desired: int = 2) -> health.Health:
    return health.Health(
        desired=desired, ready=desired - 1, unschedulable_since=since, unschedulable=NO_GPU
    )


@dataclasses.dataclass
class Spec:
    """One entry of spec.fallbacks, and whether it may serve."""

    model: str
    replicas: int = 1  # 0 = cold
    reason: str = ""  # set: it may not serve


@dataclasses.dataclass
class Sim:
    """The clock, the fallbacks' Deployments and status.failover of one LlamaDeployment.

    ``up[i]`` is how many of fallback i's pods pass their readiness probe when asked to
    run; ``replicas`` what the last decision asked each to run (warm ones run from the
    start)."""

    fallbacks: list[Spec]
    policy: api.Failover = dataclasses.field(default_factory=policy)
    primary: health.Health = dataclasses.field(default_factory=healthy)
    overloaded: bool = False
    now: int = T0
    up: list[int] = dataclasses.field(default_factory=list)
    replicas: list[int] = dataclasses.field(default_factory=list)
    written: dict[str, Any] | None = None
    # Per tick: status.failover as written before it, the inputs, what it decided.
    log: list[tuple[dict[str, Any] | None, dict[str, Any], failover.Decision]] = dataclasses.field(
        default_factory=list
    )

    def __post_init__(self) -> None:
        if not self.up:
            self.up = [f.replicas for f in self.fallbacks]
        if not self.replicas:
            self.replicas = [0 if f.reason else f.replicas for f in self.fallbacks]

    @property
    def previous(self) -> api.FailoverStatus | None:
        return failover.previous_of(self.written)

    def candidates(self) -> tuple[failover.Candidate, ...]:
        return tuple(
            failover.Candidate(
                index=i,
                model=f.model,
                configured=f.replicas,
                ready=min(self.up[i], self.replicas[i]),
                servable=not f.reason,
                reason=f.reason,
                pool="l4",
            )
            for i, f in enumerate(self.fallbacks)
        )

    def inputs(self) -> dict[str, Any]:
        return {
            "policy": self.policy,
            "primary": self.primary,
            "primary_model": PRIMARY_MODEL,
            "fallbacks": self.candidates(),
            "overloaded": self.overloaded,
            "now": float(self.now),
            "wall": wall(self.now),
        }

    def tick(self, after: int = 10) -> failover.Decision:
        self.now += after
        seen = self.inputs()
        decision = failover.decide(previous=self.previous, **seen)
        self.log.append((self.written, seen, decision))
        self.written = decision.status
        self.replicas = list(decision.replicas)
        return decision

    def at(self, t: int) -> failover.Decision:
        """A tick at ``T0 + t``."""
        assert T0 + t > self.now
        return self.tick(T0 + t - self.now)


def status_of(d: failover.Decision) -> dict[str, Any]:
    assert d.status is not None
    return d.status


def reasons(d: failover.Decision) -> list[str]:
    return [e.reason for e in d.events]


def condition(d: failover.Decision) -> tuple[str, str]:
    (check,) = d.checks
    assert check.type == "FallbackActive"
    return check.status, check.reason


def warm() -> Sim:
    """Two warm fallbacks, each with one ready standby pod."""
    return Sim([Spec(SMALL), Spec(TINY)])


# --- 0. nothing to fail over to -----------------------------------------------------


class TestWithoutFallbacks:
    @pytest.mark.parametrize("primary", [healthy(), down(), failing(), unschedulable(0.0)])
    def test_the_primary_serves_and_the_condition_goes(self, primary: health.Health) -> None:
        d = failover.decide(
            policy=policy(),
            previous=api.FailoverStatus(active="fallback-0", reason="Unavailable"),
            primary=primary,
            primary_model=PRIMARY_MODEL,
            fallbacks=(),
            now=T0,
            wall=wall(T0),
        )
        assert d == failover.Decision(
            active="primary",
            replicas=(),
            status=None,
            active_model=PRIMARY_MODEL,
            removed=("FallbackActive",),
        )
        assert d.index is None


class TestPrimaryServing:
    def test_a_healthy_primary_keeps_traffic_and_warm_standbys_run(self) -> None:
        sim = warm()
        d = sim.tick()
        assert (d.active, d.index, d.active_model, d.replicas) == (
            "primary",
            None,
            PRIMARY_MODEL,
            (1, 1),
        )
        assert d.events == ()
        assert d.removed == ()
        assert d.checks == (
            Check(
                "FallbackActive", "False", "PrimaryServing", f"the primary ({PRIMARY_MODEL}) serves"
            ),
        )
        assert d.status == {
            "active": "primary",
            "reason": "",
            "message": "",
            "primaryHealthySince": wall(T0 + 10),
            "started": [],
            "fallbacks": [
                {
                    "name": "fallback-0",
                    "model": SMALL,
                    "replicas": 1,
                    "readyReplicas": 1,
                    "servable": True,
                    "reason": "",
                    "pool": "l4",
                },
                {
                    "name": "fallback-1",
                    "model": TINY,
                    "replicas": 1,
                    "readyReplicas": 1,
                    "servable": True,
                    "reason": "",
                    "pool": "l4",
                },
            ],
        }

    def test_the_healthy_since_stamp_is_kept_while_healthy(self) -> None:
        sim = warm()
        sim.tick()
        d = sim.tick(600)
        assert status_of(d)["primaryHealthySince"] == wall(T0 + 10)
        sim.primary = partial()
        assert "primaryHealthySince" not in status_of(sim.tick())
        sim.primary = healthy()
        assert status_of(sim.tick())["primaryHealthySince"] == wall(sim.now)


# --- 1. the triggers -----------------------------------------------------------------


class TestUnavailable:
    def test_no_ready_replica_moves_traffic_to_the_first_fallback(self) -> None:
        sim = warm()
        sim.tick()
        sim.primary = down()
        d = sim.at(60)
        message = (
            "Unavailable: the primary has no ready replica; traffic moved to fallback-0 "
            f"({SMALL}, 1 ready)"
        )
        assert (d.active, d.index, d.active_model, d.replicas) == ("fallback-0", 0, SMALL, (1, 1))
        assert d.events == (Event("Warning", "FailedOver", message),)
        assert d.checks == (Check("FallbackActive", "True", "Unavailable", message),)
        s = status_of(d)
        assert (s["active"], s["reason"], s["message"], s["since"]) == (
            "fallback-0",
            "Unavailable",
            message,
            wall(T0 + 60),
        )
        assert "primaryHealthySince" not in s
        # It stays there, without further Events.
        d = sim.tick(600)
        assert (d.active, d.events) == ("fallback-0", ())
        assert status_of(d)["since"] == wall(T0 + 60)

    def test_switched_off(self) -> None:
        sim = warm()
        sim.policy = policy(onUnavailable=False)
        sim.primary = down()
        d = sim.tick()
        assert (d.active, d.events) == ("primary", ())
        assert condition(d) == ("False", "PrimaryServing")

    def test_a_primary_scaled_to_zero_is_not_unavailable(self) -> None:
        sim = warm()
        sim.primary = health.Health(desired=0, ready=0)
        d = sim.tick()
        assert (d.active, d.events) == ("primary", ())
        assert condition(d) == ("False", "PrimaryServing")


class TestFailing:
    @pytest.mark.parametrize("why", [CRASH, OOM])
    def test_a_crash_loop_or_an_oom_kill_fails_over_with_a_ready_replica_left(
        self, why: str
    ) -> None:
        sim = warm()
        sim.primary = failing(why)
        d = sim.tick()
        message = f"Failing: {why}; traffic moved to fallback-0 ({SMALL}, 1 ready)"
        assert d.active == "fallback-0"
        assert d.events == (Event("Warning", "FailedOver", message),)
        assert d.checks == (Check("FallbackActive", "True", "Failing", message),)

    def test_switched_off(self) -> None:
        sim = warm()
        sim.policy = policy(onFailing=False)
        sim.primary = failing()
        d = sim.tick()
        assert (d.active, d.events) == ("primary", ())
        assert condition(d) == ("False", "PrimaryServing")

    def test_unavailable_is_named_before_failing(self) -> None:
        sim = warm()
        sim.primary = health.Health(desired=1, ready=0, failing=CRASH)
        assert status_of(sim.tick())["reason"] == "Unavailable"
        sim = warm()
        sim.policy = policy(onUnavailable=False)
        sim.primary = health.Health(desired=1, ready=0, failing=CRASH)
        assert status_of(sim.tick())["reason"] == "Failing"


class TestUnschedulable:
    def test_only_after_the_grace_period(self) -> None:
        sim = warm()
        sim.primary = unschedulable(since=T0)
        for t in (10, 60, 299):
            d = sim.at(t)
            assert (d.active, d.events) == ("primary", ()), t
            assert condition(d) == ("False", "PrimaryServing")
        d = sim.at(300)
        message = (
            f"Unschedulable: primary pods unschedulable for 5m: {NO_GPU}; traffic moved to "
            f"fallback-0 ({SMALL}, 1 ready)"
        )
        assert d.active == "fallback-0"
        assert d.events == (Event("Warning", "FailedOver", message),)
        assert condition(d) == ("True", "Unschedulable")

    def test_the_grace_period_is_configurable(self) -> None:
        sim = warm()
        sim.policy = policy(gracePeriod="30s")
        sim.primary = unschedulable(since=T0)
        assert sim.at(29).active == "primary"
        assert sim.at(30).active == "fallback-0"

    def test_without_a_message(self) -> None:
        sim = warm()
        sim.primary = health.Health(desired=2, ready=1, unschedulable_since=T0)
        d = sim.at(300)
        assert status_of(d)["message"].startswith(
            "Unschedulable: primary pods unschedulable for 5m: no node can take its pods; "
        )

    def test_switched_off(self) -> None:
        sim = warm()
        sim.policy = policy(onUnschedulable=False)
        sim.primary = unschedulable(since=T0)
        d = sim.at(3600)
        assert (d.active, d.events) == ("primary", ())


class TestOverloaded:
    def test_sustained_for_the_grace_period(self) -> None:
        sim = warm()
        sim.policy = policy(overloadQueuePerReplica=4, gracePeriod="1m")
        sim.overloaded = True
        d = sim.at(10)
        assert status_of(d)["overloadedSince"] == wall(T0 + 10)
        assert "primaryHealthySince" not in status_of(d)  # overloaded is not healthy
        assert sim.at(69).active == "primary"
        d = sim.at(70)
        message = (
            "Overloaded: more than 4 waiting requests per ready replica for 1m; traffic moved "
            f"to fallback-0 ({SMALL}, 1 ready)"
        )
        assert d.active == "fallback-0"
        assert d.events == (Event("Warning", "FailedOver", message),)
        assert condition(d) == ("True", "Overloaded")

    def test_a_break_restarts_the_count(self) -> None:
        sim = warm()
        sim.policy = policy(overloadQueuePerReplica=2.5, gracePeriod="1m")
        sim.overloaded = True
        sim.at(10)
        sim.at(40)
        sim.overloaded = False
        d = sim.at(50)
        assert "overloadedSince" not in status_of(d)
        sim.overloaded = True
        assert status_of(sim.at(60))["overloadedSince"] == wall(T0 + 60)
        assert sim.at(70).active == "primary"  # 60s after the first, but not without a break
        assert sim.at(119).active == "primary"
        d = sim.at(120)
        assert d.active == "fallback-0"
        assert status_of(d)["message"].startswith(
            "Overloaded: more than 2.5 waiting requests per ready replica for 1m; "
        )

    def test_off_without_a_threshold(self) -> None:
        sim = warm()
        sim.overloaded = True
        for t in (10, 3600, 7200):
            d = sim.at(t)
            assert d.active == "primary"
            assert "overloadedSince" not in status_of(d)
        # And the primary counts as healthy.
        assert status_of(d)["primaryHealthySince"] == wall(T0 + 10)


# --- 2. where traffic goes -----------------------------------------------------------


class TestChoice:
    def test_the_first_servable_ready_fallback_in_spec_order(self) -> None:
        sim = Sim(
            [
                Spec(GATED, reason="gated: the token cannot read mistralai/Mistral-7B"),
                Spec(SMALL),  # warm, still starting
                Spec(TINY),
                Spec("google/gemma-2-2b-it"),
            ],
            up=[1, 0, 1, 1],
        )
        sim.primary = down()
        d = sim.tick()
        assert (d.active, d.active_model) == ("fallback-2", TINY)
        # An unservable fallback runs no pod, and says why.
        assert d.replicas == (0, 1, 1, 1)
        rows = status_of(d)["fallbacks"]
        assert rows[0] == {
            "name": "fallback-0",
            "model": GATED,
            "replicas": 0,
            "readyReplicas": 0,
            "servable": False,
            "reason": "gated: the token cannot read mistralai/Mistral-7B",
            "pool": "l4",
        }
        assert [(r["readyReplicas"], r["servable"]) for r in rows[1:]] == [
            (0, True),
            (1, True),
            (1, True),
        ]

    def test_never_to_a_fallback_without_a_ready_pod(self) -> None:
        sim = Sim([Spec(SMALL), Spec(TINY, replicas=2)], up=[0, 0])
        sim.primary = down()
        for _ in range(5):
            d = sim.tick(60)
            assert d.active == "primary"
            assert d.events == ()  # warm ones starting: no cold start either
            assert d.replicas == (1, 2)
        message = (
            "Unavailable: the primary has no ready replica; no fallback is ready yet "
            "(fallback-0, fallback-1): traffic stays on the primary until one is"
        )
        assert d.checks == (Check("FallbackActive", "False", "NoFallbackReady", message),)
        assert status_of(d)["message"] == message
        assert "since" not in status_of(d)
        # The second comes up first: it takes the traffic.
        sim.up = [0, 1]
        d = sim.tick()
        assert d.active == "fallback-1"

    def test_an_unservable_fallback_is_never_used(self) -> None:
        sim = Sim([Spec(SMALL, reason=NOT_ACCEPTED)], up=[1])
        sim.primary = down()
        for _ in range(3):
            d = sim.tick(600)
            assert (d.active, d.replicas, d.events) == ("primary", (0,), ())
        message = (
            "Unavailable: the primary has no ready replica; no fallback may serve "
            f"(fallback-0: {NOT_ACCEPTED}): traffic stays on the primary"
        )
        assert d.checks == (Check("FallbackActive", "False", "NoFallbackReady", message),)
        (row,) = status_of(d)["fallbacks"]
        assert (row["servable"], row["reason"], row["replicas"]) == (False, NOT_ACCEPTED, 0)

    def test_the_condition_is_back_to_primary_serving_once_the_trigger_goes(self) -> None:
        sim = Sim([Spec(SMALL)], up=[0])
        sim.primary = down()
        assert condition(sim.tick()) == ("False", "NoFallbackReady")
        sim.primary = partial()
        d = sim.tick()
        assert condition(d) == ("False", "PrimaryServing")
        assert status_of(d)["message"] == ""


# --- 3. cold fallbacks ---------------------------------------------------------------


class TestColdStart:
    def test_the_first_cold_one_is_started_and_traffic_waits_for_it(self) -> None:
        sim = Sim([Spec(SMALL, replicas=0), Spec(TINY, replicas=0)], up=[0, 0])
        d = sim.tick()
        assert (d.active, d.replicas) == ("primary", (0, 0))
        sim.primary = down()
        d = sim.at(60)
        assert (d.active, d.replicas) == ("primary", (1, 0))
        assert d.events == (
            Event(
                "Normal",
                "StartingFallback",
                "Unavailable: the primary has no ready replica; starting the cold fallback "
                f"fallback-0 ({SMALL})",
            ),
        )
        message = (
            "Unavailable: the primary has no ready replica; no fallback is ready yet "
            "(fallback-0): traffic stays on the primary until one is"
        )
        assert d.checks == (Check("FallbackActive", "False", "NoFallbackReady", message),)
        assert status_of(d)["started"] == [0]
        assert [r["replicas"] for r in status_of(d)["fallbacks"]] == [1, 0]
        # Loading (minutes): one at a time, so the second is not started meanwhile.
        for _ in range(10):
            d = sim.tick(30)
            assert (d.active, d.replicas, d.events) == ("primary", (1, 0), ())
            assert status_of(d)["started"] == [0]
        # Ready: traffic moves.
        sim.up[0] = 1
        d = sim.tick(30)
        assert (d.active, d.replicas) == ("fallback-0", (1, 0))
        assert reasons(d) == ["FailedOver"]
        # The primary recovers; after the hold-down the cold one goes back to zero.
        sim.primary = healthy()
        back = sim.now + 10 + 300
        sim.tick(10)
        d = sim.at(back - T0)
        assert (d.active, d.replicas) == ("primary", (0, 0))
        assert reasons(d) == ["FailedBack"]
        assert status_of(d)["started"] == []

    def test_a_second_failover_starts_it_again(self) -> None:
        sim = Sim([Spec(SMALL, replicas=0)], up=[1])
        sim.primary = down()
        assert (sim.tick().replicas, sim.tick().active) == ((1,), "fallback-0")
        sim.primary = healthy()
        sim.tick()
        assert sim.tick(300).replicas == (0,)
        sim.primary = down()
        d = sim.tick()
        assert (d.active, d.replicas, reasons(d)) == ("primary", (1,), ["StartingFallback"])

    def test_unservable_cold_ones_are_skipped(self) -> None:
        sim = Sim([Spec(GATED, replicas=0, reason="gated"), Spec(SMALL, replicas=0)], up=[0, 0])
        sim.primary = down()
        d = sim.tick()
        assert d.replicas == (0, 1)
        assert status_of(d)["started"] == [1]
        assert d.events[0].message.endswith(f"starting the cold fallback fallback-1 ({SMALL})")

    def test_a_warm_one_still_starting_blocks_cold_starts(self) -> None:
        sim = Sim([Spec(SMALL, replicas=1), Spec(TINY, replicas=0)], up=[0, 1])
        sim.primary = down()
        for _ in range(3):
            d = sim.tick(60)
            assert (d.active, d.replicas, d.events) == ("primary", (1, 0), ())
        assert "(fallback-0)" in status_of(d)["message"]
        sim.up[0] = 1
        assert sim.tick().active == "fallback-0"

    def test_a_warm_one_that_may_not_serve_does_not_block(self) -> None:
        sim = Sim([Spec(SMALL, replicas=1, reason="gated"), Spec(TINY, replicas=0)], up=[0, 1])
        sim.primary = down()
        d = sim.tick()
        assert (d.replicas, reasons(d)) == ((0, 1), ["StartingFallback"])
        d = sim.tick()
        assert (d.active, d.active_model) == ("fallback-1", TINY)

    def test_a_started_one_that_may_no_longer_serve_stops_and_the_next_starts(self) -> None:
        sim = Sim([Spec(SMALL, replicas=0), Spec(TINY, replicas=0)], up=[0, 1])
        sim.primary = down()
        assert sim.tick().replicas == (1, 0)
        # Its licence is no longer accepted while it loads: it must not run, nor block.
        sim.fallbacks[0] = Spec(SMALL, replicas=0, reason=NOT_ACCEPTED)
        d = sim.tick()
        assert d.replicas == (0, 1)
        assert status_of(d)["started"] == [0, 1]
        assert reasons(d) == ["StartingFallback"]
        assert sim.tick().active == "fallback-1"

    def test_started_ones_stop_when_the_primary_recovers_first(self) -> None:
        sim = Sim([Spec(SMALL, replicas=0)], up=[0])
        sim.primary = down()
        assert sim.tick().replicas == (1,)
        # Back, but not every replica: it may fail again, the cold one keeps loading.
        sim.primary = partial()
        d = sim.tick()
        assert (d.replicas, status_of(d)["started"]) == ((1,), [0])
        sim.primary = healthy()
        d = sim.tick()
        assert (d.active, d.replicas, d.events) == ("primary", (0,), ())
        assert status_of(d)["started"] == []
        assert condition(d) == ("False", "PrimaryServing")

    def test_a_cold_one_with_more_configured_replicas_starts_as_configured(self) -> None:
        # replicas 0 is cold; a started one runs max(1, configured): one replica.
        sim = Sim([Spec(SMALL, replicas=0)], up=[0])
        sim.primary = down()
        assert sim.tick().replicas == (1,)


# --- 4. fail-back --------------------------------------------------------------------


def failed_over(sim: Sim) -> failover.Decision:
    sim.primary = down()
    d = sim.tick()
    assert d.active == "fallback-0"
    return d


class TestHoldDown:
    def test_back_after_exactly_the_hold_down(self) -> None:
        sim = warm()
        failed_over(sim)
        sim.primary = healthy()
        start = sim.at(100)
        assert start.active == "fallback-0"
        assert status_of(start)["primaryHealthySince"] == wall(T0 + 100)
        assert status_of(start)["message"] == (
            f"Unavailable: traffic on fallback-0 ({SMALL}); the primary is healthy again, back "
            "on it in 300s unless it falters"
        )
        assert start.checks[0].status == "True"
        d = sim.at(399)
        assert d.active == "fallback-0"
        assert status_of(d)["message"].endswith("back on it in 1s unless it falters")
        d = sim.at(400)
        message = (
            "the primary has been healthy for spec.failover.holdDown (5m): traffic is back on "
            f"it ({PRIMARY_MODEL})"
        )
        assert (d.active, d.active_model, d.replicas) == ("primary", PRIMARY_MODEL, (1, 1))
        assert d.events == (Event("Normal", "FailedBack", message),)
        assert d.checks == (
            Check(
                "FallbackActive", "False", "PrimaryServing", f"the primary ({PRIMARY_MODEL}) serves"
            ),
        )
        s = status_of(d)
        assert (s["active"], s["reason"], s["message"], s["since"]) == (
            "primary",
            "",
            message,
            wall(T0 + 400),
        )
        assert s["primaryHealthySince"] == wall(T0 + 100)

    def test_the_hold_down_is_configurable(self) -> None:
        sim = warm()
        sim.policy = policy(holdDown="90s")
        failed_over(sim)
        sim.primary = healthy()
        sim.at(100)
        assert sim.at(189).active == "fallback-0"
        assert sim.at(190).active == "primary"

    @pytest.mark.parametrize("falter", [partial(), down(), failing(), unschedulable(T0)])
    def test_a_break_restarts_the_count(self, falter: health.Health) -> None:
        sim = warm()
        failed_over(sim)
        sim.primary = healthy()
        sim.at(100)
        sim.at(350)
        sim.primary = falter
        d = sim.at(360)
        assert d.active == "fallback-0"
        assert "primaryHealthySince" not in status_of(d)
        sim.primary = healthy()
        sim.at(370)
        for t in (400, 500, 669):
            assert sim.at(t).active == "fallback-0", t
        assert sim.at(670).active == "primary"

    def test_overload_is_a_break_too(self) -> None:
        sim = warm()
        sim.policy = policy(overloadQueuePerReplica=4)
        failed_over(sim)
        sim.primary = healthy()
        sim.at(100)
        sim.overloaded = True
        sim.at(200)
        sim.overloaded = False
        sim.at(210)
        assert sim.at(509).active == "fallback-0"
        assert sim.at(510).active == "primary"

    def test_intermittent_readiness_does_not_flap(self) -> None:
        sim = warm()
        failed_over(sim)
        # Ready for 4 minutes, then not, for an hour.
        t = 10
        for _ in range(12):
            sim.primary = healthy()
            for _ in range(8):
                t += 30
                assert sim.at(t).active == "fallback-0"
            sim.primary = partial()
            t += 30
            assert sim.at(t).active == "fallback-0"
        assert sum(len(d.events) for _, _, d in sim.log) == 1  # the one FailedOver


# --- 5. the active fallback fails ----------------------------------------------------


class TestActiveFallbackFails:
    def test_hands_over_to_the_next_ready_fallback(self) -> None:
        sim = warm()
        failed_over(sim)
        sim.up[0] = 0
        d = sim.at(100)
        message = f"fallback-0 has no ready pod: traffic moved to fallback-1 ({TINY})"
        assert (d.active, d.active_model) == ("fallback-1", TINY)
        assert d.events == (Event("Warning", "FailedOver", message),)
        # The trigger stays what moved traffic off the primary.
        assert d.checks == (Check("FallbackActive", "True", "Unavailable", message),)
        assert status_of(d)["since"] == wall(T0 + 100)

    def test_an_active_fallback_that_may_no_longer_serve_hands_over(self) -> None:
        sim = warm()
        failed_over(sim)
        sim.fallbacks[0] = Spec(SMALL, reason=NOT_ACCEPTED)
        d = sim.tick()
        assert d.active == "fallback-1"
        assert d.events[0].message == (
            f"fallback-0 has no ready pod ({NOT_ACCEPTED}): traffic moved to fallback-1 ({TINY})"
        )
        assert d.replicas == (0, 1)

    def test_else_back_to_a_primary_with_a_ready_pod(self) -> None:
        sim = Sim([Spec(SMALL)])
        failed_over(sim)
        sim.primary = failing()  # not healthy, but one pod ready
        sim.up[0] = 0
        d = sim.tick()
        message = (
            "fallback-0 has no ready pod: traffic is back on the primary, which has a ready pod"
        )
        assert (d.active, d.active_model) == ("primary", PRIMARY_MODEL)
        assert d.events == (Event("Warning", "FailedBack", message),)
        # Still failing: the condition says no fallback is ready.
        assert d.checks == (Check("FallbackActive", "False", "NoFallbackReady", message),)

    def test_else_it_stays(self) -> None:
        sim = Sim([Spec(SMALL), Spec(TINY)], up=[1, 0])
        failed_over(sim)
        sim.up[0] = 0
        d = sim.tick()
        message = "fallback-0 has no ready pod, and nothing else is ready: traffic stays on it"
        assert (d.active, d.events) == ("fallback-0", ())
        assert d.checks == (Check("FallbackActive", "True", "Unavailable", message),)
        # It comes back: it serves again, nothing to report.
        sim.up[0] = 1
        d = sim.tick()
        assert (d.active, d.events) == ("fallback-0", ())

    def test_a_fallback_dropped_from_the_spec(self) -> None:
        sim = warm()
        failed_over(sim)
        sim.fallbacks = [Spec(SMALL)]
        sim.up, sim.replicas = [1], [1]
        sim.written = {**status_of(sim.log[-1][2]), "active": "fallback-1"}
        d = sim.tick()
        # Still unavailable: straight to the one that is left.
        assert (d.active, reasons(d)) == ("fallback-0", ["FailedOver"])


# --- 6. restarts ---------------------------------------------------------------------


def eventful() -> Sim:
    """A run through every kind of decision."""
    sim = Sim([Spec(SMALL, replicas=0), Spec(TINY, reason="gated")], up=[0, 1])
    sim.tick()
    sim.primary = unschedulable(since=T0)
    sim.at(100)
    sim.at(300)  # StartingFallback fallback-0
    sim.at(400)
    sim.up = [1, 1]
    sim.at(410)  # FailedOver to fallback-0
    sim.primary = healthy()
    sim.at(500)
    sim.primary = partial()
    sim.at(600)
    sim.primary = healthy()
    sim.fallbacks[1] = Spec(TINY)  # access granted: its standby starts
    sim.at(700)
    sim.up = [0, 1]
    sim.at(710)  # FailedOver to fallback-1
    sim.at(1000)  # FailedBack
    sim.overloaded = True
    sim.policy = policy(overloadQueuePerReplica=3, gracePeriod="1m")
    sim.at(1010)
    sim.at(1070)  # Overloaded: FailedOver to fallback-1
    sim.overloaded = False
    sim.primary = failing()
    sim.up = [0, 0]
    sim.at(1080)  # FailedBack to a primary with a ready pod
    sim.fallbacks[1] = Spec(TINY, reason="gated")
    sim.at(1090)  # Failing: StartingFallback fallback-0 again
    return sim


RUN = len(eventful().log)


class TestRestart:
    def test_the_run_covers_every_event(self) -> None:
        sim = eventful()
        assert [r for _, _, d in sim.log for r in reasons(d)] == [
            "StartingFallback",
            "FailedOver",
            "FailedOver",
            "FailedBack",
            "FailedOver",
            "FailedBack",
            "StartingFallback",
        ]

    @pytest.mark.parametrize("index", range(RUN))
    def test_continues_as_if_never_stopped(self, index: int) -> None:
        sim = eventful()
        # A new process: only status.failover survives, as JSON through the API server.
        written = sim.log[index][0]
        previous = failover.previous_of(json.loads(json.dumps(written)))
        assert previous == failover.previous_of(written)
        replayed = []
        for _, seen, _ in sim.log[index:]:
            decision = failover.decide(previous=previous, **seen)
            replayed.append(decision)
            previous = failover.previous_of(json.loads(json.dumps(decision.status)))
        assert replayed == [d for _, _, d in sim.log[index:]]

    def test_a_status_this_version_cannot_read_is_no_failover(self) -> None:
        assert failover.previous_of(None) is None
        assert failover.previous_of("fallback-0") is None
        assert failover.previous_of({"active": "fallback-0", "future": 1}) is None
        assert failover.previous_of({"started": ["x"]}) is None
        read = failover.previous_of({"active": "fallback-1", "started": [1]})
        assert read == api.FailoverStatus(active="fallback-1", started=[1])


# --- 7. properties -------------------------------------------------------------------


PRIMARY_STATES = {
    "healthy": lambda now: healthy(),
    "down": lambda now: down(),
    "partial": lambda now: partial(),
    "failing": lambda now: failing(),
    "unschedulable": lambda now: unschedulable(now - 200),
    "unschedulable-long": lambda now: unschedulable(now - 400),
}
TICK = st.fixed_dictionaries(
    {
        "after": st.sampled_from([1, 10, 30, 59, 60, 61, 120, 299, 300, 301, 600]),
        "primary": st.sampled_from(
            ["healthy"] * 6 + ["down", "partial", "failing", "unschedulable", "unschedulable-long"]
        ),
        "up": st.lists(st.sampled_from([0, 0, 1, 2]), min_size=3, max_size=3),
        "servable": st.lists(st.sampled_from([True] * 5 + [False]), min_size=3, max_size=3),
        "overloaded": st.sampled_from([False, False, False, True]),
    }
)


class TestProperties:
    @hypothesis.settings(max_examples=300, deadline=None)
    @hypothesis.given(
        ticks=st.lists(TICK, min_size=1, max_size=60),
        configured=st.lists(st.sampled_from([0, 0, 1, 2]), min_size=3, max_size=3),
        hold_down=st.sampled_from(["30s", "5m", "10m"]),
        overload=st.sampled_from([None, 4.0]),
    )
    def test_no_flapping_and_never_to_a_variant_without_a_ready_pod(
        self,
        ticks: list[dict[str, Any]],
        configured: list[int],
        hold_down: str,
        overload: float | None,
    ) -> None:
        sim = Sim(
            [Spec(m, replicas=n) for m, n in zip((SMALL, TINY, GATED), configured, strict=True)],
            policy=policy(holdDown=hold_down, overloadQueuePerReplica=overload),
        )
        hold = api.parse_duration(hold_down)
        healthy_from: int | None = None  # since when the primary is healthy without a break
        active = "primary"
        for tick in ticks:
            sim.now += tick["after"]
            sim.primary = PRIMARY_STATES[tick["primary"]](sim.now)
            sim.up = tick["up"]
            sim.fallbacks = [
                Spec(f.model, f.replicas, "" if ok else "gated")
                for f, ok in zip(sim.fallbacks, tick["servable"], strict=True)
            ]
            sim.overloaded = tick["overloaded"]
            is_healthy = sim.primary.healthy and not (sim.overloaded and overload)
            healthy_from = (healthy_from or sim.now) if is_healthy else None
            seen = sim.candidates()
            written = sim.written
            d = sim.tick(0)
            by_index = {c.index: c for c in seen}

            if d.active != active:
                # Never to a variant without a ready pod.
                if d.active == "primary":
                    assert sim.primary.ready > 0
                    before = by_index[api.fallback_index(active)]
                    held = healthy_from is not None and sim.now - healthy_from >= hold
                    # Back before the hold-down only when the fallback has nothing left.
                    assert held or not before.servable or before.ready == 0
                else:
                    to = by_index[api.fallback_index(d.active)]
                    assert to.servable
                    assert to.ready > 0
                    assert not any(c.servable and c.ready for c in seen if c.index < to.index) or (
                        active != "primary"
                    )
            elif d.active != "primary" and healthy_from is not None:
                # Stays on the fallback only until the hold-down has passed.
                assert sim.now - healthy_from < hold
            # Never left without a ready endpoint while a variant has one.
            if d.active == "primary":
                serving_now = sim.primary.ready
            else:
                current = by_index[d.index or 0]
                serving_now = current.ready if current.servable else 0
            if serving_now == 0:
                assert sim.primary.ready == 0
                assert not any(c.servable and c.ready for c in seen)
            # A certain trigger with a fallback ready moves traffic off the primary.
            certain = tick["primary"] in ("down", "failing", "unschedulable-long")
            if active == "primary" and certain and any(c.servable and c.ready for c in seen):
                assert d.active != "primary"
            active = d.active

            # What each fallback runs.
            s = status_of(d)
            started = set(s["started"])
            for c, n in zip(seen, d.replicas, strict=True):
                if not c.servable:
                    assert n == 0
                elif c.index in started:
                    assert n == max(1, c.configured)
                else:
                    assert n == c.configured
            new = started - set((written or {}).get("started", []))
            assert len(new) <= 1
            assert reasons(d).count("StartingFallback") == len(new)

            # What is reported.
            assert d.active_model == (
                PRIMARY_MODEL if d.active == "primary" else sim.fallbacks[d.index or 0].model
            )
            assert condition(d)[0] == ("True" if d.active != "primary" else "False")
            assert s["active"] == d.active
            assert [r["servable"] for r in s["fallbacks"]] == tick["servable"]
            for event in d.events:
                assert event.type in ("Normal", "Warning")
                assert event.message

            # A restarted operator, with only status.failover, decides the same.
            kept = failover.previous_of(json.loads(json.dumps(written)) if written else None)
            assert failover.decide(previous=kept, **sim.log[-1][1]) == d

    @hypothesis.settings(max_examples=100, deadline=None)
    @hypothesis.given(
        pattern=st.lists(st.booleans(), min_size=10, max_size=80),
        every=st.sampled_from([10, 30, 60]),
    )
    def test_intermittent_readiness_fails_back_only_after_a_full_hold_down(
        self, pattern: list[bool], every: int
    ) -> None:
        sim = warm()
        failed_over(sim)
        run = 0  # seconds of health without a break, as the ticks saw it
        for up in pattern:
            sim.primary = healthy() if up else partial()
            was = sim.log[-1][2].active
            d = sim.tick(every)
            run = run + every if up and sim.log[-2][1]["primary"].healthy else 0
            if was == "primary":
                assert d.active == "primary"
            elif d.active == "primary":
                assert run >= 300
            else:
                assert run < 300 or not up


def test_variant_names() -> None:
    assert [failover.name_of(i) for i in range(3)] == ["fallback-0", "fallback-1", "fallback-2"]
    assert api.fallback_index("fallback-7") == 7
    assert api.fallback_index("primary") is None
    assert api.fallback_index("fallback-x") is None


def test_policy_of() -> None:
    spec = api.parse_spec({"model": {"id": SMALL}})
    assert failover.policy_of(spec) == api.Failover()
    spec = api.parse_spec({"model": {"id": SMALL}, "failover": {"holdDown": "1m"}})
    assert failover.policy_of(spec).holdDown == "1m"


def test_epoch() -> None:
    assert failover._epoch("2025-06-15T10:00:00Z", 0.0) == 1749981600.0
    assert failover._epoch(None, 5.0) == 5.0
    assert failover._epoch("soon", 5.0) == 5.0
