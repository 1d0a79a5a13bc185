"""Autoscaler benchmark: ``autoscaling.decide`` against models of HPA, KEDA and KubeAI, in one run.

A discrete-time simulation (1 s steps) of one LLM serving Deployment under three load
traces. Every policy sees the same arrivals (drawn once per trace and seed) and the same
serving model; only who decides the replica count differs.

Workload model (identical for all policies):

- Arrivals: Poisson per second at the trace's rate, from ``random.Random(seed)``.
- Serving: each ready replica runs at most ``CONCURRENCY`` (16) requests at once, each
  for ``SERVICE_SECONDS`` (8 s), i.e. 2 req/s per replica. Requests beyond the ready
  replicas' slots wait in one FIFO queue; the "waiting requests" metric (vLLM's
  ``num_requests_waiting``) is that queue split evenly over the ready pods.
- Scale-up: new pods exist (and cost) at once and become ready ``STARTUP_SECONDS``
  (90 s: image, model download and load) later. Scale-down removes pods at once, the
  not-yet-ready ones first, newest first (the ReplicaSet's order); a removed ready
  pod's running requests (its even share) are restarted from the head of the queue.
- Replicas 1..16 for every policy. Each run starts ``WARMUP_SECONDS`` (1800 s, three
  times the longest window) before the trace, at the trace's initial load, so queues,
  stabilisation windows and moving averages are warm and each policy is in its own
  steady regime at t = 0; only t >= 0 is measured.
- Controller phases (the second within its interval at which each loop ticks) are
  drawn per seed, so no policy is lucky with the trace's step times; each trace runs
  with ``SEEDS`` seeds and the tables show means (reaction: mean and worst).

Policies. "ours" is the real ``autoscaling.decide`` with ``Policy.of`` an
``api.Autoscaling`` at its defaults (metric queue, target 8 waiting per replica,
scaleUpStep 4, scaleDownDelaySeconds 300, intervalSeconds 5) and min 1 / max 16: every
5 s it gets one ``Sample`` per ready pod carrying that pod's waiting and running
requests (as the scrape reads them) and the current replica count (ready plus starting
pods), and its ``State`` is carried to the next call. The references are small MODELS
OF THE PUBLIC DEFAULTS, written for this bench, not the real controllers:

- HPA (autoscaling/v2 defaults, a Pods metric = waiting requests per pod through a
  metrics adapter): syncs every 15 s; ratio = (average over ready pods) / 8; no change
  while 0.9 <= ratio <= 1.1; else desired = ceil(ratio x ready pods). Starting pods are
  pods without metrics and are treated like the replica calculator treats missing
  pods (0 on a scale-up, the target on a scale-down; no change when that flips the
  direction). Behaviour defaults: scale-up stabilisation 0 and at most
  max(100 %, 4 pods) per 15 s; scale-down to the highest raw recommendation of the last
  300 s, at most 100 % per 15 s. The metric is read fresh at each sync (optimistic:
  a real adapter reads Prometheus, which adds its scrape interval).
- KEDA (Prometheus scaler, metricType AverageValue, query = sum of waiting requests):
  the value is polled every 30 s (the default pollingInterval; the same staleness
  arises from a 30 s Prometheus scrape interval, or with useCachedMetrics) and the
  HPA above acts on the last polled value at its own 15 s syncs, as an External
  AverageValue metric: no change while total / (8 x pods) is within 0.9..1.1, else
  desired = ceil(total / 8), pods counted from the Deployment's status (starting pods
  included, no missing-pod rule). Same default behaviour as the HPA row.
- KubeAI (defaults: autoscaling interval 10 s, timeWindow 10 min, scaleDownDelaySeconds
  30): every 10 s the total active requests (its proxy's in-flight count: waiting plus
  running) enter a simple moving average over the last 60 ticks (10 min / 10 s),
  filled at the start with the initial load's active requests (KubeAI starts it at
  zeros: a long-running KubeAI has a full window, zeros would add a start-up transient);
  desired = ceil(average / targetRequests), clamped to 1..16; a scale-down happens only
  after ceil(30 / 10) = 3 consecutive lower evaluations (the counter, as in KubeAI's
  ``Scale``, resets on any evaluation that is not lower). No step limit up.
  Mapping of the target: KubeAI's targetRequests counts active requests, ours counts
  waiting ones. A replica is at our target when its 16 slots are busy and 8 more wait,
  i.e. 24 active requests, so targetRequests = ``CONCURRENCY`` + 8 = 24: both policies
  start to scale up at the same load (KubeAI's default targetRequests is 100).

Traces (2 req/s is one replica's throughput):

- burst: 1.5 req/s, then 12 req/s (8x) for 10 min from t = 600 s, then 1.5 again; 3000 s.
- daily ramp: a raised cosine from 1 req/s to a 20 req/s peak and back in 2 h (7200 s).
- noisy plateau: 7 req/s with a level drawn every 30 s uniformly within +-30 %; 3600 s.

Measures, per policy (over t >= 0; "ready" counts serving pods only):

- reaction: from the onset of the first sustained overload to the policy's first
  scale-up decision at or after it ("never": none followed; "-": no such onset). The
  onset is a second at which the queue per ready replica goes above 8 from at or below
  it, while every pod is ready and replicas are below the maximum (load exceeds what
  the current replicas are meant to carry), and stays above 8 for the next
  ``SUSTAINED_SECONDS`` (30 s) at least. Shorter excursions are Poisson blips at
  moderate load that no policy is expected to chase (they still count below); a
  policy that scaled up before the overload set in has no onset while its new pods
  start, so pre-emptive scaling shows as a later onset or "-", never as a penalty.
- over-target s: seconds with the queue per ready replica above 8; waiting req-s: the
  queue integrated over time (request-seconds spent waiting), also per request (mean
  wait s).
- replica-s: pods that exist (ready or starting: a loading pod holds its GPU) integrated
  over time, i.e. GPU cost; "vs ours" relative to ours.
- scale events: replica-count changes, up/down (flapping shows on the noisy plateau).

No wall time is measured. The script exits 1 only if the simulation is inconsistent
(negative queue, requests lost or invented, replicas out of bounds, more requests
running than slots); how ours compares is reported, not asserted.

Run: ``.venv/bin/python benchmarks/bench_autoscaler.py`` (a few seconds).
"""

from __future__ import annotations

import collections
import dataclasses
import math
import random
import statistics
import sys
from collections.abc import Callable, Sequence

from llama_operator import api
from llama_operator.operations import autoscaling

CONCURRENCY = 16  # sequences a replica runs at once
SERVICE_SECONDS = 8  # seconds per request
STARTUP_SECONDS = 90  # scale-up to ready: model download and load
MIN_REPLICAS = 1
MAX_REPLICAS = 16
SUSTAINED_SECONDS = 30  # an overload shorter than this is not a reaction's onset
WARMUP_SECONDS = 1800  # at the trace's initial load, not measured
SEEDS = (1, 2, 3, 4, 5)
EPOCH = 1_700_000_000  # the clock ``decide`` sees is EPOCH + t

SPEC = api.Autoscaling(minReplicas=MIN_REPLICAS, maxReplicas=MAX_REPLICAS)
POLICY = autoscaling.Policy.of(SPEC)
TARGET = POLICY.target  # waiting requests per replica (8)

# Models of the references' defaults (see the module docstring).
HPA_SYNC_SECONDS = 15
HPA_TOLERANCE = 0.1
HPA_DOWN_WINDOW_SECONDS = 300
HPA_UP_PODS = 4  # scale-up policies: max(4 pods, 100 %) per 15 s
KEDA_POLL_SECONDS = 30
KUBEAI_INTERVAL_SECONDS = 10
KUBEAI_WINDOW_TICKS = 600 // KUBEAI_INTERVAL_SECONDS
KUBEAI_SCALE_DOWNS = math.ceil(30 / KUBEAI_INTERVAL_SECONDS)
KUBEAI_TARGET = CONCURRENCY + TARGET  # active requests per replica (24)

_EPSILON = 1e-9


def _ceil(value: float) -> int:
    return math.ceil(value - _EPSILON)


def _bounded(replicas: int) -> int:
    return max(MIN_REPLICAS, min(MAX_REPLICAS, replicas))


@dataclasses.dataclass(frozen=True)
class View:
    """What a controller can observe at second ``t``."""

    t: int
    replicas: int  # pods that exist: ready plus starting
    ready: int
    waiting: int
    running: int


class Controller:
    name = ""

    def __init__(self, interval: int, phase: int) -> None:
        self.interval = interval
        self.phase = phase % interval

    def due(self, t: int) -> bool:
        return t % self.interval == self.phase

    def evaluate(self, view: View) -> int:
        """The replica count to run from now on (the current one: no change)."""
        raise NotImplementedError


class Ours(Controller):
    name = "ours (builtin)"

    def __init__(self, phase: int) -> None:
        super().__init__(SPEC.intervalSeconds, phase)
        self.state = autoscaling.State()

    def evaluate(self, view: View) -> int:
        per_pod = view.waiting / view.ready if view.ready else 0.0
        running = view.running / view.ready if view.ready else 0.0
        # What the scrape reads off each pod: its waiting share and its running requests.
        samples = [
            autoscaling.Sample(f"pod-{index}", per_pod, running=running)
            for index in range(view.ready)
        ]
        decision = autoscaling.decide(
            policy=POLICY,
            samples=samples,
            current=view.replicas,
            state=self.state,
            now=float(EPOCH + view.t),
        )
        self.state = decision.state
        return decision.replicas


class HpaBehavior:
    """autoscaling/v2 default behaviour: stabilisation windows, then rate limits."""

    def __init__(self) -> None:
        self.recommendations: list[tuple[int, int]] = []  # (t, raw desired)

    def normalize(self, t: int, current: int, desired: int) -> int:
        self.recommendations = [
            (when, replicas)
            for when, replicas in self.recommendations
            if when > t - HPA_DOWN_WINDOW_SECONDS
        ]
        up = desired  # scale-up stabilisation window 0
        down = max([desired, *(replicas for _, replicas in self.recommendations)])
        stabilized = min(max(current, up), down)
        self.recommendations.append((t, desired))
        # Syncs are 15 s apart and so are the policies' periods: the period starts at
        # ``current``. Scale-down: 100 % per 15 s, i.e. down to the minimum at once.
        up_limit = max(2 * current, current + HPA_UP_PODS)
        return _bounded(min(stabilized, up_limit))


def pods_metric_replicas(view: View) -> int | None:
    """HPA replica calculator, Pods metric; starting pods have no metrics (missing)."""
    if view.ready == 0:
        return None
    current = view.replicas
    missing = view.replicas - view.ready
    ratio = view.waiting / view.ready / TARGET
    if missing == 0:
        if abs(1.0 - ratio) <= HPA_TOLERANCE:
            return current
        return _ceil(ratio * view.ready)
    if ratio < 1.0:
        fill = TARGET
    elif ratio > 1.0:
        fill = 0.0
    else:
        return current
    new_ratio = (view.waiting + missing * fill) / (view.replicas * TARGET)
    if (
        abs(1.0 - new_ratio) <= HPA_TOLERANCE
        or (ratio < 1.0 < new_ratio)
        or (ratio > 1.0 > new_ratio)
    ):
        return current
    new = _ceil(new_ratio * view.replicas)
    if (new_ratio < 1.0 and new > current) or (new_ratio > 1.0 and new < current):
        return current
    return new


class Hpa(Controller):
    name = "HPA model"

    def __init__(self, phase: int) -> None:
        super().__init__(HPA_SYNC_SECONDS, phase)
        self.behavior = HpaBehavior()

    def evaluate(self, view: View) -> int:
        desired = pods_metric_replicas(view)
        if desired is None:  # no metrics: the HPA keeps the replicas
            return view.replicas
        return self.behavior.normalize(view.t, view.replicas, desired)


class Keda(Controller):
    name = "KEDA model"

    def __init__(self, phase: int, poll_phase: int) -> None:
        super().__init__(HPA_SYNC_SECONDS, phase)
        self.poll_phase = poll_phase % KEDA_POLL_SECONDS
        self.behavior = HpaBehavior()
        self.polled: float | None = None

    def due(self, t: int) -> bool:
        return super().due(t) or t % KEDA_POLL_SECONDS == self.poll_phase

    def evaluate(self, view: View) -> int:
        if view.t % KEDA_POLL_SECONDS == self.poll_phase:
            self.polled = float(view.waiting)
        if not super().due(view.t) or self.polled is None:
            return view.replicas
        total = self.polled
        ratio = total / (TARGET * view.replicas)
        desired = _ceil(total / TARGET) if abs(1.0 - ratio) > HPA_TOLERANCE else view.replicas
        return self.behavior.normalize(view.t, view.replicas, desired)


class KubeAI(Controller):
    name = "KubeAI model"

    def __init__(self, phase: int, initial_active: float) -> None:
        super().__init__(KUBEAI_INTERVAL_SECONDS, phase)
        self.window: collections.deque[float] = collections.deque(
            [initial_active] * KUBEAI_WINDOW_TICKS, maxlen=KUBEAI_WINDOW_TICKS
        )
        self.consecutive_downs = 0

    def evaluate(self, view: View) -> int:
        self.window.append(float(view.waiting + view.running))
        average = sum(self.window) / len(self.window)
        desired = _bounded(_ceil(average / KUBEAI_TARGET))
        if view.replicas > desired:
            if self.consecutive_downs < KUBEAI_SCALE_DOWNS:
                self.consecutive_downs += 1
                return view.replicas
        else:
            self.consecutive_downs = 0
        return desired


@dataclasses.dataclass(frozen=True)
class Trace:
    name: str
    seconds: int
    initial_replicas: int
    rates: Callable[[int], list[float]]  # seed -> rate per second from -WARMUP_SECONDS


def burst_rates(_seed: int) -> list[float]:
    return [12.0 if 600 <= t < 1200 else 1.5 for t in range(-WARMUP_SECONDS, 3000)]


def ramp_rates(_seed: int) -> list[float]:
    period = 7200
    return [
        1.0 + 19.0 * (1.0 - math.cos(2.0 * math.pi * max(t, 0) / period)) / 2.0
        for t in range(-WARMUP_SECONDS, period)
    ]


def plateau_rates(seed: int) -> list[float]:
    rng = random.Random(f"plateau-levels/{seed}")
    rates: list[float] = []
    for _ in range(-WARMUP_SECONDS, 3600, 30):
        rates.extend([7.0 * rng.uniform(0.7, 1.3)] * 30)
    return rates[: WARMUP_SECONDS + 3600]


TRACES = (
    Trace("burst", 3000, 1, burst_rates),
    Trace("daily ramp", 7200, 1, ramp_rates),
    Trace("noisy plateau", 3600, 4, plateau_rates),
)


def poisson(rng: random.Random, rate: float) -> int:
    """Knuth's method: fine for the small rates here."""
    limit = math.exp(-rate)
    count = 0
    product = rng.random()
    while product > limit:
        count += 1
        product *= rng.random()
    return count


def controllers(trace: Trace, seed: int, initial_rate: float) -> list[Controller]:
    rng = random.Random(f"phases/{trace.name}/{seed}")
    return [
        Ours(rng.randrange(SPEC.intervalSeconds)),
        Hpa(rng.randrange(HPA_SYNC_SECONDS)),
        Keda(rng.randrange(HPA_SYNC_SECONDS), rng.randrange(KEDA_POLL_SECONDS)),
        KubeAI(rng.randrange(KUBEAI_INTERVAL_SECONDS), initial_rate * SERVICE_SECONDS),
    ]


@dataclasses.dataclass
class Outcome:
    first_over: int | None = None  # onset of the first sustained overload
    first_up: int | None = None  # first scale-up decision at or after first_over
    over_target_seconds: int = 0
    waiting_seconds: int = 0
    arrivals: int = 0
    replica_seconds: int = 0
    ups: int = 0
    downs: int = 0
    peak: int = 0

    @property
    def reaction(self) -> float | None:
        """None: never over target; inf: over target, never scaled up after."""
        if self.first_over is None:
            return None
        if self.first_up is None:
            return math.inf
        return float(self.first_up - self.first_over)


def simulate(
    arrivals: Sequence[int], controller: Controller, initial: int, problems: list[str]
) -> Outcome:
    outcome = Outcome()
    ready = initial
    starting: list[int] = []  # ready-at seconds, ascending
    in_service: collections.deque[list[int]] = collections.deque()  # [finish second, count]
    waiting = running = arrived = done = 0
    was_over = False
    over_at: list[bool] = []  # per measured second
    onsets: list[int] = []
    ups_at: list[int] = []
    for index, count in enumerate(arrivals):
        t = index - WARMUP_SECONDS
        while starting and starting[0] <= t:
            starting.pop(0)
            ready += 1
        while in_service and in_service[0][0] <= t:
            finished = in_service.popleft()[1]
            running -= finished
            done += finished
        waiting += count
        arrived += count
        admitted = min(ready * CONCURRENCY - running, waiting)
        if admitted > 0:
            in_service.append([t + SERVICE_SECONDS, admitted])
            running += admitted
            waiting -= admitted
        replicas = ready + len(starting)

        where = f"{controller.name} at t={t}"
        if waiting < 0 or running < 0:
            problems.append(f"{where}: negative queue ({waiting}) or running ({running})")
        if arrived != done + running + waiting:
            problems.append(f"{where}: {arrived} arrived != {done} done + {running} + {waiting}")
        if running > ready * CONCURRENCY:
            problems.append(f"{where}: {running} running on {ready} ready replicas")
        if not MIN_REPLICAS <= replicas <= MAX_REPLICAS or ready < 1:
            problems.append(f"{where}: {replicas} replicas, {ready} ready")

        measured = t >= 0
        over = waiting > TARGET * ready
        onset = over and not was_over and ready == replicas < MAX_REPLICAS
        was_over = over
        if measured:
            over_at.append(over)
            if onset:
                onsets.append(t)
            outcome.over_target_seconds += over
            outcome.waiting_seconds += waiting
            outcome.arrivals += count
            outcome.replica_seconds += replicas
            outcome.peak = max(outcome.peak, replicas)

        if not controller.due(t):
            continue
        wanted = controller.evaluate(View(t, replicas, ready, waiting, running))
        if wanted > replicas:
            starting.extend([t + STARTUP_SECONDS] * (wanted - replicas))
            if measured:
                outcome.ups += 1
                ups_at.append(t)
        elif wanted < replicas:
            remove = replicas - wanted
            while remove and starting:
                starting.pop()  # newest not-ready pod first
                remove -= 1
            if remove:
                restarted = running * remove // ready
                ready -= remove
                running -= restarted
                waiting += restarted
                while restarted:  # the newest requests lose the least work
                    taken = min(restarted, in_service[-1][1])
                    in_service[-1][1] -= taken
                    restarted -= taken
                    if not in_service[-1][1]:
                        in_service.pop()
            if measured:
                outcome.downs += 1
    sustained = (
        t
        for t in onsets
        if len(window := over_at[t : t + SUSTAINED_SECONDS]) == SUSTAINED_SECONDS and all(window)
    )
    outcome.first_over = next(sustained, None)
    if outcome.first_over is not None:
        outcome.first_up = next((t for t in ups_at if t >= outcome.first_over), None)
    return outcome


def run(trace: Trace) -> dict[str, list[Outcome]]:
    results: dict[str, list[Outcome]] = {}
    problems: list[str] = []
    for seed in SEEDS:
        rng = random.Random(f"arrivals/{trace.name}/{seed}")
        rates = trace.rates(seed)
        arrivals = [poisson(rng, rate) for rate in rates]
        for controller in controllers(trace, seed, rates[0]):
            outcome = simulate(arrivals, controller, trace.initial_replicas, problems)
            results.setdefault(controller.name, []).append(outcome)
    if problems:
        for problem in problems[:20]:
            print(f"INCONSISTENT {trace.name}: {problem}", file=sys.stderr)
        raise SystemExit(1)
    return results


def mean_reaction(outcomes: Sequence[Outcome]) -> float | None:
    """Mean over the seeds with an onset (inf if one of them never scaled up)."""
    reactions = [o.reaction for o in outcomes if o.reaction is not None]
    return statistics.fmean(reactions) if reactions else None


def worst_reaction(outcomes: Sequence[Outcome]) -> float | None:
    reactions = [o.reaction for o in outcomes if o.reaction is not None]
    return max(reactions) if reactions else None


def reaction_cell(outcomes: Sequence[Outcome]) -> str:
    average, worst = mean_reaction(outcomes), worst_reaction(outcomes)
    if average is None or worst is None:
        return "-"
    if math.isinf(average):
        return "never"
    return f"{average:.1f} ({worst:.0f})"


def mean(outcomes: Sequence[Outcome], value: Callable[[Outcome], float]) -> float:
    return statistics.fmean(value(o) for o in outcomes)


def table(results: dict[str, list[Outcome]]) -> list[tuple[str, ...]]:
    ours_cost = mean(results[Ours.name], lambda o: o.replica_seconds)
    rows: list[tuple[str, ...]] = []
    for name, outcomes in results.items():
        cost = mean(outcomes, lambda o: o.replica_seconds)
        waiting = mean(outcomes, lambda o: o.waiting_seconds)
        per_request = waiting / mean(outcomes, lambda o: o.arrivals)
        rows.append(
            (
                name,
                reaction_cell(outcomes),
                f"{mean(outcomes, lambda o: o.over_target_seconds):,.0f}",
                f"{waiting:,.0f}",
                f"{per_request:.1f}",
                f"{cost:,.0f}",
                f"{(cost / ours_cost - 1) * 100:+.0f}%",
                f"{mean(outcomes, lambda o: o.ups):.1f}/{mean(outcomes, lambda o: o.downs):.1f}",
                str(max(o.peak for o in outcomes)),
            )
        )
    return rows


def print_table(rows: Sequence[tuple[str, ...]]) -> None:
    header = (
        "policy",
        "reaction s (worst)",
        "over-target s",
        "waiting req-s",
        "mean wait s",
        "replica-s",
        "vs ours",
        "events up/down",
        "peak",
    )
    widths = [max(len(line[i]) for line in (header, *rows)) for i in range(len(header))]
    for line in (header, *rows):
        cells = [line[0].ljust(widths[0])]
        cells += [cell.rjust(width) for cell, width in zip(line[1:], widths[1:], strict=True)]
        print("  ".join(cells))


def summary(trace: Trace, results: dict[str, list[Outcome]]) -> str:
    ours = results[Ours.name]
    worst = worst_reaction(ours)
    if worst is None:
        within = "the queue never exceeded the target"
    else:
        verdict = "yes" if worst <= SPEC.intervalSeconds else "no"
        within = (
            f"ours reacted within one interval ({SPEC.intervalSeconds} s): {verdict} "
            f"(worst {worst:.0f} s)"
        )
    references = {
        name: reaction
        for name, outcomes in results.items()
        if name != Ours.name and (reaction := mean_reaction(outcomes)) is not None
    }
    if not references:
        return f"{trace.name}: {within}; no reference went over target"
    fastest = min(references, key=lambda name: references[name])
    ours_cost = mean(ours, lambda o: o.replica_seconds)
    their_cost = mean(results[fastest], lambda o: o.replica_seconds)
    verdict = "yes" if ours_cost <= their_cost else "no"
    return (
        f"{trace.name}: {within}; fastest-reacting reference {fastest} "
        f"({references[fastest]:.1f} s); ours used no more replica-s than it: {verdict} "
        f"({ours_cost:,.0f} vs {their_cost:,.0f}, {(ours_cost / their_cost - 1) * 100:+.1f}%)"
    )


def main() -> int:
    print(
        f"autoscaling.decide (defaults: queue target {TARGET:g}/replica, step "
        f"{POLICY.scale_up_step}, window {POLICY.window_seconds:g} s, every "
        f"{SPEC.intervalSeconds} s) vs models of HPA / KEDA / KubeAI defaults"
    )
    print(
        f"replica: {CONCURRENCY} slots x {SERVICE_SECONDS} s per request "
        f"({CONCURRENCY / SERVICE_SECONDS:g} req/s), ready {STARTUP_SECONDS} s after scale-up, "
        f"replicas {MIN_REPLICAS}..{MAX_REPLICAS}; means over {len(SEEDS)} seeds"
    )
    summaries = []
    for trace in TRACES:
        results = run(trace)
        print()
        print(f"{trace.name} ({trace.seconds} s, starting at {trace.initial_replicas} replica(s))")
        print_table(table(results))
        summaries.append(summary(trace, results))
    print()
    for line in summaries:
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
