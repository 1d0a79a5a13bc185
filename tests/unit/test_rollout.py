"""rollout.decide: the canary state machine, driven tick by tick.

Each test runs ``Sim``: an injected clock (epoch seconds and the matching RFC 3339
``wall``), the primary and canary Deployments as the reconcile would observe them
after applying the previous decision, and judgements built by hand. Every tick's
``Decision.status`` is fed back as the next ``previous`` through ``previous_of``, the
way status.rollout carries it from one reconcile to the next.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
from collections.abc import Callable
from typing import Any

import hypothesis
import pytest
from hypothesis import strategies as st

from llama_operator import api
from llama_operator.api import conditions
from llama_operator.operations import canary_analysis, rollout

T0 = 1_750_000_000  # the clock's start, seconds since the epoch
STEPS: tuple[tuple[int, str | None], ...] = ((10, "1m"), (50, "2m"))
HINT = (
    "; traffic is back on the stable revision. The change is not retried until the spec "
    "changes again (or annotate llamaops.dev/rollout=retry)"
)
PASSED = "120 requests; error rate 0.00833 <= max 0.02 (stable 0.00556)"
FAILED = "120 requests; error rate 0.25 > max 0.02 (stable 0.00556)"
WAITING = "3 of 20 requests needed to judge the canary; waiting for more"
Event = rollout.Event
Check = conditions.Check


def wall(t: float) -> str:
    """The instant as the reconcile passes it (handlers: ``%Y-%m-%dT%H:%M:%SZ``)."""
    return datetime.datetime.fromtimestamp(t, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def policy(
    *steps: tuple[int, str | None],
    min_requests: int = 0,
    failure_limit: int = 1,
    paused: bool = False,
    strategy: str = "Canary",
    ready_timeout: str = "10m",
) -> api.Rollout:
    """A rollout policy: steps 10%/1m and 50%/2m unless given."""
    return api.Rollout.model_validate(
        {
            "strategy": strategy,
            "steps": [
                {"weight": w, "pause": p} if p is not None else {"weight": w}
                for w, p in (steps or STEPS)
            ],
            "analysis": {"minRequests": min_requests, "failureLimit": failure_limit},
            "paused": paused,
            "readyTimeout": ready_timeout,
        }
    )


def serving(revision: str | None, replicas: int) -> rollout.Variant:
    """A Deployment whose every pod runs ``revision`` and is Ready."""
    return rollout.Variant(
        exists=True,
        revision=revision,
        replicas=replicas,
        ready=replicas,
        updated=replicas,
        current=True,
    )


def judged(result: canary_analysis.Result) -> canary_analysis.Judgement:
    """A judgement as ``canary_analysis.judge`` makes it, with real-looking numbers."""
    stable = api.AnalysisNumbers(pods=3, requests=360.0, errorRate=0.00556, p95LatencySeconds=1.2)
    if result == "Inconclusive":
        canary = api.AnalysisNumbers(pods=1, requests=3.0, errorRate=0.0)
        return canary_analysis.Judgement(result, canary, stable, (), WAITING)
    if result == "Failed":
        canary = api.AnalysisNumbers(pods=1, requests=120.0, errorRate=0.25, p95LatencySeconds=1.5)
        return canary_analysis.Judgement(
            result, canary, stable, ("error rate 0.25 > 0.02",), FAILED
        )
    canary = api.AnalysisNumbers(pods=1, requests=120.0, errorRate=0.00833, p95LatencySeconds=1.3)
    return canary_analysis.Judgement(result, canary, stable, (), PASSED)


def status_of(decision: rollout.Decision) -> dict[str, Any]:
    assert decision.status is not None
    return decision.status


def phase_of(decision: rollout.Decision) -> tuple[str, str] | None:
    if decision.status is None:
        return None
    return decision.status["phase"], decision.status["reason"]


def reasons(decision: rollout.Decision) -> list[str]:
    return [event.reason for event in decision.events]


def shape(d: rollout.Decision) -> tuple[str, int, int, int, bool]:
    """What the reconcile renders: mode, canary and stable replicas, weight, both."""
    return d.mode, d.canary_replicas, d.stable_replicas, d.weight, d.both


def sizes(status: dict[str, Any]) -> tuple[int, float, int, int]:
    """status.rollout's weight, effectiveWeight, canaryReplicas and stableReplicas."""
    return (
        status["weight"],
        status["effectiveWeight"],
        status["canaryReplicas"],
        status["stableReplicas"],
    )


Tick = tuple[dict[str, Any] | None, rollout.Observed, rollout.Decision]


@dataclasses.dataclass
class Sim:
    """The clock, the Deployments and status.rollout, as one LlamaDeployment's reconciles
    see them. ``apply`` does to the Deployments what the reconcile does with a decision;
    the canary's pods pass their readiness probe while ``canary_up``."""

    policy: api.Rollout = dataclasses.field(default_factory=policy)
    replicas: int = 4
    gateway: bool = False
    desired: str = "B"
    now: int = T0
    primary: rollout.Variant = dataclasses.field(default_factory=lambda: serving("A", 4))
    canary: rollout.Variant = dataclasses.field(default_factory=rollout.Variant)
    canary_up: bool = True
    written: dict[str, Any] | None = None  # status.rollout as last written
    # Per tick: status.rollout as written before it, what it observed, what it decided.
    log: list[Tick] = dataclasses.field(default_factory=list)
    policies: list[api.Rollout] = dataclasses.field(default_factory=list)  # per tick

    @property
    def previous(self) -> api.RolloutStatus | None:
        return rollout.previous_of(self.written)

    def observe(
        self,
        *,
        judgement: canary_analysis.Judgement | None = None,
        action: rollout.Action | None = None,
        failure: str | None = None,
    ) -> rollout.Observed:
        canary = self.canary
        if canary.exists and self.canary_up:
            canary = dataclasses.replace(canary, ready=canary.replicas)
        return rollout.Observed(
            desired_revision=self.desired,
            primary=self.primary,
            canary=canary,
            replicas=self.replicas,
            gateway=self.gateway,
            now=float(self.now),
            wall=wall(self.now),
            canary_failure=failure,
            judgement=judgement,
            action=action,
        )

    def tick(
        self,
        after: int = 10,
        *,
        judgement: canary_analysis.Judgement | None = None,
        action: rollout.Action | None = None,
        failure: str | None = None,
    ) -> rollout.Decision:
        self.now += after
        observed = self.observe(judgement=judgement, action=action, failure=failure)
        decision = rollout.decide(self.policy, self.previous, observed)
        self.log.append((self.written, observed, decision))
        self.policies.append(self.policy)
        if decision.status is not None:
            self.written = decision.status
        self.apply(decision)
        return decision

    def at(self, t: int, **inputs: Any) -> rollout.Decision:
        """A tick at ``T0 + t``."""
        assert T0 + t > self.now
        return self.tick(T0 + t - self.now, **inputs)

    def apply(self, decision: rollout.Decision) -> None:
        n = self.replicas
        if decision.mode == "direct":
            self.canary = rollout.Variant()
            if self.primary.exists and self.primary.revision is not None:
                self.primary = serving(self.desired, n)
        elif decision.mode == "hold":
            self.canary = rollout.Variant()
            self.primary = serving(self.primary.revision, decision.stable_replicas)
        elif decision.mode == "canary":
            # The primary keeps its template, only its replicas follow; the canary runs
            # the newest spec (not Ready until its pods pass their probe).
            self.primary = serving(self.primary.revision, decision.stable_replicas)
            self.canary = rollout.Variant(
                exists=True,
                revision=self.desired,
                replicas=decision.canary_replicas,
                updated=decision.canary_replicas,
                current=True,
            )
        else:
            self.promote()

    def promote(self) -> None:
        """The primary takes the canary's template, one surge pod at a time, the last old
        pod still Ready until its replacement is; the canary serves meanwhile."""
        n = self.replicas
        if self.primary.revision != self.desired:
            self.primary = rollout.Variant(True, self.desired, n + 1, n, 1, True)
        elif self.primary.updated < n:
            self.primary = rollout.Variant(True, self.desired, n + 1, n, n, True)
        else:
            self.primary = serving(self.desired, n)

    def until(
        self, done: Callable[[rollout.Decision], bool], *, every: int = 10, limit: int = 200
    ) -> rollout.Decision:
        for _ in range(limit):
            decision = self.tick(every)
            if done(decision):
                return decision
        raise AssertionError("the rollout never got there")

    def to_step(self, index: int) -> rollout.Decision:
        """Run (Passed judgements on time) until the canary takes traffic at step ``index``."""
        if self.previous is None or self.previous.phase not in rollout.IN_PROGRESS:
            assert phase_of(self.tick()) == ("Starting", "CanaryStarting")
        while True:
            judgement = judged("Passed") if self.previous_in_traffic() else None
            decision = self.tick(10, judgement=judgement)
            status = status_of(decision)
            if status["phase"] in ("Progressing", "Paused") and status["step"] == index:
                return decision
            assert status["step"] < index, status

    def previous_at(self, index: int) -> api.RolloutStatus | None:
        """The ``previous`` the tick ``index`` decided from."""
        return rollout.previous_of(self.log[index][0])

    def previous_in_traffic(self) -> bool:
        return rollout.should_measure(self.previous, self.desired)


# --- split and effective_weight ------------------------------------------------------


class TestSplit:
    @pytest.mark.parametrize(
        ("replicas", "weight", "expected"),
        [
            (4, 10, (1, 3)),  # 0.4 rounds to 0: still one canary
            (4, 50, (2, 2)),
            (10, 25, (3, 7)),  # 2.5: ties go up
            (10, 24, (2, 8)),
            (3, 50, (2, 1)),  # 1.5 rounds up
            (1, 50, (1, 1)),  # beside a single stable pod: one more pod than replicas
            (0, 10, (1, 1)),
            (4, 90, (3, 1)),  # 3.6 rounds to 4, but one stable pod stays: 3 and 1
            (2, 99, (1, 1)),
            (100, 99, (99, 1)),
        ],
    )
    def test_examples(self, replicas: int, weight: int, expected: tuple[int, int]) -> None:
        assert rollout.split(replicas, weight) == expected

    @hypothesis.given(st.integers(0, 1000), st.integers(1, 99))
    def test_at_least_one_each_and_the_endpoints_count(self, replicas: int, weight: int) -> None:
        canary, stable = rollout.split(replicas, weight)
        assert canary >= 1
        assert stable >= 1
        assert canary <= max(replicas, 1)
        assert canary + stable == max(replicas, 2)
        if replicas >= 2:
            # Nearest to weight% of replicas, ties up (integer arithmetic: no float
            # rounding), clamped so that one stable pod stays.
            nearest = (2 * replicas * weight + 100) // 200
            assert canary == min(max(nearest, 1), replicas - 1)
            assert abs(canary - replicas * weight / 100) <= 0.5 or canary in (1, replicas - 1)

    @hypothesis.given(st.integers(2, 1000), st.integers(1, 98))
    def test_monotonic_in_the_weight(self, replicas: int, weight: int) -> None:
        assert rollout.split(replicas, weight)[0] <= rollout.split(replicas, weight + 1)[0]


class TestEffectiveWeight:
    @pytest.mark.parametrize(
        ("gateway", "weight", "canary", "stable", "expected"),
        [
            (True, 10, 1, 9, 10.0),  # the route carries the weight
            (True, 10, 0, 9, 0.0),  # ... once a canary pod is Ready
            (False, 10, 1, 3, 25.0),  # else the canary's share of the Ready pods
            (False, 50, 1, 2, 33.3),
            (False, 50, 0, 2, 0.0),
        ],
    )
    def test_examples(
        self, gateway: bool, weight: int, canary: int, stable: int, expected: float
    ) -> None:
        assert (
            rollout.effective_weight(
                gateway=gateway, weight=weight, canary_ready=canary, stable_ready=stable
            )
            == expected
        )


# --- 1. the happy path ----------------------------------------------------------------


class TestHappyPath:
    def test_through_every_step_to_completed(self) -> None:
        sim = Sim(canary_up=False)
        starting = (
            "canary of revision B created from the latest spec beside the stable revision A; "
            "waiting up to 10m for it to be Ready"
        )

        d = sim.at(10)
        assert shape(d) == ("canary", 1, 4, 0, False)
        assert d.events == (Event("Normal", "RolloutStarted", starting),)
        assert d.status == {
            "phase": "Starting",
            "reason": "CanaryStarting",
            "message": starting,
            "stableRevision": "A",
            "canaryRevision": "B",
            "step": 0,
            "steps": 2,
            "weight": 0,
            "effectiveWeight": 0.0,
            "canaryReplicas": 1,
            "stableReplicas": 4,
            "failures": 0,
            "stepPasses": 0,
            "startedAt": wall(T0 + 10),
            "lastTransitionTime": wall(T0 + 10),
            "analysis": [],
        }
        assert d.checks == (Check("Rollout", "True", "CanaryStarting", starting),)
        assert d.removed == ("RolledBack",)
        assert d.held is None
        assert d.canary_exists

        # The canary's pods load the model: nothing moves, the stable keeps every replica.
        d = sim.at(20)
        assert d.events == ()
        assert d.status == sim.log[0][2].status
        assert (d.mode, d.canary_replicas, d.stable_replicas, d.both) == ("canary", 1, 4, False)

        sim.canary_up = True
        d = sim.at(30)
        assert reasons(d) == ["CanaryReady"]
        assert d.events[0].message == "the canary is Ready: step 1/2"
        s = status_of(d)
        assert (s["phase"], s["reason"], s["step"], s["weight"]) == ("Progressing", "Step", 0, 10)
        assert s["stepStartedAt"] == s["lastTransitionTime"] == wall(T0 + 30)
        assert s["startedAt"] == wall(T0 + 10)
        assert s["message"] == (
            "step 1/2, 10% of traffic on the canary, 60s of 1m left; "
            "0 passed judgement(s) at this step, 0/1 failed in all"
        )
        assert shape(d) == ("canary", 1, 3, 10, True)
        # 1 canary pod beside the 4 stable pods still running before the resize.
        assert s["effectiveWeight"] == 20.0
        assert d.checks == (Check("Rollout", "True", "Step", s["message"]),)

        d = sim.at(60, judgement=judged("Passed"))
        s = status_of(d)
        assert d.events == ()
        assert s["effectiveWeight"] == 25.0  # 1 canary pod beside 3 stable ones
        assert s["stepPasses"] == 1
        assert s["analysis"] == [
            {
                "time": wall(T0 + 60),
                "step": 0,
                "result": "Passed",
                "canary": {
                    "pods": 1,
                    "requests": 120.0,
                    "errorRate": 0.00833,
                    "p95LatencySeconds": 1.3,
                },
                "stable": {
                    "pods": 3,
                    "requests": 360.0,
                    "errorRate": 0.00556,
                    "p95LatencySeconds": 1.2,
                },
                "message": PASSED,
            }
        ]
        assert "30s of 1m left; 1 passed judgement(s)" in s["message"]

        d = sim.at(89)
        assert status_of(d)["step"] == 0
        assert "1s of 1m left" in status_of(d)["message"]

        d = sim.at(90)
        assert d.events == (
            Event("Normal", "StepPassed", "step 1/2 passed; step 2: 50% of traffic on the canary"),
        )
        s = status_of(d)
        assert (s["phase"], s["step"], s["stepPasses"], s["weight"]) == ("Progressing", 1, 0, 50)
        assert s["stepStartedAt"] == wall(T0 + 90)
        assert s["lastTransitionTime"] == wall(T0 + 30)  # still Progressing
        assert "step 2/2, 50% of traffic on the canary, 120s of 2m left" in s["message"]
        assert shape(d) == ("canary", 2, 2, 50, True)
        assert len(s["analysis"]) == 1

        d = sim.at(150)
        assert status_of(d)["effectiveWeight"] == 50.0  # 2 and 2 pods now
        assert d.events == ()

        d = sim.at(210)
        promoting = (
            "every step passed: the primary takes revision B; the canary serves until every "
            "primary pod runs it"
        )
        assert d.events == (Event("Normal", "Promoting", promoting),)
        s = status_of(d)
        assert (s["phase"], s["reason"], s["message"]) == ("Promoting", "Promoting", promoting)
        assert s["lastTransitionTime"] == wall(T0 + 210)
        assert shape(d) == ("promote", 2, 4, 50, True)
        assert d.checks == (Check("Rollout", "True", "Promoting", promoting),)

        # The primary rolls to B one surge pod at a time; not done while an old pod remains.
        d = sim.at(220)
        assert d.mode == "promote"
        assert d.events == ()
        assert status_of(d)["message"] == (
            "the primary takes revision B: 1/4 updated, 4 ready; the canary serves until it is done"
        )
        d = sim.at(230)
        assert (d.mode, phase_of(d)) == ("promote", ("Promoting", "Promoting"))
        assert "4/4 updated, 4 ready" in status_of(d)["message"]

        d = sim.at(240)
        done = "revision B promoted: every primary pod runs it"
        assert d.mode == "direct"
        assert d.events == (Event("Normal", "Promoted", done),)
        s = status_of(d)
        assert (s["phase"], s["reason"], s["message"]) == ("Completed", "Promoted", done)
        assert sizes(s) == (0, 0.0, 0, 4)
        assert (s["stableRevision"], s["canaryRevision"]) == ("A", "B")
        assert s["lastTransitionTime"] == wall(T0 + 240)
        assert d.checks == (Check("Rollout", "False", "Completed", done),)
        assert d.removed == ("RolledBack",)
        assert (d.canary_replicas, d.weight, d.both, d.canary_exists) == (0, 0, False, False)

        # Settled: nothing more to write, the condition stays.
        d = sim.at(250)
        assert (d.mode, d.status, d.events) == ("direct", None, ())
        assert d.checks == (Check("Rollout", "False", "Completed", done),)
        assert d.removed == ("RolledBack",)

        assert [r for _, _, x in sim.log for r in reasons(x)] == [
            "RolloutStarted",
            "CanaryReady",
            "StepPassed",
            "Promoting",
            "Promoted",
        ]
        assert [x.mode for _, _, x in sim.log] == [
            *["canary"] * 7,
            *["promote"] * 3,
            *["direct"] * 2,
        ]

    def test_with_a_gateway_the_route_carries_the_weights(self) -> None:
        sim = Sim(gateway=True)
        modes = []
        while True:
            d = sim.tick(30)
            modes.append(d.mode)
            assert not d.both  # the entry Service keeps selecting the primary alone
            s = status_of(d) if d.status is not None else None
            if s is not None and s["phase"] in ("Progressing", "Paused", "Promoting"):
                assert s["effectiveWeight"] == float(d.weight) == float(s["weight"])
                assert d.weight in (10, 50)
            if d.mode == "direct":
                break
        assert modes[0] == "canary"
        assert "promote" in modes
        assert phase_of(d) == ("Completed", "Promoted")

    def test_the_replica_split_follows_spec_replicas(self) -> None:
        sim = Sim(replicas=10, primary=serving("A", 10))
        d = sim.to_step(0)
        assert (d.canary_replicas, d.stable_replicas) == (1, 9)
        sim.replicas = 20
        d = sim.tick()
        assert (d.canary_replicas, d.stable_replicas) == (2, 18)
        d = sim.to_step(1)
        assert (d.canary_replicas, d.stable_replicas) == (10, 10)

    def test_a_single_replica_gets_one_canary_pod_beside_it(self) -> None:
        sim = Sim(replicas=1, primary=serving("A", 1))
        d = sim.tick()
        assert (d.canary_replicas, d.stable_replicas) == (1, 1)
        d = sim.tick()
        assert phase_of(d) == ("Progressing", "Step")
        assert (d.canary_replicas, d.stable_replicas, d.weight) == (1, 1, 10)
        assert status_of(d)["effectiveWeight"] == 50.0  # half the pods: the status says so


# --- 2. a failed analysis rolls back --------------------------------------------------


class TestAnalysisFailure:
    @pytest.mark.parametrize("step", [0, 1])
    def test_one_failure_rolls_back_at_any_step(self, step: int) -> None:
        sim = Sim()
        sim.to_step(step)
        d = sim.tick(judgement=judged("Failed"))
        message = f"revision B rolled back at step {step + 1}/2 (AnalysisFailed): {FAILED}"
        assert d.mode == "hold"
        assert d.events == (Event("Warning", "RolledBack", message + HINT),)
        s = status_of(d)
        assert (s["phase"], s["reason"], s["message"]) == ("RolledBack", "AnalysisFailed", message)
        assert (s["failures"], s["step"]) == (1, step)
        assert (s["canaryRevision"], s["stableRevision"]) == ("B", "A")
        assert sizes(s) == (0, 0.0, 0, 4)
        assert s["analysis"][-1]["result"] == "Failed"
        assert s["analysis"][-1]["step"] == step
        assert s["analysis"][-1]["message"] == FAILED
        assert d.checks == (
            Check("Rollout", "False", "RolledBack", message),
            Check("RolledBack", "True", "AnalysisFailed", message),
        )
        assert d.removed == ()
        assert d.held == message + HINT
        assert (d.canary_replicas, d.stable_replicas, d.weight, d.both) == (0, 4, 0, False)
        assert not d.canary_exists

        # Held on every later tick, quietly, whatever the clock says.
        for after in (10, 3600, 86400):
            again = sim.tick(after)
            assert (again.mode, again.events, again.held) == ("hold", (), message + HINT)
            assert again.status == d.status
            assert again.checks == d.checks
        assert not sim.canary.exists
        assert sim.primary == serving("A", 4)

    @pytest.mark.parametrize("step", [0, 1])
    def test_below_the_failure_limit_a_failure_only_warns(self, step: int) -> None:
        sim = Sim(policy=policy(failure_limit=2))
        sim.to_step(step)
        d = sim.tick(judgement=judged("Failed"))
        assert d.mode == "canary"
        assert d.events == (Event("Warning", "AnalysisFailed", f"judgement 1/2 failed: {FAILED}"),)
        s = status_of(d)
        assert (s["phase"], s["step"], s["failures"]) == ("Progressing", step, 1)
        assert "1/2 failed in all" in s["message"]
        assert d.held is None

        d = sim.tick(judgement=judged("Failed"))
        assert d.mode == "hold"
        assert reasons(d) == ["RolledBack"]
        assert phase_of(d) == ("RolledBack", "AnalysisFailed")
        assert status_of(d)["failures"] == 2
        assert [run["result"] for run in status_of(d)["analysis"]][-2:] == ["Failed", "Failed"]

    def test_the_failure_limit_counts_over_the_whole_rollout(self) -> None:
        sim = Sim(policy=policy(failure_limit=2))
        sim.to_step(0)
        assert reasons(sim.tick(judgement=judged("Failed"))) == ["AnalysisFailed"]
        sim.to_step(1)  # a new step does not forgive
        d = sim.tick(judgement=judged("Failed"))
        assert phase_of(d) == ("RolledBack", "AnalysisFailed")
        assert "at step 2/2" in status_of(d)["message"]

    def test_a_failure_while_paused_or_waiting_still_rolls_back(self) -> None:
        for sim in (
            Sim(policy=policy(paused=True)),
            Sim(policy=policy((10, None))),
            Sim(policy=policy(min_requests=20)),
        ):
            sim.to_step(0)
            d = sim.tick(3600)
            assert phase_of(d) in (
                ("Paused", "Paused"),
                ("Paused", "WaitingForPromote"),
                ("Paused", "Inconclusive"),
            )
            d = sim.tick(judgement=judged("Failed"))
            assert (d.mode, phase_of(d)) == ("hold", ("RolledBack", "AnalysisFailed"))

    def test_the_analysis_history_keeps_the_last_runs(self) -> None:
        sim = Sim(policy=policy((10, None), min_requests=20))
        sim.to_step(0)
        for _ in range(rollout.HISTORY + 5):
            d = sim.tick(judgement=judged("Inconclusive"))
        runs = status_of(d)["analysis"]
        assert len(runs) == rollout.HISTORY
        assert runs[-1]["time"] == wall(sim.now)
        assert runs[0]["time"] == wall(sim.now - 10 * (rollout.HISTORY - 1))
        assert {run["result"] for run in runs} == {"Inconclusive"}
        assert status_of(d)["stepPasses"] == 0
        assert status_of(d)["failures"] == 0


# --- 3. a crashed, OOM-killed or never Ready canary -----------------------------------


def pod(name: str, **container: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": name},
        "status": {"containerStatuses": [{"name": "engine", "ready": False, **container}]},
    }


HEALTHY = pod("chat-canary-1", ready=True, restartCount=0, state={"running": {}})


class TestPodFailure:
    def test_healthy_and_starting_pods_are_no_failure(self) -> None:
        starting = pod("chat-canary-2", state={"waiting": {"reason": "ContainerCreating"}})
        no_status: dict[str, Any] = {"metadata": {"name": "chat-canary-3"}}
        assert rollout.pod_failure([]) is None
        assert rollout.pod_failure([HEALTHY, starting, no_status]) is None

    def test_a_clean_restart_is_no_failure(self) -> None:
        restarted = pod(
            "chat-canary-1",
            restartCount=1,
            state={"running": {}},
            lastState={"terminated": {"exitCode": 0, "reason": "Completed"}},
        )
        assert rollout.pod_failure([restarted]) is None

    def test_oom_killed_now_or_before(self) -> None:
        last = pod(
            "chat-canary-1",
            restartCount=1,
            state={"running": {}},
            lastState={"terminated": {"exitCode": 137, "reason": "OOMKilled"}},
        )
        now = pod("chat-canary-2", state={"terminated": {"exitCode": 137, "reason": "OOMKilled"}})
        expected = (
            "pod {}: container engine was OOMKilled (out of memory): the new spec does not fit "
            "what it was planned on"
        )
        assert rollout.pod_failure([HEALTHY, last]) == expected.format("chat-canary-1")
        assert rollout.pod_failure([now]) == expected.format("chat-canary-2")

    def test_crash_loop_and_image_pull(self) -> None:
        crash = pod(
            "chat-canary-1",
            restartCount=4,
            state={"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 40s"}},
            lastState={"terminated": {"exitCode": 1, "reason": "Error"}},
        )
        assert rollout.pod_failure([crash]) == (
            "pod chat-canary-1: container engine is in CrashLoopBackOff (back-off 40s)"
        )
        pull = pod("chat-canary-2", state={"waiting": {"reason": "ImagePullBackOff"}})
        assert rollout.pod_failure([HEALTHY, pull]) == (
            "pod chat-canary-2: container engine is in ImagePullBackOff"
        )
        long = pod("p", state={"waiting": {"reason": "ErrImagePull", "message": "x" * 500}})
        assert rollout.pod_failure([long]) == (
            f"pod p: container engine is in ErrImagePull ({'x' * 200})"
        )

    def test_a_restart_after_a_non_zero_exit(self) -> None:
        restarted = pod(
            "chat-canary-1",
            restartCount=2,
            state={"running": {}},
            lastState={"terminated": {"exitCode": 1, "reason": "Error"}},
        )
        assert rollout.pod_failure([restarted]) == (
            "pod chat-canary-1: container engine exited with code 1 (Error) and restarted 2 time(s)"
        )

    def test_init_containers_count_too(self) -> None:
        broken = {
            "metadata": {"name": "chat-canary-1"},
            "status": {
                "initContainerStatuses": [
                    {"name": "fetch", "state": {"waiting": {"reason": "CrashLoopBackOff"}}}
                ],
                "containerStatuses": [{"name": "engine", "state": {"waiting": {}}}],
            },
        }
        assert rollout.pod_failure([broken]) == (
            "pod chat-canary-1: container fetch is in CrashLoopBackOff"
        )


CRASH = "pod chat-canary-1: container engine is in CrashLoopBackOff"


class TestCanaryFailure:
    @pytest.mark.parametrize(
        ("where", "step"), [("Starting", 1), ("Paused", 1), ("Progressing", 2)]
    )
    def test_a_crashed_canary_rolls_back_at_once(self, where: str, step: int) -> None:
        # Step 1 has no pause (Paused, waiting for "next"); step 2 has one.
        sim = Sim(policy=policy((10, None), (50, "2m")), canary_up=where != "Starting")
        d = sim.tick()
        if where != "Starting":
            d = sim.tick()
            assert phase_of(d) == ("Paused", "WaitingForPromote")
        if where == "Progressing":
            d = sim.tick(action="next")
        assert status_of(d)["phase"] == where
        d = sim.tick(failure=CRASH)
        message = f"revision B rolled back at step {step}/2 (CanaryFailed): {CRASH}"
        assert d.mode == "hold"
        assert d.events == (Event("Warning", "RolledBack", message + HINT),)
        assert phase_of(d) == ("RolledBack", "CanaryFailed")
        assert status_of(d)["message"] == message
        assert d.checks == (
            Check("Rollout", "False", "RolledBack", message),
            Check("RolledBack", "True", "CanaryFailed", message),
        )
        assert d.held == message + HINT
        assert (d.canary_replicas, d.stable_replicas) == (0, 4)

    def test_never_ready_within_the_ready_timeout(self) -> None:
        sim = Sim(canary_up=False)
        sim.at(10)
        d = sim.at(609)
        assert (d.mode, phase_of(d)) == ("canary", ("Starting", "CanaryStarting"))
        d = sim.at(610)
        message = (
            "revision B rolled back at step 1/2 (CanaryNotReady): the canary was not Ready "
            "within spec.rollout.readyTimeout (10m): 0/1 ready"
        )
        assert d.mode == "hold"
        assert d.events == (Event("Warning", "RolledBack", message + HINT),)
        assert status_of(d)["message"] == message
        assert phase_of(d) == ("RolledBack", "CanaryNotReady")

    def test_a_progress_deadline_rolls_back_before_the_timeout(self) -> None:
        sim = Sim(canary_up=False)
        sim.tick()
        sim.canary = dataclasses.replace(sim.canary, deadline_exceeded=True)
        d = sim.tick()
        assert (d.mode, phase_of(d)) == ("hold", ("RolledBack", "CanaryNotReady"))

    def test_a_deadline_left_over_from_an_older_template_does_not_count(self) -> None:
        # The spec changed while the canary of B was stuck: until the Deployment
        # controller has seen C's template, the condition is B's.
        sim = Sim(canary_up=False)
        sim.tick()
        sim.desired = "C"
        d = sim.tick()
        assert reasons(d) == ["RolloutRestarted"]
        sim.canary = dataclasses.replace(sim.canary, current=False, deadline_exceeded=True)
        d = sim.tick()
        assert (d.mode, phase_of(d)) == ("canary", ("Starting", "CanaryStarting"))
        sim.canary = dataclasses.replace(sim.canary, current=True, deadline_exceeded=True)
        d = sim.tick()
        assert phase_of(d) == ("RolledBack", "CanaryNotReady")

    def test_ready_only_once_no_pod_of_an_older_template_is_left(self) -> None:
        # The canary of B served; the spec moved to C: the canary Deployment surges one
        # C pod (loading) beside the Ready B pod. That is not a Ready canary of C.
        sim = Sim()
        sim.to_step(0)
        sim.desired = "C"
        d = sim.tick()
        assert phase_of(d) == ("Starting", "CanaryStarting")
        sim.canary_up = False
        sim.canary = rollout.Variant(True, "C", replicas=2, ready=1, updated=1, current=True)
        d = sim.tick()
        assert phase_of(d) == ("Starting", "CanaryStarting")
        sim.canary = serving("C", 1)
        d = sim.tick()
        assert reasons(d) == ["CanaryReady"]

    def test_the_canary_of_another_revision_is_not_ready(self) -> None:
        sim = Sim()
        sim.tick()
        sim.canary_up = False
        sim.canary = serving("Z", 1)
        assert phase_of(sim.tick()) == ("Starting", "CanaryStarting")
        sim.canary = dataclasses.replace(serving("B", 1), current=False)
        assert phase_of(sim.tick()) == ("Starting", "CanaryStarting")


# --- 4. manual controls ---------------------------------------------------------------


class TestManualControls:
    def test_promote_from_starting(self) -> None:
        sim = Sim(canary_up=False)
        sim.tick()
        d = sim.tick(action="promote")
        message = (
            "promoted by the llamaops.dev/rollout annotation: the primary takes revision B; the "
            "canary serves until every primary pod runs it"
        )
        assert d.events == (Event("Normal", "Promoting", message),)
        assert (d.mode, phase_of(d)) == ("promote", ("Promoting", "Promoting"))
        assert (d.canary_replicas, d.stable_replicas, d.weight) == (1, 4, 10)
        d = sim.until(lambda x: x.mode == "direct")
        assert phase_of(d) == ("Completed", "Promoted")

    @pytest.mark.parametrize("step", [0, 1])
    def test_promote_from_a_step(self, step: int) -> None:
        sim = Sim()
        sim.to_step(step)
        d = sim.tick(action="promote", judgement=judged("Passed"))
        assert reasons(d) == ["Promoting"]
        assert (d.mode, phase_of(d)) == ("promote", ("Promoting", "Promoting"))
        assert status_of(d)["step"] == step
        assert status_of(d)["analysis"][-1]["result"] == "Passed"  # recorded all the same
        assert phase_of(sim.until(lambda x: x.mode == "direct")) == ("Completed", "Promoted")

    @pytest.mark.parametrize("where", ["Starting", 0, 1])
    def test_abort(self, where: str | int) -> None:
        sim = Sim(canary_up=where != "Starting")
        if where == "Starting":
            sim.tick()
        else:
            assert isinstance(where, int)
            sim.to_step(where)
        d = sim.tick(action="abort")
        step = 1 if where == "Starting" else int(where) + 1
        message = (
            f"revision B rolled back at step {step}/2 (ManualAbort): aborted by the "
            "llamaops.dev/rollout annotation"
        )
        assert d.mode == "hold"
        assert d.events == (Event("Warning", "RolledBack", message + HINT),)
        assert phase_of(d) == ("RolledBack", "ManualAbort")
        assert d.checks[1] == Check("RolledBack", "True", "ManualAbort", message)

    def test_next_ends_a_step_early(self) -> None:
        sim = Sim()
        d = sim.to_step(0)
        started = sim.now
        d = sim.tick(action="next")
        assert sim.now - started < 60
        assert reasons(d) == ["StepPassed"]
        assert status_of(d)["step"] == 1
        d = sim.tick(action="next")
        assert reasons(d) == ["Promoting"]
        assert status_of(d)["message"].startswith("every step passed: ")

    def test_a_step_without_pause_waits_for_next(self) -> None:
        sim = Sim(policy=policy((10, None), (50, None)))
        d = sim.to_step(0)
        assert phase_of(d) == ("Paused", "WaitingForPromote")
        assert status_of(d)["message"] == (
            "step 1/2, 10% of traffic on the canary: this step has no pause; annotate "
            "llamaops.dev/rollout=next or =promote to go on; 0 passed judgement(s) at this "
            "step, 0/1 failed in all"
        )
        assert d.checks == (Check("Rollout", "True", "WaitingForPromote", status_of(d)["message"]),)
        for after in (60, 3600, 86400):
            d = sim.tick(after, judgement=judged("Passed"))
            assert phase_of(d) == ("Paused", "WaitingForPromote")
            assert status_of(d)["step"] == 0
            assert d.events == ()
            assert (d.mode, d.weight, d.both) == ("canary", 10, True)
        d = sim.tick(action="next")
        assert reasons(d) == ["StepPassed"]
        assert phase_of(d) == ("Paused", "WaitingForPromote")
        assert status_of(d)["step"] == 1
        assert status_of(d)["stepPasses"] == 0
        d = sim.tick(86400)
        assert status_of(d)["step"] == 1
        d = sim.tick(action="next")
        assert (d.mode, reasons(d)) == ("promote", ["Promoting"])

    def test_paused_holds_the_step_until_resumed(self) -> None:
        sim = Sim(policy=policy(paused=True))
        d = sim.to_step(0)
        message = (
            "step 1/2, 10% of traffic on the canary: paused by spec.rollout.paused (analysis "
            "goes on); 0 passed judgement(s) at this step, 0/1 failed in all"
        )
        assert status_of(d)["message"] == message
        assert phase_of(d) == ("Paused", "Paused")
        assert d.checks == (Check("Rollout", "True", "Paused", message),)
        for after in (60, 600, 3600):
            d = sim.tick(after, judgement=judged("Passed"))
            assert phase_of(d) == ("Paused", "Paused")
            assert status_of(d)["step"] == 0
            assert d.events == ()
        assert status_of(d)["stepPasses"] == 3
        sim.policy = policy()
        d = sim.tick()
        assert reasons(d) == ["StepPassed"]
        assert phase_of(d) == ("Progressing", "Step")
        assert status_of(d)["step"] == 1
        assert status_of(d)["lastTransitionTime"] == wall(sim.now)

    def test_paused_before_the_canary_is_ready(self) -> None:
        sim = Sim(policy=policy(paused=True), canary_up=False)
        assert phase_of(sim.tick()) == ("Starting", "CanaryStarting")
        sim.canary_up = True
        d = sim.tick()
        assert reasons(d) == ["CanaryReady"]
        assert phase_of(d) == ("Paused", "Paused")

    def test_next_works_while_paused(self) -> None:
        sim = Sim(policy=policy(paused=True))
        sim.to_step(0)
        d = sim.tick(action="next")
        assert reasons(d) == ["StepPassed"]
        assert phase_of(d) == ("Paused", "Paused")
        assert status_of(d)["step"] == 1

    def test_retry_restarts_the_same_revision(self) -> None:
        sim = Sim(policy=policy(failure_limit=2))
        sim.to_step(1)
        sim.tick(judgement=judged("Failed"))
        sim.tick(judgement=judged("Failed"))
        for after in (10, 3600):
            d = sim.tick(after)
            assert (d.mode, d.events) == ("hold", ())
        d = sim.tick(action="retry")
        message = (
            "canary of revision B created from the latest spec beside the stable revision A; "
            "waiting up to 10m for it to be Ready"
        )
        assert d.events == (Event("Normal", "RolloutRetried", f"retrying revision B: {message}"),)
        assert (d.mode, d.canary_replicas, d.stable_replicas, d.held) == ("canary", 1, 4, None)
        s = status_of(d)
        assert (s["phase"], s["reason"]) == ("Starting", "CanaryStarting")
        assert (s["step"], s["failures"], s["analysis"]) == (0, 0, [])
        assert s["startedAt"] == wall(sim.now)
        assert d.removed == ("RolledBack",)
        assert d.checks == (Check("Rollout", "True", "CanaryStarting", message),)
        d = sim.until(lambda x: x.mode == "direct", every=30)
        assert phase_of(d) == ("Completed", "Promoted")

    @pytest.mark.parametrize("action", ["promote", "next", "abort"])
    def test_other_actions_leave_a_rollback_held(self, action: rollout.Action) -> None:
        sim = Sim()
        sim.to_step(0)
        held = sim.tick(judgement=judged("Failed"))
        d = sim.tick(action=action)
        assert (d.mode, d.events, d.status, d.held) == ("hold", (), held.status, held.held)

    def test_retry_during_a_rollout_does_nothing(self) -> None:
        sim = Sim()
        before = sim.to_step(0)
        d = sim.tick(action="retry")
        assert d.events == ()
        assert status_of(d)["startedAt"] == status_of(before)["startedAt"]
        assert status_of(d)["step"] == 0

    def test_a_new_revision_after_a_rollback_starts_afresh(self) -> None:
        sim = Sim()
        sim.to_step(0)
        sim.tick(judgement=judged("Failed"))
        sim.desired = "C"
        d = sim.tick()
        assert reasons(d) == ["RolloutStarted"]
        assert d.removed == ("RolledBack",)
        s = status_of(d)
        assert (s["phase"], s["canaryRevision"], s["stableRevision"]) == ("Starting", "C", "A")
        assert (s["failures"], s["analysis"]) == (0, [])
        d = sim.until(lambda x: x.mode == "direct", every=30)
        assert phase_of(d) == ("Completed", "Promoted")
        assert sim.primary == serving("C", 4)

    def test_a_rollback_held_follows_spec_replicas_down_to_zero(self) -> None:
        sim = Sim()
        sim.to_step(0)
        d = sim.tick(judgement=judged("Failed"))
        assert d.stable_replicas == 4
        sim.replicas = 0  # scaled to zero (KEDA, through /scale)
        d = sim.tick()
        assert (d.mode, d.stable_replicas, status_of(d)["stableReplicas"]) == ("hold", 0, 0)
        sim.replicas = 2
        d = sim.tick()
        assert (d.mode, d.stable_replicas) == ("hold", 2)


# --- 5. the spec changes during the rollout -------------------------------------------


def reach(sim: Sim, where: str) -> rollout.Decision:
    """Drive ``sim`` into ``where``, with a Failed and a Passed judgement on record."""
    sim.policy = policy(failure_limit=3)
    if where == "Starting":
        sim.canary_up = False
        return sim.tick()
    d = sim.to_step(0)
    d = sim.tick(judgement=judged("Failed"))
    d = sim.tick(judgement=judged("Passed"))
    if where == "Progressing":
        assert phase_of(d) == ("Progressing", "Step")
        return d
    d = sim.tick(action="promote")
    assert phase_of(d) == ("Promoting", "Promoting")
    return d


class TestSpecChange:
    @pytest.mark.parametrize("where", ["Starting", "Progressing", "Promoting"])
    def test_a_new_revision_restarts_the_rollout(self, where: str) -> None:
        sim = Sim()
        before = reach(sim, where)
        assert status_of(before)["phase"] == where
        stable = sim.primary.revision  # B once the primary took the promoted template
        assert stable == ("B" if where == "Promoting" else "A")
        sim.desired = "C"
        sim.canary_up = True
        d = sim.tick()
        message = (
            f"canary of revision C created from the latest spec beside the stable revision "
            f"{stable}; waiting up to 10m for it to be Ready"
        )
        assert d.events == (
            Event(
                "Normal",
                "RolloutRestarted",
                f"the spec changed during the rollout of B: {message}",
            ),
        )
        assert d.mode == "canary"
        s = status_of(d)
        assert (s["phase"], s["reason"], s["message"]) == ("Starting", "CanaryStarting", message)
        assert (s["canaryRevision"], s["stableRevision"]) == ("C", stable)
        assert (s["step"], s["failures"], s["stepPasses"], s["analysis"]) == (0, 0, 0, [])
        assert (s["startedAt"], s["weight"], s["effectiveWeight"]) == (wall(sim.now), 0, 0.0)
        assert "stepStartedAt" not in s
        assert (d.canary_replicas, d.stable_replicas, d.both) == (1, 4, False)
        # ... and it goes on for C alone.
        d = sim.until(lambda x: x.mode == "direct", every=30)
        assert phase_of(d) == ("Completed", "Promoted")
        assert sim.primary == serving("C", 4)

    @pytest.mark.parametrize("where", ["Starting", "Progressing"])
    def test_back_to_the_stable_revision_cancels(self, where: str) -> None:
        sim = Sim()
        if where == "Starting":
            reach(sim, where)
        else:
            sim.to_step(0)
        sim.desired = "A"
        d = sim.tick()
        message = "the spec is back at the stable revision A"
        assert d.mode == "direct"
        assert d.events == (Event("Normal", "SpecReverted", message),)
        s = status_of(d)
        assert (s["phase"], s["reason"], s["message"]) == ("Cancelled", "SpecReverted", message)
        assert sizes(s) == (0, 0.0, 0, 4)
        assert d.checks == (Check("Rollout", "False", "Cancelled", message),)
        assert d.removed == ("RolledBack",)
        assert (d.canary_exists, d.both, d.weight) == (False, False, 0)
        d = sim.tick()
        assert (d.mode, d.status, d.events) == ("direct", None, ())
        assert d.checks == (Check("Rollout", "False", "Cancelled", message),)

    def test_back_to_the_stable_revision_while_promoting(self) -> None:
        # Before the primary took the canary's template, the stable revision is still what
        # runs: cancelled. Once it did, the old revision is a change like any other.
        sim = Sim()
        reach(sim, "Promoting")
        assert sim.previous is not None
        o = dataclasses.replace(sim.observe(), desired_revision="A", primary=serving("A", 4))
        d = rollout.decide(sim.policy, sim.previous, o)
        assert (d.mode, phase_of(d)) == ("direct", ("Cancelled", "SpecReverted"))
        sim.desired = "A"
        d = sim.tick()
        assert (d.mode, reasons(d)) == ("canary", ["RolloutRestarted"])
        assert phase_of(d) == ("Starting", "CanaryStarting")
        assert (status_of(d)["canaryRevision"], status_of(d)["stableRevision"]) == ("A", "B")

    def test_back_to_the_stable_revision_after_a_rollback(self) -> None:
        sim = Sim()
        sim.to_step(0)
        sim.tick(judgement=judged("Failed"))
        sim.desired = "A"
        d = sim.tick()
        assert (d.mode, reasons(d)) == ("direct", ["SpecReverted"])
        assert phase_of(d) == ("Cancelled", "SpecReverted")
        assert d.removed == ("RolledBack",)
        assert d.held is None

    @pytest.mark.parametrize("where", ["Starting", "Progressing", "Promoting"])
    def test_strategy_rolling_cancels(self, where: str) -> None:
        sim = Sim()
        reach(sim, where)
        sim.policy = policy(strategy="Rolling")
        d = sim.tick()
        message = (
            "spec.rollout.strategy is Rolling: the newest spec is applied to the primary directly"
        )
        assert d.mode == "direct"
        assert d.events == (Event("Normal", "Cancelled", message),)
        assert phase_of(d) == ("Cancelled", "Cancelled")
        assert status_of(d)["message"] == message
        assert d.checks == (Check("Rollout", "False", "Cancelled", message),)
        assert not d.canary_exists
        d = sim.tick()
        assert (d.mode, d.status, d.events) == ("direct", None, ())
        assert sim.primary == serving("B", 4)

    def test_the_primary_gone_cancels(self) -> None:
        sim = Sim()
        sim.to_step(0)
        sim.primary = rollout.Variant()
        d = sim.tick()
        assert (d.mode, phase_of(d)) == ("direct", ("Cancelled", "Cancelled"))
        assert status_of(d)["message"] == (
            "the primary Deployment is gone: the newest spec is applied to the primary directly"
        )


# --- 6. an operator restart continues from status.rollout -----------------------------


def eventful() -> Sim:
    """Every phase: a rollout that waits, pauses, completes; one rolled back; one reverted."""
    sim = Sim(policy=policy(min_requests=20, failure_limit=2), canary_up=False)
    sim.at(10)
    sim.canary_up = True
    sim.at(20)
    sim.at(50, judgement=judged("Inconclusive"))
    sim.at(80, judgement=judged("Failed"))
    sim.at(90)  # Paused/Inconclusive: the pause is over, nothing passed
    sim.at(100, judgement=judged("Passed"))
    sim.policy = policy(min_requests=20, failure_limit=2, paused=True)
    sim.at(230)
    sim.policy = policy(min_requests=20, failure_limit=2)
    sim.at(240, judgement=judged("Passed"))
    sim.at(250)  # Promoting
    for t in (260, 270, 280, 290):
        sim.at(t)  # Completed, then direct
    sim.desired = "C"
    sim.at(300)
    sim.at(310)
    sim.at(320, judgement=judged("Failed"))
    sim.at(330, judgement=judged("Failed"))  # RolledBack
    sim.at(340)
    sim.desired = "B"
    sim.at(350)  # Cancelled
    sim.at(360)
    return sim


def restart_points() -> list[Any]:
    """Every tick of ``eventful``, named by the phase status.rollout was in before it."""
    return [
        pytest.param(index, id=f"{index:02d}-{written['phase'] if written else 'none'}")
        for index, (written, _, _) in enumerate(eventful().log)
    ]


class TestRestart:
    def test_the_run_covers_every_phase(self) -> None:
        sim = eventful()
        phases = {x.status["phase"] for _, _, x in sim.log if x.status is not None}
        assert phases == {
            "Starting",
            "Progressing",
            "Paused",
            "Promoting",
            "Completed",
            "RolledBack",
            "Cancelled",
        }
        assert {written["phase"] for written, _, _ in sim.log if written} == phases
        assert [r for _, _, x in sim.log for r in reasons(x)] == [
            "RolloutStarted",
            "CanaryReady",
            "AnalysisFailed",
            "StepPassed",
            "Promoting",
            "Promoted",
            "RolloutStarted",
            "CanaryReady",
            "AnalysisFailed",
            "RolledBack",
            "SpecReverted",
        ]

    @pytest.mark.parametrize("index", restart_points())
    def test_continues_as_if_never_stopped(self, index: int) -> None:
        sim = eventful()
        # A new process: only status.rollout survives, as JSON through the API server.
        written = sim.log[index][0]
        kept = json.loads(json.dumps(written)) if written is not None else None
        previous = rollout.previous_of(kept)
        assert previous == sim.previous_at(index)
        replayed = []
        for (_, seen, _), spec in zip(sim.log[index:], sim.policies[index:], strict=True):
            decision = rollout.decide(spec, previous, seen)
            replayed.append(decision)
            if decision.status is not None:
                previous = rollout.previous_of(json.loads(json.dumps(decision.status)))
        assert replayed == [decision for _, _, decision in sim.log[index:]]

    def test_a_status_this_version_cannot_read_is_no_rollout(self) -> None:
        assert rollout.previous_of(None) is None
        assert rollout.previous_of("Starting") is None
        assert rollout.previous_of({"phase": "Unknown"}) is None
        assert rollout.previous_of({"phase": "Starting", "future": 1}) is None
        read = rollout.previous_of({"phase": "Progressing", "step": 1, "effectiveWeight": 25})
        assert read is not None
        assert (read.phase, read.step, read.effectiveWeight) == ("Progressing", 1, 25.0)


# --- 7. inconclusive analysis ---------------------------------------------------------


class TestInconclusive:
    def test_waits_for_a_passed_judgement_then_advances_at_once(self) -> None:
        sim = Sim(policy=policy(min_requests=20))
        d = sim.to_step(0)
        started = sim.now
        d = sim.tick(30, judgement=judged("Inconclusive"))
        assert phase_of(d) == ("Progressing", "Step")
        d = sim.tick(30, judgement=judged("Inconclusive"))
        assert sim.now - started == 60
        message = (
            "step 1/2, 10% of traffic on the canary: the pause is over but no judgement passed "
            "yet: fewer than spec.rollout.analysis.minRequests (20) canary requests per window. "
            "It goes on once enough requests arrive; annotate llamaops.dev/rollout=next or "
            "=promote to go on without"
        )
        assert phase_of(d) == ("Paused", "Inconclusive")
        assert status_of(d)["message"] == message
        assert status_of(d)["lastTransitionTime"] == wall(sim.now)
        assert d.checks == (Check("Rollout", "True", "Inconclusive", message),)
        assert (d.mode, d.weight, d.both) == ("canary", 10, True)
        for after in (30, 600, 3600):
            d = sim.tick(after, judgement=judged("Inconclusive"))
            assert phase_of(d) == ("Paused", "Inconclusive")
            assert d.events == ()
        d = sim.tick(judgement=judged("Passed"))
        assert reasons(d) == ["StepPassed"]
        assert phase_of(d) == ("Progressing", "Step")
        assert status_of(d)["step"] == 1

    def test_an_early_pass_counts_when_the_pause_ends(self) -> None:
        sim = Sim(policy=policy(min_requests=20))
        sim.to_step(0)
        start = sim.now
        d = sim.tick(20, judgement=judged("Passed"))
        d = sim.tick(20, judgement=judged("Inconclusive"))
        assert status_of(d)["stepPasses"] == 1
        d = sim.tick(19)
        assert (phase_of(d), status_of(d)["step"]) == (("Progressing", "Step"), 0)
        d = sim.tick(start + 60 - sim.now)
        assert reasons(d) == ["StepPassed"]

    def test_with_min_requests_zero_time_alone_passes(self) -> None:
        sim = Sim(policy=policy(min_requests=0))
        d = sim.to_step(0)
        d = sim.tick(59)
        assert status_of(d)["step"] == 0
        d = sim.tick(1)
        assert reasons(d) == ["StepPassed"]
        d = sim.tick(120)
        assert reasons(d) == ["Promoting"]
        assert all(
            not x.status or x.status["analysis"] == [] for _, _, x in sim.log
        )  # no judgement at all

    def test_judgements_are_measured_only_in_traffic_for_the_newest_spec(self) -> None:
        assert not rollout.should_measure(None, "B")
        starting = api.RolloutStatus(phase="Starting", canaryRevision="B")
        assert not rollout.should_measure(starting, "B")
        for phase in ("Progressing", "Paused"):
            status = api.RolloutStatus(phase=phase, canaryRevision="B")
            assert rollout.should_measure(status, "B")
            assert not rollout.should_measure(status, "C")
        for phase in ("Promoting", "Completed", "RolledBack", "Cancelled"):
            ended = api.RolloutStatus.model_validate({"phase": phase, "canaryRevision": "B"})
            assert not rollout.should_measure(ended, "B")


# --- 8. nothing to protect ------------------------------------------------------------


def observed(
    primary: rollout.Variant,
    *,
    desired: str = "B",
    replicas: int = 4,
    action: rollout.Action | None = None,
) -> rollout.Observed:
    return rollout.Observed(
        desired_revision=desired,
        primary=primary,
        canary=rollout.Variant(),
        replicas=replicas,
        gateway=False,
        now=float(T0),
        wall=wall(T0),
        action=action,
    )


class TestDirect:
    @pytest.mark.parametrize(
        ("primary", "replicas"),
        [
            (rollout.Variant(), 4),  # a first start: no primary yet
            (serving(None, 4), 4),  # applied by an older operator: no revision annotation
            (dataclasses.replace(serving("A", 4), ready=0), 4),  # not serving
            (dataclasses.replace(serving("A", 4), deadline_exceeded=True), 4),  # stuck
            (serving("A", 4), 0),  # scaled to zero
            (dataclasses.replace(serving("A", 4), replicas=5, updated=2), 4),  # mid-update
        ],
        ids=[
            "first-start",
            "no-revision",
            "not-ready",
            "stuck",
            "zero",
            "mid-update",
        ],
    )
    def test_nothing_to_protect(self, primary: rollout.Variant, replicas: int) -> None:
        d = rollout.decide(policy(), None, observed(primary, replicas=replicas))
        assert d == rollout.Decision(mode="direct", status=None, removed=("Rollout", "RolledBack"))
        assert not d.canary_exists

    def test_a_serving_primary_the_controller_has_not_caught_up_with_waits(self) -> None:
        # e.g. an autoscaler's /scale just bumped its generation: a moment later it is
        # current; applying the change directly now would skip the canary.
        settling = dataclasses.replace(serving("A", 4), current=False)
        d = rollout.decide(policy(), None, observed(settling))
        assert (d.mode, d.status, d.held, d.stable_replicas) == ("hold", None, None, 4)
        assert not d.canary_exists
        d = rollout.decide(policy(), None, observed(serving("A", 4)))
        assert (d.mode, reasons(d)) == ("canary", ["RolloutStarted"])

    def test_rolling_strategy(self) -> None:
        d = rollout.decide(policy(strategy="Rolling"), None, observed(serving("A", 4)))
        assert (d.mode, d.status, d.events) == ("direct", None, ())

    def test_nothing_changed(self) -> None:
        d = rollout.decide(policy(), None, observed(serving("B", 4)))
        assert (d.mode, d.status, d.removed) == ("direct", None, ("Rollout", "RolledBack"))

    def test_a_serving_endpoint_with_a_change_starts_a_canary(self) -> None:
        d = rollout.decide(policy(), None, observed(serving("A", 1), replicas=1))
        assert (d.mode, reasons(d)) == ("canary", ["RolloutStarted"])

    def test_an_action_without_a_rollout_is_ignored(self) -> None:
        for action in rollout.ACTIONS:
            d = rollout.decide(policy(), None, observed(serving("B", 4), action=action))
            assert (d.mode, d.status, d.events) == ("direct", None, ())

    def test_a_rollout_in_progress_goes_on_while_the_primary_is_not_ready(self) -> None:
        sim = Sim()
        sim.to_step(0)
        sim.primary = dataclasses.replace(sim.primary, ready=0)
        d = sim.tick()
        assert (d.mode, phase_of(d)) == ("canary", ("Progressing", "Step"))


# --- helpers of the reconcile ---------------------------------------------------------


class TestHelpers:
    def test_policy_of(self) -> None:
        spec = api.LlamaDeploymentSpec.model_validate(
            {"model": {"id": "meta-llama/Llama-3.1-8B-Instruct"}}
        )
        assert rollout.policy_of(spec) == api.Rollout()
        assert [step.weight for step in rollout.policy_of(spec).steps] == [10, 50]

    def test_actions(self) -> None:
        key = "llamaops.dev/rollout"
        assert key == rollout.ACTION_ANNOTATION
        assert rollout.action_of(None) is None
        assert rollout.action_of({"other": "x"}) is None
        assert rollout.action_of({key: " Promote "}) == "promote"
        for action in rollout.ACTIONS:
            assert rollout.parse_action(rollout.action_of({key: action})) == action
        assert rollout.parse_action("skip") is None
        assert rollout.parse_action(None) is None

    def test_epoch(self) -> None:
        assert rollout.epoch(wall(T0)) == T0
        assert rollout.epoch("2025-06-15T15:06:40+00:00") == T0
        assert rollout.epoch("not a time") == 0.0

    def test_a_start_time_that_does_not_parse_counts_as_now(self) -> None:
        # A hand-edited status: the step starts over instead of passing at once.
        sim = Sim()
        sim.to_step(0)
        assert sim.written is not None
        sim.written = {**sim.written, "stepStartedAt": "garbage"}
        for _ in range(5):
            d = sim.tick(3600)
            assert (phase_of(d), status_of(d)["step"]) == (("Progressing", "Step"), 0)


# --- 9. properties --------------------------------------------------------------------


TICK = st.fixed_dictionaries(
    {
        "after": st.sampled_from([1, 10, 30, 59, 60, 61, 120, 600, 3600]),
        "judgement": st.sampled_from([None, None, "Passed", "Failed", "Inconclusive"]),
        "action": st.sampled_from([None, None, None, *rollout.ACTIONS]),
        "failure": st.sampled_from([None] * 8 + [CRASH]),
        "canary_up": st.booleans(),
        "desired": st.sampled_from(["B", "B", "B", "C", "A"]),
        "replicas": st.sampled_from([0, 1, 2, 3, 4, 10]),
        "paused": st.sampled_from([False, False, True]),
        "strategy": st.sampled_from(["Canary"] * 6 + ["Rolling"]),
        "no_pause": st.booleans(),
    }
)
IN_TRAFFIC = ("Progressing", "Paused", "Promoting")


class TestProperties:
    @hypothesis.settings(max_examples=300, deadline=None)
    @hypothesis.given(
        ticks=st.lists(TICK, min_size=1, max_size=40),
        gateway=st.booleans(),
        min_requests=st.sampled_from([0, 20]),
        failure_limit=st.sampled_from([1, 2]),
    )
    def test_every_decision_is_consistent(
        self,
        ticks: list[dict[str, Any]],
        gateway: bool,
        min_requests: int,
        failure_limit: int,
    ) -> None:
        sim = Sim(gateway=gateway)
        for tick in ticks:
            sim.policy = policy(
                (10, "1m"),
                (50, None if tick["no_pause"] else "2m"),
                min_requests=min_requests,
                failure_limit=failure_limit,
                paused=tick["paused"],
                strategy=tick["strategy"],
            )
            sim.canary_up = tick["canary_up"]
            sim.desired = tick["desired"]
            sim.replicas = tick["replicas"]
            result = tick["judgement"]
            judgement = judged(result) if result is not None and sim.previous_in_traffic() else None
            written = sim.written
            d = sim.tick(
                tick["after"], judgement=judgement, action=tick["action"], failure=tick["failure"]
            )
            self.check(d, sim, gateway)
            # A restarted operator, with only status.rollout, decides the same.
            kept = rollout.previous_of(json.loads(json.dumps(written)) if written else None)
            assert rollout.decide(sim.policy, kept, sim.log[-1][1]) == d

    @staticmethod
    def check(d: rollout.Decision, sim: Sim, gateway: bool) -> None:
        s = d.status
        if d.mode in ("canary", "promote"):
            assert d.canary_replicas >= 1
            assert d.stable_replicas >= 1
            assert s is not None
            assert s["canaryRevision"] == sim.desired
            assert (s["canaryReplicas"], s["stableReplicas"], s["weight"]) == (
                d.canary_replicas,
                d.stable_replicas,
                d.weight,
            )
            assert d.checks[0].type == "Rollout"
            assert d.checks[0].status == "True"
            assert d.removed == ("RolledBack",)
            assert d.held is None
        else:
            assert (d.canary_replicas, d.weight, d.both) == (0, 0, False)
        if d.mode == "canary":
            assert s is not None
            assert s["phase"] in ("Starting", "Progressing", "Paused")
            if s["phase"] == "Starting" or s["reason"] == "CanaryUnavailable":
                # The stable keeps every replica until the canary serves (again).
                assert d.stable_replicas == max(sim.replicas, 1)
            else:
                assert d.canary_replicas + d.stable_replicas == max(sim.replicas, 2)
        elif d.mode == "promote":
            assert s is not None
            assert s["phase"] == "Promoting"
            assert d.stable_replicas == max(sim.replicas, 1)
        elif d.mode == "hold" and s is None:
            # A serving primary whose controller has not caught up yet: wait a moment.
            assert d.held is None
            assert d.stable_replicas == sim.replicas
        elif d.mode == "hold":
            assert s is not None
            assert s["phase"] == "RolledBack"
            assert d.held == s["message"] + HINT
            assert d.stable_replicas == sim.replicas
            assert s["canaryRevision"] == sim.desired
            assert [c.type for c in d.checks] == ["Rollout", "RolledBack"]
        else:
            assert s is None or s["phase"] in ("Completed", "Cancelled")
            assert d.held is None
            assert "RolledBack" in d.removed
        if s is not None:
            in_traffic = s["phase"] in IN_TRAFFIC
            assert d.both == (in_traffic and not gateway)
            assert 0 <= s["weight"] <= 99
            if not in_traffic:
                assert s["weight"] == 0
                assert s["effectiveWeight"] == 0.0
            assert 0.0 <= s["effectiveWeight"] <= 100.0
            assert len(s["analysis"]) <= rollout.HISTORY
            assert s["failures"] <= 2
            assert rollout.previous_of(json.loads(json.dumps(s))) is not None
        for event in d.events:
            assert event.type in ("Normal", "Warning")
            assert event.message


class TestAfterARollback:
    """A rolled-back change that is applied some other way no longer reads as held."""

    def rolled_back(self) -> api.RolloutStatus:
        return api.RolloutStatus(
            phase="RolledBack",
            reason="AnalysisFailed",
            message="revision B rolled back",
            stableRevision="A",
            canaryRevision="B",
        )

    def test_switching_to_rolling_ends_it(self) -> None:
        d = rollout.decide(
            policy(strategy="Rolling"), self.rolled_back(), observed(serving("A", 4))
        )
        assert d.mode == "direct"
        assert (status_of(d)["phase"], status_of(d)["reason"]) == ("Cancelled", "Cancelled")
        assert d.held is None
        assert "RolledBack" in d.removed

    def test_a_primary_that_stopped_serving_takes_the_change_directly(self) -> None:
        broken = dataclasses.replace(serving("A", 4), ready=0)
        d = rollout.decide(policy(), self.rolled_back(), observed(broken, desired="C"))
        assert d.mode == "direct"
        assert (status_of(d)["phase"], status_of(d)["reason"]) == (
            "Cancelled",
            "AppliedDirectly",
        )


class TestPolicy:
    def test_empty_steps_mean_the_default_steps(self) -> None:
        # What the v0.3.0 CRD stored for `rollout: {strategy: Rolling}` and the like.
        spec = api.parse_spec(
            {"model": {"id": "meta-llama/Llama-3.1-8B-Instruct"}, "rollout": {"steps": []}}
        )
        assert [(s.weight, s.pause) for s in rollout.policy_of(spec).steps] == [
            (10, "5m"),
            (50, "10m"),
        ]

    def test_an_omitted_policy_is_a_canary(self) -> None:
        spec = api.parse_spec({"model": {"id": "meta-llama/Llama-3.1-8B-Instruct"}})
        assert rollout.policy_of(spec).strategy == "Canary"


class TestCanaryUnavailable:
    """A canary in traffic that loses every ready pod with no crash its pods explain."""

    def test_the_steps_wait_and_the_stable_takes_back_every_replica(self) -> None:
        sim = Sim()
        sim.to_step(1)
        sim.canary_up = False
        d = sim.tick(judgement=judged("Passed"))
        assert phase_of(d) == ("Paused", "CanaryUnavailable")
        assert d.stable_replicas == 4  # the whole endpoint's count, not the step's share
        assert d.mode == "canary"
        # However long the step's pause has been over, no step passes meanwhile.
        d = sim.tick(300)
        assert phase_of(d) == ("Paused", "CanaryUnavailable")
        assert status_of(d)["step"] == 1
        # Back up: the step goes on.
        sim.canary_up = True
        d = sim.tick(10, judgement=judged("Passed"))
        assert d.mode == "promote" or phase_of(d) == ("Progressing", "Step")

    def test_rolled_back_after_the_ready_timeout(self) -> None:
        sim = Sim()  # readyTimeout 10m
        sim.to_step(0)
        sim.canary_up = False
        first = sim.tick()
        assert phase_of(first) == ("Paused", "CanaryUnavailable")
        since = status_of(first)["lastTransitionTime"]
        d = sim.tick(590)
        assert phase_of(d) == ("Paused", "CanaryUnavailable")
        assert status_of(d)["lastTransitionTime"] == since  # the outage is timed from its start
        d = sim.tick(10)
        assert d.mode == "hold"
        assert phase_of(d) == ("RolledBack", "CanaryNotReady")
        assert "no ready pod" in status_of(d)["message"]


class TestTiming:
    def test_a_pause_is_never_cut_short_by_whole_second_stamps(self) -> None:
        # The canary becomes Ready 0.9 s into a second: the step started then, not at the
        # whole second its stamp would say, so a 1m pause is not over 59.6 s later.
        sim = Sim(policy=policy((10, "1m"), (50, "1m")))
        sim.tick()  # Starting
        observed = dataclasses.replace(sim.observe(), now=sim.now + 10.9)
        d = rollout.decide(sim.policy, sim.previous, observed)
        started = status_of(d)["stepStartedAt"]
        assert started.endswith(".900Z")
        assert rollout.epoch(started) == pytest.approx(sim.now + 10.9)
        later = dataclasses.replace(observed, now=sim.now + 10.9 + 59.6)
        d = rollout.decide(sim.policy, rollout.previous_of(d.status), later)
        assert phase_of(d) == ("Progressing", "Step")
        later = dataclasses.replace(observed, now=sim.now + 10.9 + 60.0)
        d = rollout.decide(sim.policy, rollout.previous_of(d.status), later)
        assert status_of(d)["step"] == 1
