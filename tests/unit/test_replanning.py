"""replanning.decide and replanning.apply: re-planning onto the next GPU pool, and memory
headroom after out-of-memory failures, with the real planner and catalog.

Each test runs ``Sim``: an injected clock, a planner request built from a spec the way
the operator builds one (``planner.request_for`` on the bundled pool catalogue), and
status.recovery carried from one reconcile to the next as JSON through the API server.
After each change the plan is made again from ``replanning.apply`` on that request, as the
reconcile does, and the change lands in the history with the pool the plan moved to.
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
from llama_operator.operations import health, replanning
from llama_operator.planning import catalog, config, planner, sizing

T0 = 1_750_000_000
HASH = "3f2a9c0d11e4b7a8"  # Plan.inputsHash of the spec (model, engine, placement)
SMALL = "meta-llama/Llama-3.1-8B-Instruct"
LARGE = "meta-llama/Llama-3.1-70B-Instruct"
POOLS = ["l4", "a10g", "l40s"]
NO_GPU = "0/3 nodes are available: 3 Insufficient nvidia.com/gpu."
OOM = "pod chat-primary-a: container engine was OOMKilled"


def wall(t: float) -> str:
    return datetime.datetime.fromtimestamp(t, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def policy(**fields: Any) -> api.Failover:
    return api.Failover.model_validate(fields)


def request_for(model_id: str = SMALL, **placement: Any) -> planner.Request:
    """A request built the way the operator builds one: spec -> catalog -> planner."""
    placement.setdefault("pools", POOLS)
    spec = api.parse_spec({"model": {"id": model_id}, "placement": placement})
    model = catalog.lookup(model_id)
    assert model is not None
    return planner.request_for(
        spec=spec, model=model, available=config.default_pools(), settings=config.OperatorConfig()
    )


def shape(plan: api.Plan | None) -> tuple[str, int, str, int] | None:
    """What the Deployment changes with: pool, GPUs, quantization, context."""
    if plan is None:
        return None
    return plan.pool, plan.gpusPerReplica, plan.quantization, plan.maxModelLen


def pending(since: float, *, desired: int = 1, ready: int = 0) -> health.Health:
    return health.Health(
        desired=desired, ready=ready, unschedulable_since=since, unschedulable=NO_GPU
    )


def killed(at: float | None, *, why: str = OOM) -> health.Health:
    return health.Health(
        desired=1,
        ready=0,
        failing=why,
        out_of_memory=why,
        out_of_memory_at=at,
    )


SERVING = health.Health(desired=1, ready=1)


@dataclasses.dataclass
class Sim:
    request: planner.Request = dataclasses.field(default_factory=request_for)
    policy: api.Failover = dataclasses.field(default_factory=policy)
    now: int = T0
    written: dict[str, Any] | None = None  # status.recovery
    plan: api.Plan | None = None
    error: planner.PlanError | None = None
    history: list[api.PlanChange] = dataclasses.field(default_factory=list)
    log: list[tuple[dict[str, Any] | None, dict[str, Any], replanning.Outcome]] = dataclasses.field(
        default_factory=list
    )

    def __post_init__(self) -> None:
        self.replan()

    @property
    def state(self) -> api.RecoveryStatus | None:
        if self.written is None:
            return None
        return api.RecoveryStatus.model_validate(self.written, strict=False)

    def replan(self) -> None:
        try:
            self.plan, self.error = planner.plan(replanning.apply(self.request, self.state)), None
        except planner.PlanError as error:
            self.plan, self.error = None, error

    def tick(self, after: int, primary: health.Health | None) -> replanning.Outcome:
        self.now += after
        seen: dict[str, Any] = {
            "policy": self.policy,
            "inputs_hash": HASH,
            "plan": self.plan,
            "primary": primary,
            "now": float(self.now),
            "wall": wall(self.now),
        }
        out = replanning.decide(state=self.state, **seen)
        self.log.append((self.written, seen, out))
        self.written = json.loads(json.dumps(out.state.model_dump(mode="json", exclude_none=True)))
        if out.change is not None:
            before = self.plan
            self.replan()
            assert out.change.toPool is None
            assert out.change.fromPool == (before.pool if before is not None else None)
            entry = out.change.model_copy(
                update={"toPool": self.plan.pool if self.plan is not None else None}
            )
            self.history = replanning.merge_history(self.history, entry)
        return out

    def at(self, t: int, primary: health.Health | None) -> replanning.Outcome:
        assert T0 + t > self.now
        return self.tick(T0 + t - self.now, primary)

    def excluded(self) -> list[str]:
        state = self.state
        return [x.pool for x in state.excludedPools] if state is not None else []


# --- 1. no free GPUs: the next pool --------------------------------------------------


class TestUnschedulable:
    def test_the_plan_starts_on_the_cheapest_pool(self) -> None:
        sim = Sim()
        # One L4 at bf16 leaves the 8B model four sequences of 3328 tokens, short of 4096
        # (test_planner.test_8b_on_quality_is_bf16_on_two_l4s_not_one): "balanced" takes
        # fp8 on that one L4 rather than a second GPU.
        assert shape(sim.plan) == ("l4", 1, "fp8", 16640)

    def test_only_after_the_grace_period(self) -> None:
        sim = Sim()
        for t in (10, 120, 299):
            out = sim.at(t, pending(since=T0))
            assert out == replanning.Outcome(api.RecoveryStatus(inputsHash=HASH), None), t
        out = sim.at(300, pending(since=T0))
        assert out.change == api.PlanChange(
            time=wall(T0 + 300),
            reason="Unschedulable",
            fromPool="l4",
            message=f"pods unschedulable on pool l4 for more than 5m: {NO_GPU}",
        )
        assert out.state == api.RecoveryStatus(
            inputsHash=HASH,
            excludedPools=[
                api.ExcludedPool(
                    pool="l4", since=wall(T0 + 300), reason="Unschedulable", message=NO_GPU
                )
            ],
            headroom=0,
            lastChange=wall(T0 + 300),
        )
        # The planner plans again on the next pool in spec.placement.pools.
        assert sim.plan is not None
        # The A10G (8.6) serves fp8 weights too (Marlin, 16-bit compute).
        assert shape(sim.plan) == ("a10g", 1, "fp8", 16896)
        assert sim.plan.gpuProduct == "NVIDIA-A10G"
        assert [(c.reason, c.fromPool, c.toPool) for c in sim.history] == [
            ("Unschedulable", "l4", "a10g")
        ]

    def test_the_grace_period_is_configurable(self) -> None:
        sim = Sim(policy=policy(gracePeriod="90s"))
        assert sim.at(89, pending(since=T0)).change is None
        out = sim.at(90, pending(since=T0))
        assert out.change is not None
        assert out.change.message.startswith("pods unschedulable on pool l4 for more than 90s: ")

    def test_counted_from_the_last_re_planning_then_pool_after_pool(self) -> None:
        sim = Sim()
        sim.at(300, pending(since=T0))
        assert sim.excluded() == ["l4"]
        # The l4 pod may still be pending (it has the earliest transition): the new
        # pool gets a full grace period all the same.
        for t in (310, 450, 599):
            assert sim.at(t, pending(since=T0)).change is None, t
        out = sim.at(600, pending(since=T0))
        assert out.change is not None
        assert (out.change.fromPool, sim.excluded()) == ("a10g", ["l4", "a10g"])
        assert shape(sim.plan) == ("l40s", 1, "none", 44800)
        # The new pods' own transition, later than the re-planning, counts from then.
        assert sim.at(900, pending(since=T0 + 700)).change is None
        assert sim.at(999, pending(since=T0 + 700)).change is None
        out = sim.at(1000, pending(since=T0 + 700))
        assert out.change is not None
        assert out.change.fromPool == "l40s"
        assert [(c.fromPool, c.toPool) for c in sim.history] == [
            ("l4", "a10g"),
            ("a10g", "l40s"),
            ("l40s", None),
        ]

    def test_a_larger_model_changes_gpu_count_and_pool(self) -> None:
        sim = Sim(request=request_for(LARGE, optimize="balanced"))
        assert shape(sim.plan) == ("l4", 8, "fp8", 15360)
        sim.at(300, pending(since=T0))
        # a10g nodes have 4 GPUs, too few for 70B even at fp8: the planner takes l40s.
        assert shape(sim.plan) == ("l40s", 4, "fp8", 50176)

    def test_a_quantization_the_policy_allows_on_the_next_pool(self) -> None:
        sim = Sim(request=request_for(LARGE, optimize="cost", pools=["l4", "l40s"]))
        assert shape(sim.plan) == ("l4", 8, "fp8", 15360)
        sim.at(300, pending(since=T0))
        assert shape(sim.plan) == ("l40s", 4, "fp8", 50176)
        # 70B at 16-bit no longer fits 8 L4s: "quality" starts on A100s and keeps 16-bit
        # on the next pool, with more GPUs.
        sim = Sim(request=request_for(LARGE, optimize="quality", pools=["a100-80", "l40s"]))
        assert shape(sim.plan) == ("a100-80", 4, "none", 101376)
        sim.at(300, pending(since=T0))
        assert shape(sim.plan) == ("l40s", 8, "none", 96000)

    def test_not_twice_for_the_same_pool(self) -> None:
        sim = Sim()
        sim.at(300, pending(since=T0))
        # A reconcile that still holds the plan on l4 (not re-planned yet) changes nothing.
        state = sim.state
        assert state is not None
        assert sim.plan is not None
        out = replanning.decide(
            policy=policy(),
            state=state,
            inputs_hash=HASH,
            plan=sim.plan.model_copy(update={"pool": "l4"}),
            primary=pending(since=T0),
            now=float(T0 + 3600),
            wall=wall(T0 + 3600),
        )
        assert out == replanning.Outcome(state, None)

    def test_switched_off(self) -> None:
        sim = Sim(policy=policy(replanOnUnschedulable=False))
        for t in (300, 3600, 86400):
            assert sim.at(t, pending(since=T0)).change is None
        assert shape(sim.plan) == ("l4", 1, "fp8", 16640)

    def test_scheduled_pods_change_nothing(self) -> None:
        sim = Sim()
        for t in (300, 3600):
            assert sim.at(t, SERVING).change is None
            assert sim.at(t + 1, health.Health(desired=2, ready=0)).change is None

    def test_without_pods_read_or_without_a_plan(self) -> None:
        state = api.RecoveryStatus(inputsHash=HASH)
        for plan, primary in ((None, pending(since=T0)), (Sim().plan, None)):
            out = replanning.decide(
                policy=policy(),
                state=state,
                inputs_hash=HASH,
                plan=plan,
                primary=primary,
                now=float(T0 + 3600),
                wall=wall(T0 + 3600),
            )
            assert out == replanning.Outcome(state, None)

    def test_without_a_scheduler_message(self) -> None:
        sim = Sim()
        out = sim.at(300, health.Health(desired=1, ready=0, unschedulable_since=T0))
        assert out.change is not None
        assert (
            out.change.message
            == "pods unschedulable on pool l4 for more than 5m: pods unschedulable"
        )


class TestExhausted:
    def test_every_pool_excluded_leaves_no_plan_and_says_why(self) -> None:
        sim = Sim()
        sim.at(300, pending(since=T0))
        sim.at(600, pending(since=T0))
        out = sim.at(900, pending(since=T0))
        assert out.change is not None
        assert sim.excluded() == POOLS
        assert sim.plan is None
        assert sim.error is not None
        assert sim.error.field == "spec.placement.pools"
        with pytest.raises(planner.PlanError):
            planner.plan(replanning.apply(request_for(), sim.state))
        assert replanning.exhausted(sim.state) == (
            "; after re-planning: "
            f"pool l4 excluded since {wall(T0 + 300)} (Unschedulable: {NO_GPU}); "
            f"pool a10g excluded since {wall(T0 + 600)} (Unschedulable: {NO_GPU}); "
            f"pool l40s excluded since {wall(T0 + 900)} (Unschedulable: {NO_GPU})"
        )
        # Nothing more to do without a plan.
        assert sim.at(3600, pending(since=T0)).change is None
        assert sim.excluded() == POOLS

    def test_with_headroom_too(self) -> None:
        state = api.RecoveryStatus(
            inputsHash=HASH,
            excludedPools=[api.ExcludedPool(pool="l4", since=wall(T0), reason="Unschedulable")],
            headroom=2,
        )
        assert replanning.exhausted(state) == (
            f"; after re-planning: pool l4 excluded since {wall(T0)} (Unschedulable: ); "
            "4 GiB per GPU of added headroom"
        )

    @pytest.mark.parametrize("state", [None, api.RecoveryStatus(inputsHash=HASH)])
    def test_nothing_taken_away(self, state: api.RecoveryStatus | None) -> None:
        assert replanning.exhausted(state) == ""

    def test_a_long_scheduler_message_is_cut(self) -> None:
        long = "0/300 nodes are available: " + "x" * 1000
        sim = Sim()
        out = sim.at(300, health.Health(1, 0, unschedulable_since=T0, unschedulable=long))
        assert out.change is not None
        assert (
            len(out.change.message) == len("pods unschedulable on pool l4 for more than 5m: ") + 300
        )
        assert len(out.state.excludedPools[0].message) == 500
        assert len(replanning.exhausted(out.state)) < 300


class TestRetryPools:
    def test_an_excluded_pool_is_tried_again_after_retry_pools_after(self) -> None:
        sim = Sim(policy=policy(retryPoolsAfter="30m"))
        sim.at(300, pending(since=T0))
        assert shape(sim.plan) == ("a10g", 1, "fp8", 16896)
        assert sim.at(2099, SERVING).change is None
        out = sim.at(2100, SERVING)
        assert out.change == api.PlanChange(
            time=wall(T0 + 2100),
            reason="PoolRetried",
            fromPool="a10g",
            message="pool(s) l4 tried again after spec.failover.retryPoolsAfter (30m)",
        )
        assert out.state == api.RecoveryStatus(
            inputsHash=HASH, excludedPools=[], headroom=0, lastChange=wall(T0 + 2100)
        )
        # Back on the preferred pool.
        assert shape(sim.plan) == ("l4", 1, "fp8", 16640)
        assert sim.history[-1].toPool == "l4"
        # Still full: a full grace period again, from the retry.
        assert sim.at(2399, pending(since=T0 + 2110)).change is None
        out = sim.at(2410, pending(since=T0 + 2110))
        assert out.change is not None
        assert out.change.reason == "Unschedulable"
        assert sim.excluded() == ["l4"]

    def test_only_the_old_exclusions_go(self) -> None:
        sim = Sim(policy=policy(retryPoolsAfter="20m"))
        sim.at(300, pending(since=T0))
        sim.at(600, pending(since=T0))
        assert shape(sim.plan) == ("l40s", 1, "none", 44800)
        out = sim.at(1500, SERVING)
        assert out.change is not None
        assert out.change.message == (
            "pool(s) l4 tried again after spec.failover.retryPoolsAfter (20m)"
        )
        assert sim.excluded() == ["a10g"]
        assert sim.plan is not None
        assert sim.plan.pool == "l4"
        out = sim.at(1800, SERVING)
        assert out.change is not None
        assert sim.excluded() == []

    def test_all_at_once_and_without_a_plan(self) -> None:
        sim = Sim(policy=policy(retryPoolsAfter="1h"))
        for t in (300, 600, 900):
            sim.at(t, pending(since=T0))
        assert sim.plan is None
        out = sim.at(4400, None)
        assert out.change is not None
        assert out.change.fromPool is None
        assert out.change.message == (
            "pool(s) l4, a10g tried again after spec.failover.retryPoolsAfter (1h)"
        )
        assert sim.excluded() == ["l40s"]
        assert sim.plan is not None
        assert sim.plan.pool == "l4"

    def test_without_retry_pools_after_an_exclusion_stays(self) -> None:
        sim = Sim()
        sim.at(300, pending(since=T0))
        for t in (3600, 86400, 30 * 86400):
            assert sim.at(t, SERVING).change is None
        assert sim.excluded() == ["l4"]


# --- 2. out of memory: more headroom -------------------------------------------------


class TestOutOfMemory:
    def test_one_step_per_kill(self) -> None:
        sim = Sim()
        out = sim.at(60, killed(at=T0 + 50))
        assert out.change == api.PlanChange(
            time=wall(T0 + 60),
            reason="OutOfMemory",
            fromPool="l4",
            message=f"{OOM}: re-planned with 2 GiB more headroom per GPU (step 1/3)",
        )
        assert out.state == api.RecoveryStatus(
            inputsHash=HASH, headroom=1, lastChange=wall(T0 + 60)
        )
        # The same kill, read again (the pod keeps it in lastState): nothing more.
        for t in (70, 600, 3600):
            assert sim.at(t, killed(at=T0 + 50)).change is None
        # A kill at the very time of the re-planning was of the old plan.
        assert sim.at(3610, killed(at=T0 + 60)).change is None
        # A new kill of the new plan: another step.
        out = sim.at(3700, killed(at=T0 + 3650))
        assert out.change is not None
        assert out.change.message == (
            f"{OOM}: re-planned with 4 GiB more headroom per GPU (step 2/3)"
        )
        out = sim.at(3800, killed(at=T0 + 3750))
        assert out.change is not None
        assert out.change.message.endswith("6 GiB more headroom per GPU (step 3/3)")
        # At most MAX_HEADROOM steps.
        assert sim.at(3900, killed(at=T0 + 3850)).change is None
        assert sim.state is not None
        assert sim.state.headroom == replanning.MAX_HEADROOM == 3
        assert [c.reason for c in sim.history] == ["OutOfMemory"] * 3

    def test_an_engine_exit_for_lack_of_gpu_memory(self) -> None:
        why = (
            "pod chat-primary-a: container engine exited for lack of GPU memory "
            "('cuda out of memory' in its last log lines)"
        )
        sim = Sim()
        out = sim.at(60, killed(at=T0 + 30, why=why))
        assert out.change is not None
        assert (
            out.change.message == f"{why}: re-planned with 2 GiB more headroom per GPU (step 1/3)"
        )

    def test_switched_off(self) -> None:
        sim = Sim(policy=policy(replanOnOutOfMemory=False))
        assert sim.at(60, killed(at=T0 + 50)).change is None
        assert sim.state == api.RecoveryStatus(inputsHash=HASH)

    def test_an_exclusion_comes_first(self) -> None:
        sim = Sim()
        both = dataclasses.replace(pending(since=T0), out_of_memory=OOM, out_of_memory_at=T0 + 10)
        out = sim.at(300, both)
        assert out.change is not None
        assert out.change.reason == "Unschedulable"
        # The kill happened before that re-planning: it belongs to the old plan.
        assert sim.at(310, both).change is None
        assert sim.state is not None
        assert sim.state.headroom == 0

    def test_headroom_then_an_exclusion_keeps_the_headroom(self) -> None:
        sim = Sim()
        assert shape(sim.plan) == ("l4", 1, "fp8", 16640)
        sim.at(60, killed(at=T0 + 50))
        # 2 GiB less KV cache on the one GPU: 4096 tokens less per sequence.
        assert shape(sim.plan) == ("l4", 1, "fp8", 12544)
        sim.at(400, pending(since=T0 + 100))
        assert sim.state is not None
        assert (sim.state.headroom, sim.excluded()) == (1, ["l4"])
        # On a10g at fp8, and still with the headroom: a shorter context than the 16896
        # tokens a10g gets without it (test_only_after_the_grace_period).
        assert shape(sim.plan) == ("a10g", 1, "fp8", 12800)


class TestHeadroomPlans:
    """With headroom the planner gives a shorter context, more GPUs or more quantization.

    At the default gpuMemoryUtilization (0.9) one L4 no longer holds the 8B model at 16-bit
    at all; at 0.98 (capped to 0.96 so the CUDA context fits) it does, with 2.97 GiB of KV
    cache: four sequences of 5888 tokens. One headroom step (2 GiB) leaves 0.97 GiB, too
    little for four of 4096, so these examples plan at 0.98 to show each way out.
    """

    @staticmethod
    def plans(request: planner.Request) -> list[tuple[str, int, str, int] | None]:
        result = []
        for steps in range(replanning.MAX_HEADROOM + 1):
            state = api.RecoveryStatus(inputsHash=HASH, headroom=steps)
            try:
                result.append(shape(planner.plan(replanning.apply(request, state))))
            except planner.PlanError:
                result.append(None)
        return result

    def test_more_gpus_at_full_precision(self) -> None:
        assert self.plans(
            request_for(optimize="quality", pools=["l4"], gpuMemoryUtilization=0.98)
        ) == [
            ("l4", 1, "none", 5888),
            ("l4", 2, "none", 25856),
            ("l4", 2, "none", 17664),
            ("l4", 2, "none", 9472),
        ]

    def test_more_quantization_then_a_shorter_context(self) -> None:
        assert self.plans(
            request_for(optimize="cost", pools=["l4"], gpuMemoryUtilization=0.98)
        ) == [
            ("l4", 1, "none", 5888),
            ("l4", 1, "fp8", 15104),
            ("l4", 1, "fp8", 11008),
            ("l4", 1, "fp8", 6912),
        ]

    def test_within_the_pins(self) -> None:
        # One GPU at 16-bit pinned: no room for more headroom, so no plan (the reconcile
        # reports NoFeasiblePlan with what re-planning took away).
        assert self.plans(
            request_for(
                optimize="quality",
                pools=["l4"],
                tensorParallel=1,
                quantization="none",
                gpuMemoryUtilization=0.98,
            )
        ) == [("l4", 1, "none", 5888), None, None, None]

    def test_the_memory_per_gpu_left_grows_by_the_step(self) -> None:
        request = request_for(optimize="cost", pools=["l4"])
        (l4,) = request.pools
        for steps in range(replanning.MAX_HEADROOM + 1):
            state = api.RecoveryStatus(headroom=steps)
            applied = replanning.apply(request, state)
            # Headroom adds to the calibrated overhead; it does not replace it.
            assert applied.headroom_gib == request.headroom_gib + steps * replanning.HEADROOM_GIB
            assert applied.overhead_gib is request.overhead_gib is None
            plan = planner.plan(applied)
            # The overhead the engine profile charges a GPU of this plan, headroom aside.
            calibrated = sizing.overhead(
                model=request.model,
                memory=request.profile.memory,
                product=l4.gpuProduct,
                gpu_gib=l4.memory_gib,
                tensor_parallel=plan.tensorParallel,
                scheduled_sequences=request.scheduled_sequences,
            ).total
            assert plan.memory is not None
            assert plan.memory.overheadGiB == pytest.approx(
                calibrated + steps * replanning.HEADROOM_GIB, abs=0.01
            )
            # What the plan leaves free of the engine's share of each GPU.
            share = l4.memory_gib * plan.gpuMemoryUtilization
            assert plan.estimatedGPUMemoryGiB <= share + 0.01
            assert share - (plan.weightsGiB + plan.kvCacheGiB) / plan.gpusPerReplica >= (
                calibrated + steps * replanning.HEADROOM_GIB - 0.02
            )


# --- 3. state ------------------------------------------------------------------------


class TestState:
    def test_a_spec_change_starts_afresh(self) -> None:
        sim = Sim()
        sim.at(60, killed(at=T0 + 50))
        sim.at(400, pending(since=T0 + 100))
        state = sim.state
        assert state is not None
        assert (state.headroom, len(state.excludedPools)) == (1, 1)
        out = replanning.decide(
            policy=policy(),
            state=state,
            inputs_hash="another-spec",
            plan=sim.plan,
            primary=SERVING,
            now=float(T0 + 500),
            wall=wall(T0 + 500),
        )
        assert out == replanning.Outcome(api.RecoveryStatus(inputsHash="another-spec"), None)
        # And a kill before the spec change counts again for the new spec.
        out = replanning.decide(
            policy=policy(),
            state=state,
            inputs_hash="another-spec",
            plan=sim.plan,
            primary=killed(at=T0 + 50),
            now=float(T0 + 500),
            wall=wall(T0 + 500),
        )
        assert out.state.headroom == 1

    def test_a_first_reconcile(self) -> None:
        out = replanning.decide(
            policy=policy(),
            state=None,
            inputs_hash=HASH,
            plan=Sim().plan,
            primary=SERVING,
            now=float(T0),
            wall=wall(T0),
        )
        assert out == replanning.Outcome(api.RecoveryStatus(inputsHash=HASH), None)

    def test_continues_as_if_never_stopped(self) -> None:
        sim = Sim(policy=policy(retryPoolsAfter="30m"))
        sim.at(60, killed(at=T0 + 50))
        sim.at(400, pending(since=T0))
        sim.at(500, killed(at=T0 + 450))
        sim.at(2300, SERVING)
        assert [c.reason for c in sim.history] == [
            "OutOfMemory",
            "Unschedulable",
            "OutOfMemory",
            "PoolRetried",
        ]
        for written, seen, out in sim.log:
            kept = json.loads(json.dumps(written)) if written is not None else None
            state = api.RecoveryStatus.model_validate(kept, strict=False) if kept else None
            assert replanning.decide(state=state, **seen) == out


class TestApply:
    def test_nothing_to_apply(self) -> None:
        request = request_for()
        assert replanning.apply(request, None) is request
        assert replanning.apply(request, api.RecoveryStatus(inputsHash=HASH)) is request

    def test_excluded_pools_and_headroom(self) -> None:
        request = request_for()
        state = api.RecoveryStatus(
            excludedPools=[
                api.ExcludedPool(pool="a10g", since=wall(T0), reason="Unschedulable"),
                api.ExcludedPool(pool="h100", since=wall(T0), reason="Unschedulable"),
            ],
            headroom=2,
        )
        applied = replanning.apply(request, state)
        assert [p.name for p in applied.pools] == ["l4", "l40s"]
        # Headroom adds to the overhead; runtimeOverheadGiB (None: calibrated) stays as it is.
        assert applied.headroom_gib == request.headroom_gib + 4.0 == 4.0
        assert applied.overhead_gib == request.overhead_gib
        assert dataclasses.replace(applied, pools=request.pools, headroom_gib=0.0) == request


class TestInputsHash:
    def test_unchanged_without_re_planning(self) -> None:
        assert replanning.inputs_hash(HASH, None) == HASH
        assert replanning.inputs_hash(HASH, api.RecoveryStatus(inputsHash=HASH)) == HASH
        assert replanning.inputs_hash(HASH, api.RecoveryStatus(lastChange=wall(T0))) == HASH

    def test_changes_with_exclusions_and_headroom(self) -> None:
        def excluded(*names: str, headroom: int = 0) -> api.RecoveryStatus:
            return api.RecoveryStatus(
                excludedPools=[
                    api.ExcludedPool(pool=n, since=wall(T0 + i), reason="Unschedulable")
                    for i, n in enumerate(names)
                ],
                headroom=headroom,
            )

        hashes = {
            replanning.inputs_hash(HASH, state)
            for state in (
                excluded("l4"),
                excluded("l4", "a10g"),
                excluded(headroom=1),
                excluded(headroom=2),
                excluded("l4", headroom=1),
            )
        }
        assert len(hashes) == 5
        assert HASH not in hashes
        assert all(len(h) == 16 for h in hashes)
        # What is excluded counts, not in which order or since when.
        assert replanning.inputs_hash(HASH, excluded("l4", "a10g")) == replanning.inputs_hash(
            HASH, excluded("a10g", "l4")
        )
        # Another spec, another hash.
        assert replanning.inputs_hash("other", excluded("l4")) != replanning.inputs_hash(
            HASH, excluded("l4")
        )


def test_merge_history_keeps_the_last_ten() -> None:
    entries = [
        api.PlanChange(time=wall(T0 + i), reason="OutOfMemory", message=str(i)) for i in range(12)
    ]
    history: list[api.PlanChange] | None = None
    for entry in entries:
        history = replanning.merge_history(history, entry)
    assert history == entries[-replanning.HISTORY :]
    assert replanning.merge_history(None, entries[0]) == [entries[0]]


def test_policy_of() -> None:
    spec = api.parse_spec({"model": {"id": SMALL}})
    assert replanning.policy_of(spec) == api.Failover()
    spec = api.parse_spec({"model": {"id": SMALL}, "failover": {"retryPoolsAfter": "1h"}})
    assert replanning.policy_of(spec).retryPoolsAfter == "1h"


# --- 4. properties -------------------------------------------------------------------


TICK = st.fixed_dictionaries(
    {
        "after": st.sampled_from([1, 10, 60, 120, 299, 300, 301, 900, 3600]),
        "read": st.sampled_from([True] * 5 + [False]),  # pods read this reconcile
        "oom": st.sampled_from([None, None, None, -5, -120, -3600]),  # seconds before now
    }
)


class TestProperties:
    @hypothesis.settings(max_examples=150, deadline=None)
    @hypothesis.given(
        ticks=st.lists(TICK, min_size=1, max_size=30),
        full=st.sets(st.sampled_from(POOLS)),
        retry=st.sampled_from([None, "30m", "2h"]),
        grace=st.sampled_from(["1m", "5m"]),
    )
    def test_every_change_is_justified(
        self, ticks: list[dict[str, Any]], full: set[str], retry: str | None, grace: str
    ) -> None:
        """Pools without free GPUs (``full``) leave the plan's pods pending from when the
        plan last changed; kills happen at random times before each reconcile."""
        sim = Sim(policy=policy(retryPoolsAfter=retry, gracePeriod=grace))
        period = api.parse_duration(grace)
        created = float(T0)  # when the current plan's pods were created
        for tick in ticks:
            sim.now += tick["after"]
            primary: health.Health | None = None
            if tick["read"]:
                pending_since = created if sim.plan is not None and sim.plan.pool in full else None
                oom_at = sim.now + tick["oom"] if tick["oom"] is not None else None
                primary = health.Health(
                    desired=1,
                    ready=0 if pending_since is not None or oom_at is not None else 1,
                    unschedulable_since=pending_since,
                    unschedulable=NO_GPU if pending_since is not None else None,
                    out_of_memory=OOM if oom_at is not None else None,
                    out_of_memory_at=oom_at,
                )
            before = sim.state
            plan_before = sim.plan
            out = sim.tick(0, primary)
            state = sim.state
            assert state is not None
            last = before.lastChange if before is not None else None
            last_t = datetime.datetime.fromisoformat(last).timestamp() if last else None

            names = [x.pool for x in state.excludedPools]
            assert len(names) == len(set(names))
            assert 0 <= state.headroom <= replanning.MAX_HEADROOM
            if sim.plan is not None:
                assert sim.plan.pool not in names
            else:
                assert set(names) == set(POOLS)

            change = out.change
            if change is None:
                assert state == (before or api.RecoveryStatus(inputsHash=HASH))
                if primary is not None and plan_before is not None:
                    # Nothing left undone: a pool full for the grace period is left, and a
                    # kill of this plan adds headroom (up to the limit).
                    since = primary.unschedulable_since
                    assert since is None or sim.now - max(since, last_t or 0) < period
                    at = primary.out_of_memory_at
                    fresh = at is not None and (last_t is None or at > last_t)
                    assert not fresh or state.headroom == replanning.MAX_HEADROOM
                continue
            created = float(sim.now)
            assert state.lastChange == wall(sim.now)
            if change.reason == "Unschedulable":
                assert primary is not None
                assert primary.unschedulable_since is not None
                assert plan_before is not None
                assert plan_before.pool in full
                assert sim.now - max(primary.unschedulable_since, last_t or 0) >= period
                assert names[-1] == plan_before.pool
            elif change.reason == "OutOfMemory":
                assert primary is not None
                assert primary.out_of_memory_at is not None
                assert last_t is None or primary.out_of_memory_at > last_t
                assert state.headroom == (before.headroom if before else 0) + 1
            else:
                assert retry is not None
                assert before is not None
                assert len(names) < len(before.excludedPools)
