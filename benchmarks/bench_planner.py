"""Planner benchmark: ``planner.plan`` against the exhaustive reference, in one run.

Builds a request for every catalog model x policy x engine x pool set (the bundled
catalogue; small GPUs; big GPUs; a mixed set with missing prices; free pools), then:

- times ``planner.plan`` (solves for the one degree that can win) and
  ``planner.plan_exhaustive`` (sizes every candidate) on the same cases, best of a few
  rounds, so a noisy machine slows both alike;
- counts the cases where the planner's cost equals the exhaustive optimum, and where
  both agree that nothing fits; and, stricter, where the two plans are identical (on
  free pools every degree costs 0, so only the tie-breaks tell a wrong plan apart).

Prints a small table and exits non-zero on any mismatch. Run:
``python benchmarks/bench_planner.py``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import sys
import time
import typing
from collections.abc import Callable, Sequence

from llama_operator import api
from llama_operator.planning import catalog, config, planner, pools

ROUNDS = 25
POLICIES: tuple[api.Optimize, ...] = typing.get_args(api.Optimize)
ENGINES: tuple[api.Engine, ...] = ("vllm", "tgi")

Outcome = tuple[api.Plan, float] | None  # (plan, cost it ranks by) or None: nothing fits


def _pool(name: str, product: str, per_node: int, cost: float | None) -> pools.Pool:
    return pools.Pool(name=name, gpuProduct=product, gpusPerNode=per_node, costPerGPUHour=cost)


def pool_sets() -> dict[str, tuple[pools.Pool, ...]]:
    return {
        "bundled": config.default_pools(),
        "small-gpu": (
            _pool("t4", "Tesla-T4", 4, 0.35),
            _pool("l4", "NVIDIA-L4", 8, 0.8),
            _pool("a10g", "NVIDIA-A10G", 4, 1.0),
        ),
        "big-gpu": (
            _pool("h100", "NVIDIA-H100-80GB-HBM3", 8, 4.0),
            _pool("h200", "NVIDIA-H200", 8, 5.0),
            _pool("b200", "NVIDIA-B200", 8, 7.0),
        ),
        "mixed-8": (
            _pool("t4", "Tesla-T4", 1, None),
            _pool("l4", "NVIDIA-L4", 2, 0.8),
            _pool("a10g", "NVIDIA-A10G", 4, None),
            _pool("l40s", "NVIDIA-L40S", 4, 1.8),
            _pool("a100-40", "NVIDIA-A100-SXM4-40GB", 8, None),
            _pool("a100-80", "NVIDIA-A100-80GB-PCIe", 8, 2.0),
            _pool("h100-nvl", "NVIDIA-H100-NVL", 2, None),
            _pool("h200", "NVIDIA-H200", 8, 5.0),
        ),
        "free": (
            _pool("lab-l4", "NVIDIA-L4", 8, 0.0),
            _pool("lab-a100", "NVIDIA-A100-SXM4-80GB", 8, 0.0),
            _pool("lab-h200", "NVIDIA-H200", 4, 0.0),
        ),
    }


def cases(available: tuple[pools.Pool, ...]) -> list[planner.Request]:
    """Every catalog model x policy x engine on one pool set."""
    return [
        planner.Request(model=model, engine=engine, optimize=optimize, pools=available)
        for model in catalog.ENTRIES
        for optimize in POLICIES
        for engine in ENGINES
    ]


def outcome(strategy: Callable[[planner.Request], api.Plan], request: planner.Request) -> Outcome:
    try:
        plan = strategy(request)
    except planner.PlanError:
        return None
    (pool,) = [pool for pool in request.pools if pool.name == plan.pool]
    return plan, plan.tensorParallel * pool.rank_price


def brief(plan: api.Plan) -> str:
    return f"{plan.tensorParallel}x {plan.pool} at {plan.quantization} ({plan.maxModelLen} tokens)"


def best_rate(
    strategy: Callable[[planner.Request], api.Plan], requests: Sequence[planner.Request]
) -> float:
    """Plans (or refusals) per second, best of ``ROUNDS``."""
    best = float("inf")
    for _ in range(ROUNDS):
        start = time.perf_counter()
        for request in requests:
            with contextlib.suppress(planner.PlanError):
                strategy(request)
        best = min(best, time.perf_counter() - start)
    return len(requests) / best


@dataclasses.dataclass
class Agreement:
    feasible: int = 0
    infeasible: int = 0
    cost_matches: int = 0
    same_plans: int = 0
    infeasible_matches: int = 0
    mismatches: list[str] = dataclasses.field(default_factory=list)

    def absorb(self, other: Agreement) -> None:
        self.feasible += other.feasible
        self.infeasible += other.infeasible
        self.cost_matches += other.cost_matches
        self.same_plans += other.same_plans
        self.infeasible_matches += other.infeasible_matches
        self.mismatches.extend(other.mismatches)

    @property
    def matches(self) -> int:
        return self.cost_matches + self.infeasible_matches

    @property
    def total(self) -> int:
        return self.feasible + self.infeasible


def agreement(requests: Sequence[planner.Request]) -> Agreement:
    result = Agreement()
    for request in requests:
        ours = outcome(planner.plan, request)
        reference = outcome(planner.plan_exhaustive, request)
        label = f"{request.model.id} {request.optimize} {request.engine} on " + ",".join(
            pool.name for pool in request.pools
        )
        if reference is None:
            result.infeasible += 1
            if ours is None:
                result.infeasible_matches += 1
            else:
                result.mismatches.append(f"{label}: planned {brief(ours[0])}, reference finds none")
            continue
        result.feasible += 1
        if ours is None:
            result.mismatches.append(f"{label}: refused, optimum {brief(reference[0])}")
            continue
        if abs(ours[1] - reference[1]) <= 1e-9:
            result.cost_matches += 1
        else:
            result.mismatches.append(f"{label}: cost {ours[1]}, optimum {reference[1]}")
        # Equal cost is the headline; the whole plan (tie-breaks included) must agree too.
        if ours[0] == reference[0]:
            result.same_plans += 1
        else:
            result.mismatches.append(
                f"{label}: planned {brief(ours[0])}, reference {brief(reference[0])}"
            )
    return result


def main() -> int:
    header = (
        "pool set",
        "cases",
        "ours plans/s",
        "brute-force plans/s",
        "speed-up",
        "optimum matches",
        "same plan",
    )
    rows = []
    total = Agreement()
    everything: list[planner.Request] = []
    for name, available in pool_sets().items():
        requests = cases(available)
        everything.extend(requests)
        checked = agreement(requests)
        total.absorb(checked)
        rows.append(row(name, requests, checked))
    rows.append(row("all", everything, total))

    widths = [max(len(line[i]) for line in (header, *rows)) for i in range(len(header))]
    print(f"planner.plan vs planner.plan_exhaustive, best of {ROUNDS} rounds")
    for index, line in enumerate((header, *rows)):
        if index == len(rows):  # rule above the total
            print("  ".join("-" * width for width in widths))
        cells = [line[0].ljust(widths[0])]
        cells += [cell.rjust(width) for cell, width in zip(line[1:], widths[1:], strict=True)]
        print("  ".join(cells))
    print(
        f"optimum matches: plan's cost equals the exhaustive optimum ({total.cost_matches}/"
        f"{total.feasible}) or both find nothing fits ({total.infeasible_matches}/"
        f"{total.infeasible}); same plan: identical to plan_exhaustive, tie-breaks included"
    )
    for problem in total.mismatches:
        print(f"MISMATCH {problem}", file=sys.stderr)
    return 1 if total.mismatches else 0


def row(name: str, requests: Sequence[planner.Request], checked: Agreement) -> tuple[str, ...]:
    ours = best_rate(planner.plan, requests)
    brute = best_rate(planner.plan_exhaustive, requests)
    return (
        name,
        str(len(requests)),
        f"{ours:,.0f}",
        f"{brute:,.0f}",
        f"{ours / brute:.2f}x",
        f"{checked.matches}/{checked.total}",
        f"{checked.same_plans}/{checked.feasible}",
    )


if __name__ == "__main__":
    sys.exit(main())
