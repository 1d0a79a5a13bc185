"""autoscaling.decide: the built-in scaler's decision, as examples and as properties."""

from __future__ import annotations

import dataclasses
import itertools
import math
import random
from collections.abc import Sequence

import hypothesis
import pytest
from hypothesis import strategies as st

from llama_operator import api
from llama_operator.operations import autoscaling

POLICY = autoscaling.Policy(
    min_replicas=1, max_replicas=10, target=8.0, scale_up_step=4, window_seconds=300.0
)
SETTINGS = hypothesis.settings(max_examples=300, deadline=None)


def samples(*values: float | None) -> list[autoscaling.Sample]:
    return [autoscaling.Sample(f"pod-{i}", v) for i, v in enumerate(values)]


def decide(
    values: Sequence[float | None],
    *,
    current: int,
    state: autoscaling.State | None = None,
    now: float = 1000.0,
    policy: autoscaling.Policy = POLICY,
) -> autoscaling.Decision:
    return autoscaling.decide(
        policy=policy,
        samples=samples(*values),
        current=current,
        state=state or autoscaling.State(),
        now=now,
    )


def run_trace(
    loads: Sequence[float], *, start: int = 1, interval: float = 5.0, pods_scraped: bool = True
) -> list[int]:
    """Replicas after each evaluation of a load trace (total queue spread over the pods)."""
    replicas, state, result = start, autoscaling.State(), []
    for step, load in enumerate(loads):
        per_pod = load / replicas if replicas else 0.0
        values: list[float | None] = [per_pod] * replicas
        if not pods_scraped and values:
            values[0] = None
        decision = decide(values, current=replicas, state=state, now=step * interval)
        replicas, state = decision.replicas, decision.state
        result.append(replicas)
    return result


class TestPolicy:
    def test_from_the_spec(self) -> None:
        spec = api.Autoscaling(minReplicas=2, maxReplicas=6, metric="kvCache", scaleUpStep=2)
        policy = autoscaling.Policy.of(spec)
        assert policy == autoscaling.Policy(2, 6, 0.8, 2, 300.0)
        assert autoscaling.Policy.of(api.Autoscaling(targetQueueLength=3)).target == 3


class TestDecide:
    def test_scales_up_as_soon_as_the_per_replica_value_exceeds_the_target(self) -> None:
        assert decide([8.0], current=1).reason == "Steady"
        up = decide([8.5], current=1)
        assert (up.replicas, up.recommended, up.reason) == (2, 2, "ScaleUp")
        assert "load 8.5 over 1 ready pod(s)" in up.message

    def test_a_burst_is_met_by_at_most_one_step(self) -> None:
        up = decide([200.0], current=1)
        assert (up.recommended, up.replicas) == (10, 5)  # max 10, step 4

    def test_exactly_n_times_the_target_recommends_n(self) -> None:
        assert decide([8.0, 8.0, 8.0], current=3).recommended == 3

    def test_an_unscraped_pod_counts_as_the_busiest(self) -> None:
        up = decide([10.0, None], current=2)
        assert up.load == 20.0
        assert up.recommended == 3

    def test_no_metrics_no_decision(self) -> None:
        assert decide([None, None], current=3).reason == "NoMetrics"
        assert decide([None, None], current=3).replicas == 3
        assert decide([], current=3).message.startswith("no ready pod")

    def test_bounds_are_restored_at_once(self) -> None:
        assert decide([0.0], current=0).replicas == 1
        assert decide([0.0], current=14).replicas == 10
        assert decide([0.0], current=14).reason == "Bounds"

    def test_scale_down_waits_for_a_full_window(self) -> None:
        state = autoscaling.State()
        for t in range(0, 300, 5):
            d = decide([1.0] * 4, current=4, state=state, now=float(t))
            assert d.replicas == 4, t
            state = d.state
        assert "window of 300s is not full" in d.message
        down = decide([1.0] * 4, current=4, state=state, now=300.0)
        assert (down.reason, down.replicas) == ("ScaleDown", 1)

    def test_scale_down_goes_to_the_highest_recommendation_of_the_window(self) -> None:
        state = autoscaling.State(((0.0, 3), (200.0, 1)))
        d = decide([1.0] * 4, current=4, state=state, now=400.0)
        assert (d.reason, d.replicas) == ("ScaleDown", 3)  # 3 still held at t=100
        d = decide([1.0] * 4, current=4, state=state, now=500.0)
        assert (d.reason, d.replicas) == ("ScaleDown", 1)

    def test_no_scale_down_while_a_pod_cannot_be_scraped(self) -> None:
        state = autoscaling.State(((0.0, 1),))
        d = decide([0.0, 0.0, None], current=3, state=state, now=1000.0)
        assert (d.reason, d.replicas) == ("Stabilizing", 3)
        assert "cannot be scraped" in d.message

    def test_state_round_trips_through_status_and_tolerates_garbage(self) -> None:
        state = autoscaling.State(((10.0, 2), (20.5, 3)))
        assert autoscaling.State.from_status(state.as_status()) == state
        assert autoscaling.State.from_status("nonsense") == autoscaling.State()
        assert autoscaling.State.from_status([[1, "x"], [2.0, 3]]) == autoscaling.State(((2.0, 3),))

    def test_window_state_stays_small(self) -> None:
        state = autoscaling.State()
        for t in range(0, 3600, 5):
            state = decide([float(t % 17)], current=1, state=state, now=float(t)).state
        assert all(since >= 3600 - 5 - 300 - 5 for since, _ in state.recommendations[1:])
        assert len(state.recommendations) <= 300 // 5 + 2

    def test_history_keeps_the_last_changes(self) -> None:
        history: list[dict[str, object]] = []
        for i in range(15):
            d = decide([9.0 * (i + 1)], current=1)
            entry = autoscaling.history_entry(d, current=1, now=f"t{i}", metric="queue", target=8.0)
            history = autoscaling.merge_history(history, entry)
        assert len(history) == autoscaling.HISTORY
        assert history[-1]["time"] == "t14"
        assert set(history[-1]) == {
            "time",
            "fromReplicas",
            "toReplicas",
            "reason",
            "metric",
            "target",
            "message",
            "load",
        }


# Properties over generated situations and traces.

values = st.floats(min_value=0, max_value=500, allow_nan=False)
pod_values = st.lists(st.one_of(values, st.none()), min_size=0, max_size=12)
policies = st.builds(
    autoscaling.Policy,
    min_replicas=st.integers(0, 3),
    max_replicas=st.integers(3, 20),
    target=st.floats(min_value=0.5, max_value=50),
    scale_up_step=st.integers(1, 8),
    window_seconds=st.sampled_from([0.0, 30.0, 300.0]),
)


@SETTINGS
@hypothesis.given(policy=policies, observed=pod_values, current=st.integers(0, 25))
def test_never_outside_bounds_and_never_more_than_one_step_up(
    policy: autoscaling.Policy, observed: list[float | None], current: int
) -> None:
    d = decide(observed, current=current, policy=policy)
    assert policy.min_replicas <= d.replicas <= policy.max_replicas
    if policy.min_replicas <= current <= policy.max_replicas:
        assert d.replicas <= current + policy.scale_up_step


@SETTINGS
@hypothesis.given(
    policy=policies,
    observed=st.lists(values, min_size=1, max_size=12),
    extra=st.floats(min_value=0, max_value=100),
    current=st.integers(1, 20),
)
def test_monotone_in_load(
    policy: autoscaling.Policy, observed: list[float], extra: float, current: int
) -> None:
    hypothesis.assume(policy.min_replicas <= current <= policy.max_replicas)
    state = autoscaling.State(((0.0, current),))
    lower = decide(observed, current=current, policy=policy, state=state)
    more = [observed[0] + extra, *observed[1:]]
    higher = decide(more, current=current, policy=policy, state=state)
    assert higher.replicas >= lower.replicas
    assert (higher.recommended or 0) >= (lower.recommended or 0)


@SETTINGS
@hypothesis.given(
    policy=policies,
    observed=pod_values.filter(lambda v: None in v),
    current=st.integers(1, 20),
    history=st.lists(st.tuples(st.floats(0, 1000), st.integers(0, 20)), max_size=6),
)
def test_never_scales_down_on_missing_data(
    policy: autoscaling.Policy,
    observed: list[float | None],
    current: int,
    history: list[tuple[float, int]],
) -> None:
    hypothesis.assume(policy.min_replicas <= current <= policy.max_replicas)
    state = autoscaling.State(tuple(sorted(history)))
    assert decide(observed, current=current, policy=policy, state=state).replicas >= current


@SETTINGS
@hypothesis.given(
    level=st.floats(min_value=2, max_value=60),
    noise=st.lists(st.floats(min_value=-0.3, max_value=0.3), min_size=400, max_size=400),
)
def test_no_flapping_on_a_noisy_but_steady_load(level: float, noise: list[float]) -> None:
    # A steady load of level x target with +-30% noise, evaluated every 5 s for 2000 s.
    # Flapping is a scale-down undone by noise within the window: the policy never scales
    # down sooner than a full window after its last scale-up, and never leaves the range
    # the noise band itself justifies.
    loads = [level * POLICY.target * (1 + n) for n in noise]
    replicas = run_trace(loads)
    window_steps = int(POLICY.window_seconds // 5)
    last_up = None
    for step, (before, after) in enumerate(itertools.pairwise([1, *replicas])):
        if after > before:
            last_up = step
        elif after < before:
            assert last_up is None or step - last_up >= window_steps
    lowest = math.ceil(min(loads) / POLICY.target - 1e-9)
    highest = math.ceil(max(loads) / POLICY.target - 1e-9)
    settled = replicas[window_steps + 20 :]
    assert all(min(lowest, POLICY.max_replicas) <= r <= highest for r in settled)
    downs = sum(1 for a, b in itertools.pairwise(settled) if b < a)
    assert downs <= len(settled) // window_steps + 1


@SETTINGS
@hypothesis.given(
    whole=st.integers(1, 8), part=st.floats(min_value=0.2, max_value=0.8), seed=st.integers(0)
)
def test_iid_noise_within_one_replica_band_never_flaps(whole: int, part: float, seed: int) -> None:
    # Noise that never crosses a replica boundary: once settled, replicas never change.
    rng = random.Random(seed)
    loads = [POLICY.target * (whole + part + rng.uniform(-0.15, 0.15)) for _ in range(400)]
    replicas = run_trace(loads)
    settled = replicas[int(POLICY.window_seconds // 5) + 2 :]
    assert set(settled) == {whole + 1}


@SETTINGS
@hypothesis.given(loads=st.lists(st.floats(0, 400), min_size=20, max_size=120))
def test_a_pod_that_cannot_be_scraped_never_lets_replicas_fall(loads: list[float]) -> None:
    replicas = run_trace(loads, start=3, pods_scraped=False)
    assert all(b >= a for a, b in itertools.pairwise([3, *replicas]))


@pytest.mark.parametrize("window", [0.0, 60.0])
def test_scale_down_after_the_window_on_a_trace(window: float) -> None:
    policy = autoscaling.Policy(1, 10, 8.0, 4, window)
    replicas, state = 6, autoscaling.State()
    seen = []
    for step in range(40):
        d = decide([1.0] * replicas, current=replicas, state=state, now=step * 5.0, policy=policy)
        replicas, state = d.replicas, d.state
        seen.append(replicas)
    first_down = next(i for i, r in enumerate(seen) if r < 6)
    assert first_down * 5.0 >= window
    assert seen[-1] == 1


class TestRunningFloor:
    policy = dataclasses.replace(POLICY, running_floor=True)

    def test_busy_replicas_with_an_empty_queue_are_not_scaled_down(self) -> None:
        # Learn the capacity: pods with a queue run 16 each.
        busy = [autoscaling.Sample(f"p{i}", 4.0, running=16.0) for i in range(4)]
        learned = autoscaling.decide(
            policy=self.policy, samples=busy, current=4, state=autoscaling.State(), now=0.0
        )
        assert learned.state.capacity == 16.0
        # Then the queue empties, the pods still run 14 each: 56 running needs 4 replicas.
        keeping = [autoscaling.Sample(f"p{i}", 0.0, running=14.0) for i in range(4)]
        state = learned.state
        for t in range(5, 2000, 5):
            d = autoscaling.decide(
                policy=self.policy, samples=keeping, current=4, state=state, now=float(t)
            )
            state = d.state
            assert d.replicas == 4
        assert "56 running at 16 per saturated replica" in d.message

    def test_lighter_running_load_scales_down_to_what_it_needs(self) -> None:
        state = autoscaling.State(((0.0, 2),), capacity=16.0)  # 2 all window long
        light = [autoscaling.Sample(f"p{i}", 0.0, running=6.0) for i in range(4)]  # 24 running
        d = autoscaling.decide(policy=self.policy, samples=light, current=4, state=state, now=400)
        assert (d.reason, d.replicas) == ("ScaleDown", 2)

    def test_without_a_learned_capacity_there_is_no_floor(self) -> None:
        light = [autoscaling.Sample(f"p{i}", 0.0, running=15.0) for i in range(4)]
        d = autoscaling.decide(
            policy=self.policy,
            samples=light,
            current=4,
            state=autoscaling.State(((0.0, 1),)),
            now=400,
        )
        assert d.replicas == 1

    def test_the_capacity_survives_in_status(self) -> None:
        state = autoscaling.State.from_status([[1.0, 2]]).with_capacity(12.5)
        assert state.capacity == 12.5
        assert autoscaling.State().with_capacity("x").capacity is None
        assert autoscaling.State().with_capacity(True).capacity is None
